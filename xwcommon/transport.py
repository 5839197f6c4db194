"""The HTTPS transport used by workers and clients.

TLS is pinned to the deployment's CA (never the system store, never plaintext);
requests carry a bearer token obtained by login and renewed when it expires;
connection failures are retried with capped multiplicative back-off, moving on
to the next server of the list (failover).

Failover across ``dispatcher.servers``: a server that cannot answer (refused or dropped
connection, timeout, 502/503/504) sends the request to the next server of the list at
once; only when every server of the list failed in turn does the transport wait, the
back-off doubling to its cap, and never less than a ``Retry-After`` a busy server gave.
A fleet's transports pass ``jitter`` so that workers cut off together do not come back
together, and ``fail_back_s`` so that a worker that moved away from the first server of
its list tries it again that long after (it came back: the load spreads as configured).

A wait after a server did not answer (refused or dropped connection, timeout) ends early
when another request of the same transport gets an answer (any status but 502/503/504): the
server is back, and a request that failed through several outages in a row (its back-off
doubled each time) does not sleep on for seconds after it. A busy server's answers wake no
one, and a wait a busy server asked for (502/503/504, ``Retry-After``) is never cut short:
that is the server shedding load. Only the transport's own requests are woken, so a fleet's
workers still come back as their own back-off and jitter spread them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from . import defaults
from .errors import (
    LOGIN_BUSY,
    AuthenticationError,
    ConfigError,
    IntegrityError,
    ServerUnreachable,
    TLSError,
    TooManyRequests,
    XWError,
    error_from_wire,
)
from .servers import normalize_server, pinned_ssl_context

__all__ = ["Transport", "normalize_server", "pinned_ssl_context", "sha256_file"]

log = logging.getLogger(__name__)

#: how long a login waits, in all, while the server says too many logins of it are in progress
#: (when the transport itself retries without limit)
LOGIN_BUSY_WAIT_S = 120.0
#: statuses meaning "this server cannot answer now", worth retrying elsewhere or later
_RETRYABLE_STATUSES = {502, 503, 504}


class Transport:
    """An authenticated, pinned, retrying HTTPS session against one deployment."""

    def __init__(
        self,
        servers: list[str] | str,
        ca_file: str | os.PathLike[str],
        login: str,
        password: str,
        *,
        retry_for_s: float | None = 30.0,
        request_timeout_s: float = 60.0,
        backoff_start_s: float = defaults.BACKOFF_START_S,
        backoff_cap_s: float = defaults.BACKOFF_CAP_S,
        connections: int = 100,
        sleep: Callable[[float], Any] = asyncio.sleep,
        jitter: Callable[[float], float] | None = None,
        fail_back_s: float | None = None,
        on_unreachable: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = servers.split()
        if not servers:
            raise ConfigError("no server configured (dispatcher.servers is empty)")
        self.servers = [normalize_server(s) for s in servers]
        self._current = 0
        self.ssl = pinned_ssl_context(ca_file)
        self.login_name = login
        self._password = password
        self.retry_for_s = retry_for_s
        self.request_timeout_s = request_timeout_s
        self.backoff_start_s = backoff_start_s
        self.backoff_cap_s = backoff_cap_s
        self._connections = connections
        self._sleep = sleep
        self._jitter = jitter
        self.fail_back_s = fail_back_s
        #: told why each time every server of the list failed in turn, before the wait to retry
        self.on_unreachable = on_unreachable
        #: when (monotonic) to try the first server again after a failover; None: on it
        self._fail_back_at: float | None = None
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._login_lock = asyncio.Lock()
        self.user: dict[str, Any] = {}
        #: requests waiting to retry: woken when a server answers another request
        self._retry_waits: set[asyncio.Future[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return self.servers[self._current]

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=self._connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- authentication ------------------------------------------------------------------------
    async def login(self) -> None:
        async with self._login_lock:
            await self._login()

    async def _login(self) -> None:
        """Log in with the password (a subclass may try another credential first)."""
        waited_s = 0.0
        while True:
            try:
                body = await self._call("POST", "/login", json=self.password_login(), auth=False)
                break
            except TooManyRequests as exc:
                # many hosts sharing one worker identity log in at once after a restart:
                # the server lets a few through at a time and asks the others to come back
                wait_s = float(exc.retry_after_s or 1)
                limit_s = self.retry_for_s if self.retry_for_s is not None else LOGIN_BUSY_WAIT_S
                if exc.code != LOGIN_BUSY or waited_s + wait_s > limit_s:
                    raise
                waited_s += wait_s
                await self._sleep(wait_s)
        self.logged_in(body)

    def password_login(self) -> dict[str, Any]:
        """The body of a password login."""
        return {"login": self.login_name, "password": self._password}

    def logged_in(self, body: dict[str, Any]) -> None:
        """Keep what a login answered."""
        self._token = body["token"]
        self.user = body.get("user", {})

    def use_password(self, password: str) -> None:
        """Log in with ``password`` from now on (after the user changed it: the server revoked
        every token of that user, so the next request logs in again)."""
        self._password = password
        self._token = None

    async def logout(self) -> None:
        if self._token:
            await self.request("POST", "/logout")
            self._token = None

    # -- requests -----------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        auth: bool = True,
    ) -> Any:
        """One JSON call; logs in first if needed and once more if the token expired."""
        if auth and self._token is None:
            await self.login()
        try:
            return await self._call(method, path, json=json, params=params, timeout_s=timeout_s, auth=auth)
        except AuthenticationError:
            if not auth:
                raise
            await self.login()
            return await self._call(method, path, json=json, params=params, timeout_s=timeout_s, auth=auth)

    async def upload(
        self,
        path: str,
        source: str | os.PathLike[str] | bytes,
        *,
        params: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """Stream a file (or bytes) as the raw body; the sha256 travels in the query."""
        if isinstance(source, bytes):
            digest, size = hashlib.sha256(source).hexdigest(), len(source)
        else:
            digest, size = await asyncio.to_thread(sha256_file, source)
        query = dict(params or {})
        query.setdefault("sha256", digest)
        query.setdefault("size", size)

        def body() -> Any:
            if isinstance(source, bytes):
                return source
            return _file_chunks(Path(source), progress)

        if self._token is None:
            await self.login()
        try:
            return await self._call("POST", path, data_factory=body, params=query)
        except AuthenticationError:
            await self.login()
            return await self._call("POST", path, data_factory=body, params=query)

    async def download(
        self,
        path: str,
        dest: str | os.PathLike[str],
        *,
        expected_sha256: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Stream a body to ``dest`` (via a temporary file); verify and return its sha256."""
        if self._token is None:
            await self.login()
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")

        async def consume(resp: aiohttp.ClientResponse) -> str:
            h = hashlib.sha256()
            with open(tmp, "wb") as fh:
                async for chunk in resp.content.iter_chunked(defaults.STREAM_CHUNK_BYTES):
                    h.update(chunk)
                    fh.write(chunk)
                    if progress:
                        progress(len(chunk))
            return h.hexdigest()

        try:
            try:
                digest = await self._call("GET", path, consumer=consume)
            except AuthenticationError:
                await self.login()
                digest = await self._call("GET", path, consumer=consume)
            announced = expected_sha256
            if announced and digest != announced:
                raise IntegrityError(f"downloaded {path}: sha256 {digest} differs from expected {announced}")
            os.replace(tmp, dest)
            return str(digest)
        finally:
            if tmp.exists():
                tmp.unlink()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        auth: bool = True,
        data_factory: Callable[[], Any] | None = None,
        consumer: Callable[[aiohttp.ClientResponse], Any] | None = None,
    ) -> Any:
        """Send one request, retrying connection failures with back-off and failover."""
        deadline = None if self.retry_for_s is None else time.monotonic() + self.retry_for_s
        delay = self.backoff_start_s
        #: servers that failed since the last wait (a whole round of the list: wait)
        failed = 0
        self._maybe_fail_back()
        while True:
            url = f"{self.server}{defaults.API_PREFIX}{path}"
            headers = {}
            if auth and self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            if data_factory is not None or consumer is not None:
                # a transfer may take long; what must not happen is silence for too long
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.request_timeout_s)
            else:
                timeout = aiohttp.ClientTimeout(total=timeout_s or self.request_timeout_s, sock_connect=10)
            try:
                async with self.session.request(
                    method,
                    url,
                    json=json,
                    data=data_factory() if data_factory else None,
                    params=_clean_params(params),
                    headers=headers,
                    timeout=timeout,
                ) as resp:
                    if resp.status in _RETRYABLE_STATUSES:
                        raise _Retry(f"{url} answered {resp.status}", _retry_after_s(resp))
                    if self._retry_waits:
                        self._server_answered()
                    if resp.status >= 400:
                        raise await _wire_error(resp)
                    if consumer is not None:
                        return await consumer(resp)
                    if resp.content_type == "application/json":
                        return await resp.json()
                    return await resp.read()
            except aiohttp.ClientConnectorCertificateError as exc:
                raise TLSError(
                    f"{self.server} presented a certificate not signed by the deployment CA; refusing to talk "
                    f"({exc.certificate_error})"
                ) from exc
            except aiohttp.ClientSSLError as exc:
                raise TLSError(f"TLS with {self.server} failed; refusing to talk ({exc})") from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, _Retry) as exc:
                failed += 1
                if failed < len(self.servers):
                    wait_s = 0.0  # another server of the list may answer: ask it at once
                else:
                    retry_after_s = exc.retry_after_s if isinstance(exc, _Retry) else None
                    wait_s = max(delay, float(retry_after_s or 0))
                    if self._jitter is not None:
                        wait_s = self._jitter(wait_s)
                if deadline is not None and time.monotonic() + wait_s > deadline:
                    raise ServerUnreachable(
                        f"no server answered ({', '.join(self.servers)}): {str(exc) or type(exc).__name__}; "
                        "check that the server runs and dispatcher.servers is right"
                    ) from exc
                failing = self.server
                self._current = (self._current + 1) % len(self.servers)
                if self._current != 0 and self.fail_back_s is not None:
                    back_s = self._jitter(self.fail_back_s) if self._jitter else self.fail_back_s
                    self._fail_back_at = time.monotonic() + back_s
                if wait_s > 0:
                    # a server that answered 502/503/504 is there but busy: it set the wait
                    busy = isinstance(exc, _Retry)
                    if self.on_unreachable is not None and not busy:
                        self.on_unreachable(
                            f"server {failing} unreachable ({str(exc) or type(exc).__name__})"
                        )
                    log.warning(
                        "server %s unreachable (%s); retrying %s in %.1fs",
                        failing,
                        str(exc) or type(exc).__name__,
                        self.server,
                        wait_s,
                    )
                    await self._wait_to_retry(wait_s, wakeable=not busy)
                    failed = 0
                    delay = min(delay * 2, self.backoff_cap_s)
                else:
                    log.warning(
                        "server %s unreachable (%s); trying %s",
                        failing,
                        str(exc) or type(exc).__name__,
                        self.server,
                    )

    async def _wait_to_retry(self, wait_s: float, *, wakeable: bool) -> None:
        """Sleep ``wait_s`` before a retry; a ``wakeable`` wait (the server did not answer)
        ends early when a server answers another request. A busy server's wait is kept
        whole: waking it would undo the server's load shedding."""
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if wakeable:
            self._retry_waits.add(answered)
        sleep = asyncio.ensure_future(self._sleep(wait_s))
        try:
            await asyncio.wait((answered, sleep), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._retry_waits.discard(answered)
            sleep.cancel()
        if answered.done():
            log.info("server %s answered another request: retrying now", self.server)

    def _server_answered(self) -> None:
        """Wake every request waiting to retry."""
        waits, self._retry_waits = self._retry_waits, set()
        for answered in waits:
            if not answered.done():
                answered.set_result(None)

    def _maybe_fail_back(self) -> None:
        """Back to the first server of the list once ``fail_back_s`` passed since the failover
        (if it is still down, the request moves on to the next server at once)."""
        if self._current == 0 or self._fail_back_at is None or time.monotonic() < self._fail_back_at:
            return
        log.info("trying the first server again: %s", self.servers[0])
        self._current, self._fail_back_at = 0, None


class _Retry(Exception):
    """Raised internally when a server answered a status worth retrying."""

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after_s(resp: aiohttp.ClientResponse) -> int | None:
    """A ``Retry-After`` in seconds (the date form is not used by our servers)."""
    value = resp.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def _clean_params(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None}


async def _wire_error(resp: aiohttp.ClientResponse) -> XWError:
    retry_after = resp.headers.get("Retry-After", "")
    retry_after_s = int(retry_after) if retry_after.isdigit() else None
    try:
        body = await resp.json(content_type=None)
        return error_from_wire(
            str(body.get("error", "error")),
            str(body.get("message", "")),
            resp.status,
            retry_after_s=retry_after_s,
        )
    except (ValueError, aiohttp.ContentTypeError, AttributeError):
        text = (await resp.text())[:200]
        return error_from_wire("error", f"HTTP {resp.status}: {text}", resp.status)


async def _file_chunks(path: Path, progress: Callable[[int], None] | None) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            chunk = await asyncio.to_thread(fh.read, defaults.STREAM_CHUNK_BYTES)
            if not chunk:
                return
            if progress:
                progress(len(chunk))
            yield chunk


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(defaults.STREAM_CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
