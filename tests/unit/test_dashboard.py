"""The web dashboard over HTTP: sessions, CSRF, rights, paging and submission.

The whole path in a real browser is tests/integration/test_dashboard_browser.py; here each
rule is checked on an in-process server with a cookie-keeping HTTPS client. On SQLite (the
keyset paging also on PostgreSQL and MariaDB); tests/unit/test_domain_dashboard.py holds the
jobs list's scenarios on every database through the page's function."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest

from xwserver.web.session import SECURITY_HEADERS

if TYPE_CHECKING:
    from conftest import XW

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def browser(xw: XW) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (even for 127.0.0.1) and does not follow redirects by itself."""
    connector = aiohttp.TCPConnector(ssl=xw.session.connector._ssl)  # type: ignore[union-attr]
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def _get(xw: XW, s: aiohttp.ClientSession, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with s.get(xw.url + path, allow_redirects=False) as r:
        return r.status, await r.text(), r


async def _login(xw: XW, s: aiohttp.ClientSession, login: str = "admin", password: str | None = None) -> str:
    """Log in through the form; the CSRF token of the pages that follow."""
    _, text, _ = await _get(xw, s, "/login")
    [token] = CSRF.findall(text)
    form = {"csrf": token, "login": login, "password": password or xw.admin_password, "next": "/jobs"}
    async with s.post(xw.url + "/login", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "/jobs"
        cookie = r.headers["Set-Cookie"]
    assert "xw_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    _, page, _ = await _get(xw, s, "/jobs")
    return CSRF.findall(page)[0]


async def test_a_page_without_a_session_sends_to_the_login_form(
    xw: XW, browser: aiohttp.ClientSession
) -> None:
    status, _, r = await _get(xw, browser, "/jobs?status=PENDING")
    assert status == 303 and r.headers["Location"] == "/login?next=%2Fjobs%3Fstatus%3DPENDING"
    status, text, r = await _get(xw, browser, "/login")
    assert status == 200 and "<form" in text
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none': no script at all


async def test_login_needs_the_forms_csrf_token_and_the_right_password(
    xw: XW, browser: aiohttp.ClientSession
) -> None:
    _, text, _ = await _get(xw, browser, "/login")
    [token] = CSRF.findall(text)
    no_token = {"login": "admin", "password": xw.admin_password}
    async with browser.post(xw.url + "/login", data=no_token, allow_redirects=False) as r:
        text = await r.text()
        assert r.status == 403 and "login form has expired" in text
    [token] = CSRF.findall(text)  # the page shown again carries a fresh token
    wrong = {"csrf": token, "login": "admin", "password": "wrong-password"}
    async with browser.post(xw.url + "/login", data=wrong, allow_redirects=False) as r:
        assert r.status == 401 and "xw_session" not in r.headers.get("Set-Cookie", "")


async def test_every_page_renders_without_script_for_an_admin(xw: XW, browser: aiohttp.ClientSession) -> None:
    await xw.insert_app(xw.admin, "app")
    job = await xw.submit(xw.admin, "app", label="seen")
    await xw.register()
    await _login(xw, browser)
    for path, words in (
        ("/jobs", ["PENDING <b>1</b>", job["uid"]]),
        (f"/jobs/{job['uid']}", ["seen", "Not run yet", "History", "<td>created</td>"]),
        ("/submit", ['<option value="app">']),
        ("/workers", ["active <b>1</b>", "Credit (CPU s)"]),
        ("/users", ["admin", "worker"]),
        ("/groups", ["User groups"]),
    ):
        status, text, r = await _get(xw, browser, path)
        assert status == 200, (path, text)
        assert all(w in text for w in words), (path, words)
        assert "<script" not in text and "style=" not in text
        assert r.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    assert (await _get(xw, browser, "/static/style.css"))[0] == 200


async def test_a_standard_user_sees_its_own_jobs_only_and_no_user_list(
    xw: XW, browser: aiohttp.ClientSession
) -> None:
    dave = await xw.add_user("dave")
    await xw.insert_app(dave, "own")  # inserted below ADVANCED: private, and so are its jobs
    private = await xw.submit(dave, "own")
    password = "pw-carol-123456"
    from xwcommon.levels import UserLevel
    from xwserver.users import create_user

    async with xw.srv.sessions.begin() as session:
        await create_user(session, "carol", password, UserLevel.STANDARD)
    await _login(xw, browser, "carol", password)
    _, text, _ = await _get(xw, browser, "/jobs")
    assert "carol" in text and private["uid"] not in text
    status, text, _ = await _get(xw, browser, "/users")
    assert status == 403 and "needs SUPER rights" in text
    status, _, _ = await _get(xw, browser, "/groups")
    assert status == 403


@pytest.mark.every_database
async def test_jobs_page_by_keyset_newest_first_without_gaps_or_repeats(
    xw: XW, browser: aiohttp.ClientSession
) -> None:
    await xw.insert_app(xw.admin, "app")
    made = [(await xw.submit(xw.admin, "app"))["uid"] for _ in range(60)]
    await _login(xw, browser)
    _, first, _ = await _get(xw, browser, "/jobs")
    page1 = re.findall(r'href="/jobs/([0-9a-f-]{36})"', first)
    assert page1 == made[::-1][:50]
    [older] = re.findall(r'href="(/jobs\?before=[^"]+)" id="next-page"', first)
    _, second, _ = await _get(xw, browser, older.replace("&amp;", "&"))
    page2 = re.findall(r'href="/jobs/([0-9a-f-]{36})"', second)
    assert page2 == made[::-1][50:] and 'id="next-page"' not in second
    _, filtered, _ = await _get(xw, browser, "/jobs?status=COMPLETED")
    assert re.findall(r'href="/jobs/([0-9a-f-]{36})"', filtered) == []
    status, text, _ = await _get(xw, browser, "/jobs?status=FINISHED")
    assert status == 400 and "unknown status" in text
    for bad in ("/jobs?label=a%00b", "/jobs?before=not-a-uid", "/jobs?session=nope", "/jobs/not-a-uid"):
        status, text, _ = await _get(xw, browser, bad)
        assert status == 400 and "<h1>Error</h1>" in text, (bad, status)
    status, text, _ = await _get(xw, browser, f"/jobs/{uuid.uuid4()}")
    assert status == 404 and "no job" in text


async def test_a_job_submitted_by_the_form_has_its_arguments_and_input(
    xw: XW, browser: aiohttp.ClientSession
) -> None:
    await xw.insert_app(xw.admin, "app")
    csrf = await _login(xw, browser)
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("app", "app")
    form.add_field("args", "-n 'two words'")
    form.add_field("label", "from-the-form")
    form.add_field("stdin_text", "42\n")
    form.add_field("env_file", b"", filename="", content_type="application/octet-stream")
    async with browser.post(xw.url + "/submit", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        uid = r.headers["Location"].rsplit("/", 1)[1]
    job = await xw.job(uid)
    assert job["args"] == ["-n", "two words"] and job["label"] == "from-the-form"
    assert job["stdin_uid"] and job["env_uid"] is None
    content = await xw.call("GET", f"/data/{job['stdin_uid']}/content", token=xw.admin)
    assert content.body == b"42\n"


async def test_a_form_without_its_csrf_token_changes_nothing(xw: XW, browser: aiohttp.ClientSession) -> None:
    await xw.insert_app(xw.admin, "app")
    await _login(xw, browser)
    form = aiohttp.FormData()
    form.add_field("csrf", "0" * 64)
    form.add_field("app", "app")
    form.add_field("stdin_file", b"data", filename="in.txt")
    async with browser.post(xw.url + "/submit", data=form, allow_redirects=False) as r:
        assert r.status == 403
    assert await xw.ok("GET", "/jobs", token=xw.admin) == {"jobs": []}
    stored = (await xw.ok("GET", "/data", token=xw.admin, params={"owner": "me"}))["data"]
    assert [d["name"] for d in stored] == ["app"]  # the app's binary, and no in.txt
    plain = {"csrf": "0" * 64, "app": "app"}
    async with browser.post(xw.url + "/submit", data=plain, allow_redirects=False) as r:
        assert r.status == 400 and "multipart/form-data" in await r.text()
    async with browser.post(xw.url + "/logout", data={"csrf": "nope"}, allow_redirects=False) as r:
        assert r.status == 403
    assert (await _get(xw, browser, "/jobs"))[0] == 200  # still logged in


async def test_logout_revokes_the_sessions_token(xw: XW, browser: aiohttp.ClientSession) -> None:
    csrf = await _login(xw, browser)
    token = next(c.value for c in browser.cookie_jar if c.key == "xw_session")
    assert (await xw.call("GET", "/users/me", token=token)).status == 200
    async with browser.post(xw.url + "/logout", data={"csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/login"
    assert (await xw.call("GET", "/users/me", token=token)).status == 401
    assert (await _get(xw, browser, "/jobs"))[0] == 303


async def test_login_sends_back_to_a_local_page_only(xw: XW, browser: aiohttp.ClientSession) -> None:
    _, text, _ = await _get(xw, browser, "/login?next=//evil.example/x")
    assert 'name="next" value="/jobs"' in text


@pytest.mark.parametrize(
    "path", ["//api/v1/jobs", "/api/v1//jobs", "/./api/v1/jobs", "/api/v1/../v1/jobs", "/API/v1/jobs"]
)
async def test_no_spelling_of_an_api_path_escapes_the_token_check(xw: XW, path: str) -> None:
    """Only paths outside /api/v1/ skip the API's bearer check: no odd spelling of an API
    path reaches an API handler without a token."""
    import ssl as ssl_module

    await xw.insert_app(xw.admin, "app")
    await xw.submit(xw.admin, "app")
    context = ssl_module.create_default_context(cafile=str(xw.ca_file))
    host, port = xw.url.removeprefix("https://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context, server_hostname=host)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = (await reader.read()).decode(errors="replace")
    writer.close()
    status = int(answer.split(" ", 2)[1])
    assert status in (401, 404), (path, answer[:300])
    assert '"jobs"' not in answer
