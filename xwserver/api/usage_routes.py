"""``GET /usage``: jobs, CPU and wall seconds, bytes per user and group over a period."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol.usage import UsageReport

from .. import usage
from .http import caller_of, server_of
from .route import Route


async def usage_report(request: web.Request) -> web.Response:
    q = request.query
    return web.json_response(
        await usage.usage(server_of(request), caller_of(request), since=q.get("since"), until=q.get("until"))
    )


USAGE_ROUTES: list[Route] = [
    Route(
        "GET",
        "/usage",
        usage_report,
        "Jobs, tasks, CPU and wall seconds, bytes up and down per user and user group over a period "
        "(a SUPER user sees everyone, any other user itself)",
        request=None,
        response=UsageReport,
        query=("since", "until"),
    ),
]
