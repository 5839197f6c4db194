"""``GET /events``: the event history, as the caller may read it."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol.events import EventList

from .. import events
from .http import caller_of, server_of
from .route import Route


async def event_list(request: web.Request) -> web.Response:
    q = request.query
    found = await events.list_events(
        server_of(request),
        caller_of(request),
        job=q.get("job"),
        host=q.get("host"),
        since=q.get("since"),
        limit=q.get("limit"),
    )
    return web.json_response({"events": found})


EVENT_ROUTES: list[Route] = [
    Route(
        "GET",
        "/events",
        event_list,
        "The event history, oldest first: of one job and its tasks (job), of one host (host), or "
        "of the caller's objects and acts; a SUPER user sees every event",
        request=None,
        response=EventList,
        query=("job", "host", "since", "limit"),
    ),
]
