"""Routes: Users, user groups, passwords."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol import client as c

from .. import groups, users
from .http import caller_of, ok, read_json, server_of
from .route import Route


async def user_create(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await users.add(server_of(request), caller_of(request), body), status=201)


async def user_list(request: web.Request) -> web.Response:
    return web.json_response({"users": await users.list_users(server_of(request), caller_of(request))})


async def user_get(request: web.Request) -> web.Response:
    return web.json_response(
        await users.get(server_of(request), caller_of(request), request.match_info["key"])
    )


async def user_modify(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(
        await users.modify(server_of(request), caller_of(request), request.match_info["key"], body)
    )


async def user_delete(request: web.Request) -> web.Response:
    await users.remove(server_of(request), caller_of(request), request.match_info["key"])
    return ok()


async def user_password(request: web.Request) -> web.Response:
    body = await read_json(request)
    await users.change_password(
        server_of(request), caller_of(request), request.match_info["key"], body, request.remote
    )
    return ok()


async def usergroup_create(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await groups.create(server_of(request), caller_of(request), body), status=201)


async def usergroup_list(request: web.Request) -> web.Response:
    found = await groups.list_groups(server_of(request), caller_of(request))
    return web.json_response({"usergroups": found})


async def usergroup_get(request: web.Request) -> web.Response:
    return web.json_response(
        await groups.get(server_of(request), caller_of(request), request.match_info["key"])
    )


async def usergroup_delete(request: web.Request) -> web.Response:
    await groups.remove(server_of(request), caller_of(request), request.match_info["key"])
    return ok()


USER_ROUTES: list[Route] = [
    Route(
        "POST",
        "/users",
        user_create,
        "Create a user (SUPER)",
        request=c.UserCreation,
        response=c.User,
        status=201,
    ),
    Route(
        "GET",
        "/users",
        user_list,
        "List users: all for SUPER, only the caller otherwise",
        request=None,
        response=c.UserList,
    ),
    Route(
        "GET",
        "/users/{key}",
        user_get,
        "Get a user by UID or login (others than oneself: SUPER)",
        request=None,
        response=c.User,
    ),
    Route(
        "PATCH",
        "/users/{key}",
        user_modify,
        "Change a user's rights, group or email (SUPER); rights or group revoke its tokens",
        request=c.UserChange,
        response=c.User,
    ),
    Route(
        "DELETE",
        "/users/{key}",
        user_delete,
        "Remove a user owning nothing, and its hosts (SUPER)",
        request=None,
        response=c.Ok,
    ),
    Route(
        "POST",
        "/users/{key}/password",
        user_password,
        "Change a password (oneself with the old one, or SUPER); revokes every token of the user",
        request=c.PasswordChange,
        response=c.Ok,
    ),
    Route(
        "POST",
        "/usergroups",
        usergroup_create,
        "Create a user group (SUPER)",
        request=c.UserGroupCreation,
        response=c.UserGroup,
        status=201,
    ),
    Route(
        "GET",
        "/usergroups",
        usergroup_list,
        "List user groups: all for SUPER, one's own otherwise",
        request=None,
        response=c.UserGroupList,
    ),
    Route(
        "GET",
        "/usergroups/{key}",
        usergroup_get,
        "Get a user group by UID or label",
        request=None,
        response=c.UserGroup,
    ),
    Route(
        "DELETE",
        "/usergroups/{key}",
        usergroup_delete,
        "Remove a user group without members (SUPER)",
        request=None,
        response=c.Ok,
    ),
]
