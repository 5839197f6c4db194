"""The client side of the wire: server names, the pinned CA, errors, retries, token renewal.

The TLS tests run a small real HTTPS server (aiohttp) with a certificate from a
deployment CA made by ``xwserver.keystore``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from xwcommon import defaults
from xwcommon.errors import (
    AuthenticationError,
    ConfigError,
    Conflict,
    NotFound,
    ServerUnreachable,
    TLSError,
    XWError,
    error_from_wire,
)
from xwcommon.transport import Transport, normalize_server, pinned_ssl_context
from xwserver.keystore import CA_CERT, init_keystore, server_ssl_context

PORT = defaults.DEFAULT_PORT


# -- server names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("xw.example.org", f"https://xw.example.org:{PORT}"),
        ("xw.example.org:1234", "https://xw.example.org:1234"),
        ("https://xw.example.org:1234", "https://xw.example.org:1234"),
        ("https://xw.example.org:1234/", "https://xw.example.org:1234"),
        ("https://xw.example.org:1234/api/v1", "https://xw.example.org:1234"),
        ("https://xw.example.org", f"https://xw.example.org:{PORT}"),
        ("  https://xw.example.org:1234  ", "https://xw.example.org:1234"),
        ("xw://xw.example.org:1234", "https://xw.example.org:1234"),
        ("127.0.0.1:4000", "https://127.0.0.1:4000"),
        ("[::1]:4000", "https://[::1]:4000"),
        ("[::1]", f"https://[::1]:{PORT}"),
        ("HTTPS://xw.example.org:1234", "https://xw.example.org:1234"),
    ],
)
def test_server_names_become_https_urls_with_a_port(given: str, expected: str) -> None:
    assert normalize_server(given) == expected


@pytest.mark.parametrize(
    "given", ["http://xw.example.org", "http://xw.example.org:4325/", "HTTP://xw.example.org", " Http://x:1 "]
)
def test_plaintext_http_is_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="plaintext http is refused"):
        normalize_server(given)


@pytest.mark.parametrize("given", ["ftp://xw.example.org", "ws://xw.example.org:4325"])
def test_other_schemes_are_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="https://"):
        normalize_server(given)


def test_a_transport_refuses_a_plaintext_server_among_others(tmp_path: Path) -> None:
    ca = init_keystore(tmp_path / "ks", ["127.0.0.1"]).ca_cert
    with pytest.raises(ConfigError, match="plaintext"):
        Transport(["https://a.example", "http://b.example"], ca, "u", "p")
    with pytest.raises(ConfigError, match="no server configured"):
        Transport([], ca, "u", "p")


# -- the pinned CA ------------------------------------------------------------------------------------------
def test_the_pinned_context_trusts_the_deployment_ca_only(tmp_path: Path) -> None:
    ca = init_keystore(tmp_path / "ks", ["127.0.0.1"]).ca_cert
    ctx = pinned_ssl_context(ca)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1  # no system store


def test_a_missing_ca_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.pem does not exist"):
        pinned_ssl_context(tmp_path / "nope.pem")


# -- a real HTTPS server ------------------------------------------------------------------------------------
Routes = dict[tuple[str, str], Callable[[web.Request], Any]]


@pytest.fixture
def keystore_dir(tmp_path: Path) -> Path:
    init_keystore(tmp_path / "ks", ["127.0.0.1"])
    return tmp_path / "ks"


@pytest.fixture
async def https(keystore_dir: Path) -> AsyncIterator[Callable[[Routes], Any]]:
    """Start an HTTPS server with the given routes (below /api/v1); yields a starter."""
    runners: list[web.AppRunner] = []

    async def start(routes: Routes) -> str:
        app = web.Application()
        for (method, path), handler in routes.items():
            app.router.add_route(method, defaults.API_PREFIX + path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(keystore_dir))
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"https://127.0.0.1:{port}"

    yield start
    for r in runners:
        await r.cleanup()


def _answer(body: Any) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    return handler


def _login_route(tokens: list[str]) -> Callable[[web.Request], Any]:
    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        if body != {"login": "alice", "password": "pw"}:
            return web.json_response(
                {"error": "unauthorized", "message": "wrong login or password"}, status=401
            )
        tokens.append(f"t{len(tokens) + 1}")
        return web.json_response({"token": tokens[-1], "expires_at": "", "user": {"login": "alice"}})

    return login


async def test_a_transport_talks_to_a_server_signed_by_its_ca(https: Any, keystore_dir: Path) -> None:
    tokens: list[str] = []

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"auth": request.headers.get("Authorization")})

    url = await https({("POST", "/login"): _login_route(tokens), ("GET", "/users/me"): me})
    async with Transport(url, keystore_dir / CA_CERT, "alice", "pw") as t:
        assert await t.request("GET", "/users/me") == {"auth": "Bearer t1"}
        assert t.user == {"login": "alice"}


async def test_a_server_signed_by_another_ca_is_refused(https: Any, tmp_path: Path) -> None:
    url = await https({("GET", "/version"): _answer({})})
    other_ca = init_keystore(tmp_path / "other", ["127.0.0.1"]).ca_cert
    async with Transport(url, other_ca, "alice", "pw", retry_for_s=0) as t:
        with pytest.raises(TLSError, match="not signed by the deployment CA"):
            await t.request("GET", "/version", auth=False)


async def test_server_errors_come_back_as_the_matching_exception(https: Any, keystore_dir: Path) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "not_found", "message": "no job 42"}, status=404)

    async def conflict(request: web.Request) -> web.Response:
        return web.json_response({"error": "conflict", "message": "no longer live"}, status=409)

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>", status=418, content_type="text/html")

    url = await https({("GET", "/a"): missing, ("GET", "/b"): conflict, ("GET", "/c"): not_json})
    async with Transport(url, keystore_dir / CA_CERT, "alice", "pw") as t:
        with pytest.raises(NotFound, match="no job 42") as err:
            await t.request("GET", "/a", auth=False)
        assert err.value.http_status == 404
        with pytest.raises(Conflict, match="no longer live"):
            await t.request("GET", "/b", auth=False)
        with pytest.raises(XWError, match="HTTP 418: <html>oops") as err2:
            await t.request("GET", "/c", auth=False)
        assert err2.value.http_status == 418


async def test_an_expired_token_is_renewed_once(https: Any, keystore_dir: Path) -> None:
    tokens: list[str] = []

    async def guarded(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {tokens[-1]}" or len(tokens) < 2:
            return web.json_response({"error": "unauthorized", "message": "token expired"}, status=401)
        return web.json_response({"ok": True})

    url = await https({("POST", "/login"): _login_route(tokens), ("GET", "/x"): guarded})
    async with Transport(url, keystore_dir / CA_CERT, "alice", "pw") as t:
        assert await t.request("GET", "/x") == {"ok": True}
    assert tokens == ["t1", "t2"]


async def test_a_wrong_password_is_an_authentication_error(https: Any, keystore_dir: Path) -> None:
    url = await https({("POST", "/login"): _login_route([])})
    async with Transport(url, keystore_dir / CA_CERT, "alice", "wrong") as t:
        with pytest.raises(AuthenticationError, match="wrong login or password"):
            await t.request("GET", "/x")


async def test_busy_servers_are_retried_with_growing_back_off_then_given_up(
    https: Any, keystore_dir: Path
) -> None:
    calls = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": "unreachable", "message": "busy"}, status=503)

    url = await https({("GET", "/version"): busy})
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    # no time to retry: one call, then unreachable
    async with Transport(url, keystore_dir / CA_CERT, "a", "p", retry_for_s=0, sleep=sleep) as t:
        with pytest.raises(ServerUnreachable, match="no server answered"):
            await t.request("GET", "/version", auth=False)
    assert (calls, slept) == (1, [])

    # the sleeps are faked but the deadline is real: 4.05 s leaves room for 0.5+1+2+4 and a
    # few more capped steps during the first real 0.05 s
    calls = 0
    async with Transport(
        url,
        keystore_dir / CA_CERT,
        "a",
        "p",
        retry_for_s=4.05,
        backoff_start_s=0.5,
        backoff_cap_s=4,
        sleep=sleep,
    ) as t:
        with pytest.raises(ServerUnreachable):
            await t.request("GET", "/version", auth=False)
    assert slept[:4] == [0.5, 1.0, 2.0, 4.0]
    assert set(slept[4:]) <= {4.0}
    assert calls == len(slept) + 1


async def test_a_server_that_does_not_answer_fails_over_to_the_next(https: Any, keystore_dir: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    url = await https({("GET", "/version"): _answer({"v": 1})})
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async with Transport([dead, url], keystore_dir / CA_CERT, "a", "p", sleep=sleep) as t:
        assert await t.request("GET", "/version", auth=False) == {"v": 1}
        assert t.server == url
    assert slept == []  # another server of the list is asked at once, without waiting


def test_wire_errors_map_to_the_hierarchy() -> None:
    assert isinstance(error_from_wire("not_found", "x", 404), NotFound)
    assert isinstance(error_from_wire("unauthorized", "x", 401), AuthenticationError)
    unknown = error_from_wire("teapot", "short and stout", 418)
    assert type(unknown) is XWError
    assert (unknown.code, unknown.message, unknown.http_status) == ("teapot", "short and stout", 418)


async def test_a_busy_servers_retry_after_is_waited_once_every_server_of_the_list_failed(
    https: Any, keystore_dir: Path
) -> None:
    calls: list[str] = []

    def busy(name: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            calls.append(name)
            if len(calls) <= 2:
                return web.json_response(
                    {"error": "busy", "message": "busy"}, status=503, headers={"Retry-After": "7"}
                )
            return web.json_response({"v": name})

        return handler

    a = await https({("GET", "/version"): busy("a")})
    b = await https({("GET", "/version"): busy("b")})
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async with Transport(
        [a, b], keystore_dir / CA_CERT, "x", "p", sleep=sleep, jitter=lambda d: d * 1.5
    ) as t:
        assert await t.request("GET", "/version", auth=False) == {"v": "a"}
    # a, then b at once, then (the whole list failed) the Retry-After, jittered
    assert calls == ["a", "b", "a"] and slept == [10.5]


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_retry_waiting_out_its_back_off_goes_at_once_when_another_request_is_answered(
    keystore_dir: Path,
) -> None:
    """A request that failed through several outages waits long (its back-off doubled each
    time); once the server is back and answers another request of the transport, it retries
    at once. An answer of a busy server (503) wakes no one, and the wait a busy server asked
    for (Retry-After) is not cut short by answers to other requests."""
    from helpers.net import free_port

    port = free_port()
    url = f"https://127.0.0.1:{port}"
    calls: list[str] = []

    async def version(request: web.Request) -> web.Response:
        calls.append("version")
        return web.json_response({"v": 1})

    async def busy(request: web.Request) -> web.Response:
        calls.append("busy")
        return web.json_response(
            {"error": "busy", "message": "busy"}, status=503, headers={"Retry-After": "60"}
        )

    app = web.Application()
    app.router.add_get(defaults.API_PREFIX + "/version", version)
    app.router.add_get(defaults.API_PREFIX + "/busy", busy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    async with Transport(url, keystore_dir / CA_CERT, "a", "p", retry_for_s=None, backoff_start_s=60) as t:
        # the server is down: the request fails to connect and waits 60 s to retry
        waiting = asyncio.create_task(t.request("GET", "/version", auth=False))
        await asyncio.sleep(0.3)
        assert not waiting.done() and calls == []
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl_context(keystore_dir))
        await site.start()
        try:
            # the server is back but busy: its 503 sends no one back early
            busy_call = asyncio.create_task(t.request("GET", "/busy", auth=False))
            await _until(lambda: "busy" in calls)
            await asyncio.sleep(0.3)  # time for a wrong wake-up to show
            assert calls == ["busy"] and not waiting.done()
            # another request is answered: the waiting one goes at once
            assert await asyncio.wait_for(t.request("GET", "/version", auth=False), 5) == {"v": 1}
            assert await asyncio.wait_for(waiting, 5) == {"v": 1}
            assert calls.count("version") == 2
            # the wait a busy server asked for is kept whole: answers elsewhere cut it not short
            await asyncio.sleep(0.3)
            assert calls.count("busy") == 1 and not busy_call.done()
            busy_call.cancel()
        finally:
            await runner.cleanup()


async def test_a_worker_that_failed_over_tries_the_first_server_again_after_fail_back_s(
    https: Any, keystore_dir: Path
) -> None:
    up = True

    async def first(request: web.Request) -> web.Response:
        if not up:
            return web.json_response({"error": "busy", "message": "down"}, status=503)
        return web.json_response({"v": "first"})

    a = await https({("GET", "/version"): first})
    b = await https({("GET", "/version"): _answer({"v": "second"})})

    async with Transport([a, b], keystore_dir / CA_CERT, "x", "p", fail_back_s=0.2) as t:
        up = False
        assert await t.request("GET", "/version", auth=False) == {"v": "second"}
        up = True
        assert await t.request("GET", "/version", auth=False) == {"v": "second"}  # not yet
        await asyncio.sleep(0.25)
        assert await t.request("GET", "/version", auth=False) == {"v": "first"}
        assert t.server == a
