"""Routes: data by URL (``POST /data/url``; xwserver/urls.py)."""

from __future__ import annotations

from aiohttp import web

from xwcommon.protocol import client as c

from .. import data, urls
from .http import caller_of, read_json, server_of
from .route import Route


async def data_url_insert(request: web.Request) -> web.Response:
    srv = server_of(request)
    inserted = await urls.insert(srv, caller_of(request), await read_json(request))
    return web.json_response(await data.render(srv, inserted), status=201)


DATA_URL_ROUTES: list[Route] = [
    Route(
        "POST",
        "/data/url",
        data_url_insert,
        "Insert data by http(s) URL: its size and sha256 given, or fetched once by the server "
        "if its administrator allows it; workers fetch the content from the URL",
        request=c.DataByUrl,
        response=c.Data,
        status=201,
    ),
]
