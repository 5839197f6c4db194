"""Data by URL: a data object whose content stays where it is, at an http(s) URL.

The server records the URL, the size and the sha256; workers fetch the content from the
URL themselves and refuse it unless it still has that digest (xwworker/cache.py), so a
document that changed fails its jobs with a reason rather than feeding them other input.

Without a digest the server can fetch the URL once to learn it, but only when its
administrator allows it (``data.url_fetch``): a server that fetches what its users name
could be made to reach its own network (SSRF). Even then only public addresses are
fetched unless ``data.url_fetch_private`` says otherwise, with ``data.url_fetch_max_bytes``
and ``data.url_fetch_timeout_s`` bounding the fetch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from xwcommon import urlfetch
from xwcommon.errors import BadRequest, Busy, Forbidden, IntegrityError
from xwcommon.levels import UserLevel, parse_access_rights
from xwcommon.protocol import client as c
from xwcommon.status import DataStatus
from xwcommon.uri import new_uid

from .access import DATA_DEFAULT_RIGHTS, Caller
from .data import check_name
from .db.models import Data
from .state import Server

log = logging.getLogger(__name__)

#: fetches this server process runs at once; beyond, 503 with Retry-After: each may hold a
#: connection and up to its time bound, and users could otherwise queue any number of them
MAX_CONCURRENT_FETCHES = 4
_fetching = 0


def default_name(url: str) -> str:
    """The last segment of the URL's path, else its host."""
    parts = urlsplit(url)
    last = unquote(PurePosixPath(parts.path).name)
    try:
        return check_name(last)
    except BadRequest:
        return parts.hostname or "data"


async def insert(srv: Server, caller: Caller, body: Any) -> Data:
    """Record data by URL (``POST /data/url``), fetching it once if no digest is given."""
    caller.require(UserLevel.STANDARD, "inserting data")
    spec = c.DataByUrl.from_wire(body)
    url = urlfetch.check_url(spec.url)
    name = check_name(spec.name) if spec.name is not None else default_name(url)
    rights = (
        parse_access_rights(spec.access_rights) if spec.access_rights is not None else DATA_DEFAULT_RIGHTS
    )
    if spec.sha256 is not None and spec.size is not None:
        sha, size = spec.sha256, spec.size
    else:  # what is not given is learnt by fetching; what is given must match
        sha, size = await fetch_digest(srv, url)
        if spec.sha256 is not None and spec.sha256.lower() != sha:
            raise IntegrityError(f"the document at {url} has sha256 {sha}, not the {spec.sha256} given")
        if spec.size is not None and spec.size != size:
            raise IntegrityError(f"the document at {url} is {size} bytes, not the {spec.size} given")
    data = Data(
        uid=new_uid(),
        name=name,
        size=size,
        sha256=sha,
        status=DataStatus.AVAILABLE,
        owner_id=caller.id,
        access_rights=rights,
        created_at=time.time(),
        url=url,
    )
    async with srv.sessions.begin() as session:
        session.add(data)
    return data


async def fetch_digest(srv: Server, url: str) -> tuple[str, int]:
    """The sha256 and size of the document at ``url``, fetched by this server when allowed."""
    s = srv.settings
    if not s.url_fetch:
        raise Forbidden(
            "this server does not fetch URLs (data.url_fetch=false): give the document's sha256 "
            "and size (xwsenddata URL --xwsha256 HEX --xwsize BYTES)"
        )
    global _fetching
    if _fetching >= MAX_CONCURRENT_FETCHES:
        raise Busy(
            f"this server is fetching {_fetching} URLs already; try again shortly, or give the sha256 and size",
            retry_after_s=max(1, int(s.url_fetch_timeout_s // 4)),
        )
    ca_file = (s.home / s.url_ca_file) if s.url_ca_file else None
    log.info("fetching %s to learn its digest", url)
    _fetching += 1
    try:
        return await urlfetch.fetch(
            url,
            None,
            max_bytes=s.url_fetch_max_bytes,
            timeout_s=s.url_fetch_timeout_s,
            ca_file=Path(ca_file) if ca_file else None,
            public_only=not s.url_fetch_private,
        )
    finally:
        _fetching -= 1
