"""Routes: sessions and groups of jobs (``/sessions``, ``/groups``; user groups are ``/usergroups``)."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol import client as c

from .. import jobsets
from ..jobsets import JobSetKind
from .http import Handler, caller_of, ok, read_json, server_of
from .route import Route


def _create(kind: JobSetKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await read_json(request)
        created = await jobsets.create(server_of(request), caller_of(request), kind, body)
        return web.json_response(created, status=201)

    return handler


def _list(kind: JobSetKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        found = await jobsets.list_sets(server_of(request), caller_of(request), kind)
        return web.json_response({kind.path.strip("/"): found})

    return handler


def _get(kind: JobSetKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        shown = await jobsets.get(server_of(request), caller_of(request), kind, request.match_info["uid"])
        return web.json_response(shown)

    return handler


def _delete(kind: JobSetKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await jobsets.delete(server_of(request), caller_of(request), kind, request.match_info["uid"])
        return ok()

    return handler


def _named(handler: Handler, name: str) -> Handler:
    """The OpenAPI document takes each operation's id from its handler's name."""
    handler.__name__ = handler.__qualname__ = name
    return handler


def _routes(kind: JobSetKind, listed: type[c.SessionList | c.GroupList]) -> list[Route]:
    n, p = kind.name, kind.path
    return [
        Route(
            "POST",
            p,
            _named(_create(kind), f"{n}_create"),
            f"Create a {n} of jobs",
            request=c.JobSetCreation,
            response=c.JobSet,
            status=201,
        ),
        Route(
            "GET",
            p,
            _named(_list(kind), f"{n}_list"),
            f"List the {n}s of jobs the caller may read",
            request=None,
            response=listed,
        ),
        Route(
            "GET",
            p + "/{uid}",
            _named(_get(kind), f"{n}_get"),
            f"Get a {n} of jobs with its job counts",
            request=None,
            response=c.JobSet,
        ),
        Route(
            "DELETE",
            p + "/{uid}",
            _named(_delete(kind), f"{n}_delete"),
            f"Remove a {n} and all its jobs (owner or SUPER)",
            request=None,
            response=c.Ok,
        ),
    ]


JOBSET_ROUTES: list[Route] = _routes(jobsets.SESSIONS, c.SessionList) + _routes(jobsets.GROUPS, c.GroupList)
