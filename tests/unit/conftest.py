"""An in-process server over real HTTPS, on a fresh database of each backend.

``xw`` is a running server: a home in ``tmp_path`` (keystore, ``conf/xwserver.conf``,
bootstrap admin and public worker), ``xwserver.app.serve`` as a task of the test's event
loop on a free loopback port, and a client session that trusts the home's CA only.

It runs on SQLite; a test marked ``every_database`` runs on PostgreSQL
(``XW_TEST_PG_URL``) and MariaDB (``XW_TEST_MYSQL_URL``) too, each time on a fresh database
``xwu_<hex>`` copied from a migrated template and dropped afterwards. A database server
that does not answer skips its tests locally and fails them in CI (``CI=true``), so CI
never passes by skipping. The mark is kept for a smoke set, one or two tests a file: what
the database decides (claims, leases and reports, access filters in SQL, constraints,
column types, collations, transactions) is held on every database by the domain tier
(``tests/unit/test_domain_*.py``, ``tests/security/test_domain_access_matrix.py``).

Passwords are hashed with a cheap scrypt cost inside these servers (see
tests/helpers/password_cost.py); tests/unit/test_password_cost.py holds the production cost.

``domain`` is the same server's state without HTTP: a session per database for the domain
tier, on every backend.

Other test folders reuse this harness by loading this file (see tests/security/conftest.py)
and override ``server_conf`` to change the server's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import json as jsonlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers.databases import Templates
from helpers.databases import migrated_database as fresh_database
from helpers.net import free_port
from helpers.password_cost import cheap_password_hashes

from xwcommon import defaults
from xwcommon.protocol.work import Registered, Registration, WorkAnswer, WorkRequest
from xwcommon.transport import pinned_ssl_context
from xwserver import app as server_app
from xwserver.bootstrap import bootstrap
from xwserver.db.engine import create_engine
from xwserver.keystore import init_keystore
from xwserver.settings import ServerSettings
from xwserver.state import Server
from xwserver.store import DataStore

ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
START_TIMEOUT_S = 20.0
#: the in-process server's stop: the client session is closed first, so what is still open
#: then is a connection the test cut (aiohttp lingers on a half-read body for 10 s)
SHUTDOWN_TIMEOUT_S = 1.0

#: the backends a test marked ``every_database`` runs on (the others: SQLite)
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


# -- the server's log -----------------------------------------------------------------------------------
class LogCapture(logging.Handler):
    """Keeps every record of the server's loggers, so tests can assert nothing went wrong."""

    LOGGERS = ("xwserver", "aiohttp", "sqlalchemy", "alembic")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)

    def problems(self) -> list[str]:
        """Errors and tracebacks: what a well-behaved server never logs for bad input."""
        return [self.format(r) for r in self.records if r.levelno >= logging.ERROR or r.exc_info]

    @contextlib.contextmanager
    def installed(self) -> Iterator[LogCapture]:
        loggers = [logging.getLogger(n) for n in self.LOGGERS]
        server_logger = loggers[0]
        old_level = server_logger.level
        server_logger.setLevel(logging.INFO)
        for lg in loggers:
            lg.addHandler(self)
        try:
            yield self
        finally:
            for lg in loggers:
                lg.removeHandler(self)
            server_logger.setLevel(old_level)


# -- talking to it ----------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: Any
    headers: Any = None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


@dataclass
class XW:
    """A running server and a pinned-TLS client session to it."""

    url: str
    backend: str
    settings: ServerSettings
    ca_file: Path
    admin_password: str
    worker_password: str
    session: aiohttp.ClientSession
    log: LogCapture
    #: a second handle on the same database and store, for calling domain functions
    #: such as ``leases.reap(srv, now=...)`` directly (its notifier is not the server's)
    srv: Server
    admin: str = ""
    worker: str = ""

    @property
    def api(self) -> str:
        return self.url + defaults.API_PREFIX

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request; the answer's body is parsed as JSON when it is JSON."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        query = {k: str(v) for k, v in (params or {}).items()}
        if isinstance(data, bytes) and len(data) > 1024 * 1024:
            data = io.BytesIO(data)  # aiohttp warns that big raw bodies may block the loop
        async with self.session.request(
            method, self.api + path, json=json, data=data, params=query or None, headers=hdrs
        ) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type == "application/json":
                body = jsonlib.loads(raw)
            return Reply(resp.status, body, resp.headers)

    async def ok(
        self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201), **kw: Any
    ) -> Any:
        """A call that must succeed; returns the body."""
        r = await self.call(method, path, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert r.status in wanted, f"{method} {path} answered {r.status}: {r.body!r}"
        return r.body

    async def login(self, login: str, password: str) -> str:
        body = await self.ok("POST", "/login", json={"login": login, "password": password})
        return str(body["token"])

    async def add_user(self, login: str, rights: str = "STANDARD") -> str:
        """Create a user straight in the database (there is no user API yet); returns a token."""
        from xwcommon.levels import UserLevel
        from xwserver.users import create_user

        password = "pw-" + secrets.token_hex(8)
        async with self.srv.sessions.begin() as session:
            await create_user(session, login, password, UserLevel.parse(rights))
        return await self.login(login, password)

    # -- the main path, as short helpers ---------------------------------------------------------------
    async def upload(self, token: str, content: bytes, name: str = "blob", **params: Any) -> dict[str, Any]:
        query = {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content), **params}
        return dict(await self.ok("POST", "/data", token=token, data=content, params=query))

    async def insert_app(
        self, token: str, name: str, platforms: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        """An app with one (tiny) binary per platform; default: one ``any/any`` script."""
        binaries = []
        for os_name, cpu in platforms or [("any", "any")]:
            d = await self.upload(token, f"#!/bin/sh\n# {name} {os_name} {cpu}\n".encode(), name=name)
            binaries.append({"os": os_name, "cpu": cpu, "data_uid": d["uid"]})
        return dict(await self.ok("POST", "/apps", token=token, json={"name": name, "binaries": binaries}))

    async def submit(self, token: str, app: str, **spec: Any) -> dict[str, Any]:
        return dict(await self.ok("POST", "/jobs", token=token, json={"app": app, **spec}))

    async def register(
        self, token: str | None = None, os_name: str = "linux", cpu: str = "x86_64", name: str = "host"
    ) -> str:
        msg = Registration(
            name=name,
            os=os_name,
            cpu=cpu,
            cores=4,
            memory_bytes=8 << 30,
            disk_free_bytes=100 << 30,
            version="test",
        )
        body = await self.ok("POST", "/work/register", token=token or self.worker, json=msg.to_wire())
        return Registered.from_wire(body).host_uid

    async def request_work(
        self, host_uid: str, capacity: int = 1, wait_s: float = 0, token: str | None = None
    ) -> list[dict[str, Any]]:
        """The assignments, checked against the protocol, as the JSON the server sent."""
        msg = WorkRequest(host_uid=host_uid, capacity=capacity, wait_s=wait_s)
        body = await self.ok("POST", "/work/request", token=token or self.worker, json=msg.to_wire())
        WorkAnswer.from_wire(body)
        return list(body["assignments"])

    async def job(self, uid: str, token: str | None = None) -> dict[str, Any]:
        return dict(await self.ok("GET", f"/jobs/{uid}", token=token or self.admin))

    async def tasks(self, job_uid: str) -> list[dict[str, Any]]:
        body = await self.ok("GET", "/tasks", token=self.admin, params={"job": job_uid})
        return list(body["tasks"])

    def store_files(self) -> list[Path]:
        """Every file in the data store, the temporary folder included."""
        return sorted(p for p in self.settings.data_dir.rglob("*") if p.is_file())

    async def assert_healthy(self) -> None:
        """The server still answers a valid call and has logged no error or traceback."""
        me = await self.ok("GET", "/users/me", token=self.admin)
        assert me["login"] == "admin"
        problems = self.log.problems()
        assert not problems, "the server logged errors:\n" + "\n".join(problems)
        assert "Traceback" not in self.log.text()


def write_server_conf(home: Path, url: str, db_url: str, extra: dict[str, str]) -> None:
    lines = [f"server.url={url}", f"db.url={db_url}", *(f"{k}={v}" for k, v in extra.items())]
    conf = home / "conf" / "xwserver.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("\n".join(lines) + "\n")


async def _wait_until_listening(session: aiohttp.ClientSession, url: str, task: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if task.done():
            task.result()  # raises what stopped the server
            raise RuntimeError("the server stopped before listening")
        try:
            async with session.get(url + defaults.API_PREFIX + "/version") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {url} did not answer within {START_TIMEOUT_S}s")
        await asyncio.sleep(0.02)


async def issue_token(srv: Server, login: str) -> str:
    """A bearer token for ``login``, made as POST /login makes one but without the password
    check (a slow hash): every test needs two tokens, only the login tests need the check."""
    from sqlalchemy import select

    from xwserver.db.models import Token, User
    from xwserver.passwords import new_token, token_digest

    token, now = new_token(), time.time()
    async with srv.sessions.begin() as session:
        user_id = (await session.execute(select(User.id).where(User.login == login))).scalar_one()
        session.add(
            Token(
                token_hash=token_digest(token),
                user_id=user_id,
                created_at=now,
                expires_at=now + srv.settings.token_ttl_s,
                revoked=False,
            )
        )
    return token


def _configure(home: Path, db_url: str, extra: dict[str, str]) -> ServerSettings:
    """Write ``conf/xwserver.conf`` for a free loopback port and load it as the server will."""
    write_server_conf(home, f"https://127.0.0.1:{free_port()}", db_url, extra)
    return ServerSettings.load(home)


@contextlib.asynccontextmanager
async def running_server(
    tmp_path: Path, backend: str, conf: dict[str, str], templates: Templates
) -> AsyncIterator[XW]:
    """A server home, bootstrapped, served on a free port; stopped and cleaned up at exit."""
    home = tmp_path / "home"
    with cheap_password_hashes():
        async with (
            fresh_database(backend, home, templates) as db_url,
            _served(home, backend, db_url, conf) as xw,
        ):
            yield xw


@contextlib.asynccontextmanager
async def _served(home: Path, backend: str, db_url: str, conf: dict[str, str]) -> AsyncIterator[XW]:
    """Bootstrap the home on ``db_url`` and serve it on a free port until the exit."""
    init_keystore(home / "keystore", ["127.0.0.1"])
    settings = _configure(home, db_url, conf)
    boot = await bootstrap(settings, "admin", ADMIN_PASSWORD)
    ca_file = settings.ca_file
    capture = LogCapture()
    with capture.installed():
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=pinned_ssl_context(ca_file), limit=200),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        srv: Server | None = None
        try:
            for attempt in range(3):
                task = asyncio.create_task(
                    server_app.serve(settings, stop=stop, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)
                )
                try:
                    await _wait_until_listening(session, settings.url, task)
                    break
                except OSError as exc:  # someone took the port between our pick and the bind
                    if exc.errno != errno.EADDRINUSE or attempt == 2:
                        raise
                    settings = _configure(home, db_url, conf)
            srv = Server(settings, create_engine(settings.db_url), DataStore(settings.data_dir))
            xw = XW(
                url=settings.url,
                backend=backend,
                settings=settings,
                ca_file=ca_file,
                admin_password=boot.admin_password,
                worker_password=boot.worker_password,
                session=session,
                log=capture,
                srv=srv,
            )
            xw.admin = await issue_token(srv, "admin")
            xw.worker = await issue_token(srv, boot.worker_login)
            yield xw
        finally:
            await session.close()
            stop.set()
            try:
                if task is not None:
                    await asyncio.wait_for(task, 30)
            finally:
                if srv is not None:
                    await srv.engine.dispose()


# -- fixtures -------------------------------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend``: SQLite; every backend for a test of the domain tier (the ``domain``
    fixture) or marked ``every_database``; what a test's own ``parametrize("backend", ...)`` says."""
    if "backend" not in metafunc.fixturenames or _parametrizes_backend(metafunc):
        return
    every = (
        "domain" in metafunc.fixturenames
        or metafunc.definition.get_closest_marker("every_database") is not None
    )
    metafunc.parametrize("backend", BACKENDS if every else ["sqlite"], indirect=True)


def _parametrizes_backend(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "backend" in names:
            return True
    return False


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def server_conf() -> dict[str, str]:
    """Extra ``xwserver.conf`` keys; override this fixture to change the server's settings."""
    return {}


@pytest.fixture(scope="session")
def db_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    templates = Templates(tmp_path_factory.mktemp("db-templates"))
    yield templates
    asyncio.run(templates.drop())


@pytest.fixture
async def domain(tmp_path: Path, backend: str, db_templates: Templates) -> AsyncIterator[Server]:
    """The domain tier: the server's state (database, data store, settings) on a fresh database
    of ``backend``, bootstrapped (``admin`` and the public worker), to call the server's
    functions on (``srv.sessions``, ``srv.engine``) without HTTP or TLS. Every backend."""
    async with domain_server(tmp_path / "home", backend, db_templates) as srv:
        yield srv


@contextlib.asynccontextmanager
async def domain_server(home: Path, backend: str, templates: Templates) -> AsyncIterator[Server]:
    """A server's state in ``home`` on a fresh database of ``backend``, bootstrapped; the
    database dropped at the exit (the ``domain`` fixtures, per test or per module)."""
    with cheap_password_hashes():
        async with fresh_database(backend, home, templates) as db_url:
            settings = _configure(home, db_url, {})
            await bootstrap(settings, "admin", ADMIN_PASSWORD)
            srv = Server(settings, create_engine(settings.db_url), DataStore(settings.data_dir))
            try:
                yield srv
            finally:
                await srv.engine.dispose()


@pytest.fixture
async def xw(
    tmp_path: Path, backend: str, server_conf: dict[str, str], db_templates: Templates
) -> AsyncIterator[XW]:
    async with running_server(tmp_path, backend, server_conf, db_templates) as server:
        yield server
