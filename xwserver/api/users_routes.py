"""Routes: Users, user groups, passwords."""

from __future__ import annotations

from aiohttp import web

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
    Route("POST", "/users", user_create, "Create a user (SUPER)", "json"),
    Route("GET", "/users", user_list, "List users: all for SUPER, only the caller otherwise"),
    Route("GET", "/users/{key}", user_get, "Get a user by UID or login (others than oneself: SUPER)"),
    Route(
        "PATCH",
        "/users/{key}",
        user_modify,
        "Change a user's rights, group or email (SUPER); rights or group revoke its tokens",
        "json",
    ),
    Route("DELETE", "/users/{key}", user_delete, "Remove a user owning nothing, and its hosts (SUPER)"),
    Route(
        "POST",
        "/users/{key}/password",
        user_password,
        "Change a password (oneself with the old one, or SUPER); revokes every token of the user",
        "json",
    ),
    Route("POST", "/usergroups", usergroup_create, "Create a user group (SUPER)", "json"),
    Route("GET", "/usergroups", usergroup_list, "List user groups: all for SUPER, one's own otherwise"),
    Route("GET", "/usergroups/{key}", usergroup_get, "Get a user group by UID or label"),
    Route("DELETE", "/usergroups/{key}", usergroup_delete, "Remove a user group without members (SUPER)"),
]
