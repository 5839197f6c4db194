"""The dashboard's jobs list on every database, through the page's own function (its queries
are its own: the readable jobs counted by status, keyset paging on the job's id) called with a
request made in the test, no HTTP: a standard user sees its own jobs only, pages newest first
without gaps or repeats. Each test mirrors one of tests/unit/test_dashboard.py, whose HTTP
versions run on SQLite; the session, CSRF and the pages only a SUPER user may see are the
page wrapper's (HTTP) and stay there."""

from __future__ import annotations

import re
import uuid

import pytest
from aiohttp.test_utils import make_mocked_request
from helpers import domain as d

from xwcommon.errors import BadRequest, NotFound
from xwserver import jobs
from xwserver.access import Caller
from xwserver.state import Server
from xwserver.web.pages import Visit, jobs_page

JOB_LINK = re.compile(r'href="/jobs/([0-9a-f-]{36})"')


async def _jobs_page(srv: Server, who: Caller, path_qs: str = "/jobs") -> str:
    """``GET /jobs...`` of the dashboard as ``who`` (logged in: the session's token only signs
    the page's forms): the page's HTML."""
    response = await jobs_page(make_mocked_request("GET", path_qs), Visit(srv, who, "a-session-token"))
    assert response.status == 200 and response.text is not None
    return response.text


async def test_a_standard_user_sees_its_own_jobs_only(domain: Server) -> None:
    """Mirrors test_a_standard_user_sees_its_own_jobs_only_and_no_user_list (the jobs list)."""
    srv = domain
    dave = await d.add_user(srv, "dave")
    await d.insert_app(srv, dave, "own")  # inserted below ADVANCED: private, and so are its jobs
    private = await d.submit(srv, dave, "own")
    carol = await d.add_user(srv, "carol")
    text = await _jobs_page(srv, carol)
    assert "carol" in text and private["uid"] not in text
    assert private["uid"] in await _jobs_page(srv, dave)


async def test_jobs_page_by_keyset_newest_first_without_gaps_or_repeats(domain: Server) -> None:
    """Mirrors test_jobs_page_by_keyset_newest_first_without_gaps_or_repeats."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "app")
    made = [(await d.submit(srv, admin, "app"))["uid"] for _ in range(60)]
    first = await _jobs_page(srv, admin)
    page1 = JOB_LINK.findall(first)
    assert page1 == made[::-1][:50]
    [older] = re.findall(r'href="(/jobs\?before=[^"]+)" id="next-page"', first)
    second = await _jobs_page(srv, admin, older.replace("&amp;", "&"))
    page2 = JOB_LINK.findall(second)
    assert page2 == made[::-1][50:] and 'id="next-page"' not in second
    filtered = await _jobs_page(srv, admin, "/jobs?status=COMPLETED")
    assert JOB_LINK.findall(filtered) == []
    with pytest.raises(BadRequest, match="unknown status"):
        await _jobs_page(srv, admin, "/jobs?status=FINISHED")
    for bad in ("/jobs?label=a%00b", "/jobs?before=not-a-uid"):
        with pytest.raises(BadRequest):
            await _jobs_page(srv, admin, bad)
    with pytest.raises(BadRequest):
        await _jobs_page(srv, admin, "/jobs?session=nope")
    with pytest.raises(BadRequest):
        await jobs.get(srv, admin, "not-a-uid")
    with pytest.raises(NotFound, match="no job"):
        await jobs.get(srv, admin, str(uuid.uuid4()))
