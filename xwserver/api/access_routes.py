"""Routes: Access rights: objects by UID, chmod, enabling and disabling hosts."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol import client as c

from .. import hosts, objects
from .http import caller_of, read_json, server_of
from .route import Route


async def object_get(request: web.Request) -> web.Response:
    answer = await objects.get(server_of(request), caller_of(request), request.match_info["uid"])
    return web.json_response(answer)


async def object_chmod(request: web.Request) -> web.Response:
    body = await read_json(request)
    answer = await objects.chmod(server_of(request), caller_of(request), request.match_info["uid"], body)
    return web.json_response(answer)


async def host_disable(request: web.Request) -> web.Response:
    host = await hosts.set_enabled(server_of(request), caller_of(request), request.match_info["uid"], False)
    return web.json_response(host)


async def host_enable(request: web.Request) -> web.Response:
    host = await hosts.set_enabled(server_of(request), caller_of(request), request.match_info["uid"], True)
    return web.json_response(host)


async def host_remove(request: web.Request) -> web.Response:
    released = await hosts.remove(server_of(request), caller_of(request), request.match_info["uid"])
    return web.json_response({"ok": True, "released": released})


ACCESS_ROUTES: list[Route] = [
    Route(
        "GET",
        "/objects/{uid}",
        object_get,
        "Any object the caller may read, by UID: {kind, object}",
        request=None,
        response=c.ObjectAnswer,
    ),
    Route(
        "POST",
        "/objects/{uid}/chmod",
        object_chmod,
        "Change the access rights of data, a host, a session or a group of jobs (owner or SUPER)",
        request=c.Chmod,
        response=c.ObjectAnswer,
    ),
    Route(
        "POST",
        "/hosts/{uid}/disable",
        host_disable,
        "Disable a host (ADVANCED): its running tasks go elsewhere, its requests are refused",
        request=None,
        response=c.Host,
    ),
    Route(
        "POST",
        "/hosts/{uid}/enable",
        host_enable,
        "Re-enable a disabled host (ADVANCED)",
        request=None,
        response=c.Host,
    ),
    Route(
        "DELETE",
        "/hosts/{uid}",
        host_remove,
        "Remove a host (ADVANCED): its running tasks go back to the queue first, then its task "
        "records and the host go",
        request=None,
        response=c.HostRemoved,
    ),
]
