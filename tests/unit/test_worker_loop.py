"""The worker's pull loop against a small in-process HTTPS server speaking the /work API.

The stub server speaks the protocol (it parses what the worker sends as the real server
does and answers with the same messages), and can be told to misbehave (task_gone on a
report, host_unknown for a forgotten host, a 500 on a work request, a cancel in a heartbeat,
a job handed out while the worker stops), which the real server does only in rare races.
Jobs are real processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import io
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xwcommon import defaults
from xwcommon.errors import ConfigError, TLSError
from xwcommon.protocol.work import (
    Accounting,
    Activation,
    Assignment,
    DataRef,
    Heartbeat,
    HeartbeatAnswer,
    InlineResult,
    Registered,
    Registration,
    Release,
    Released,
    Report,
    ReportAnswer,
    ReportOutcome,
    ResultStored,
    WorkAnswer,
    WorkRequest,
)
from xwworker import loop as worker_loop
from xwworker.activation import ActivationPolicy
from xwworker.executor import Outcome
from xwworker.loop import DELIVERY_ATTEMPTS, Backoff, TaskRun, Worker
from xwworker.settings import WorkerSettings

API = "/api/v1"


# -- a throwaway PKI -------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(folder: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def server_context(
    folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


# -- the stub server -----------------------------------------------------------------------------------
_NAMES = uuid.UUID("6f1c2d4e-0000-4000-8000-000000000000")


def U(name: str) -> str:
    """The uid a test calls ``name`` (the protocol takes canonical uids only)."""
    return str(uuid.uuid5(_NAMES, name))


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@dataclass
class StubServer:
    """Just enough of the /work API, speaking the protocol; every call is recorded in ``calls``
    as the message the worker sent (parsed as the real server parses it: unknown fields and
    malformed values are refused)."""

    data: dict[str, bytes] = field(default_factory=dict)
    queue: asyncio.Queue[Assignment] = field(default_factory=asyncio.Queue)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    results: dict[str, bytes] = field(default_factory=dict)
    reports: dict[str, Report] = field(default_factory=dict)
    #: how each report came: riding on a work request ("request") or alone ("alone")
    report_via: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    cancel: set[str] = field(default_factory=set)
    #: whether heartbeat answers name the cancelled tasks too (work answers always do)
    cancel_in_heartbeats: bool = True
    #: an error code every report gets (``task_gone``, or an older server's ``conflict``)
    report_error: str | None = None
    #: work requests still to fail with a 500, before doing anything
    fail_requests: int = 0
    forget_host_once: bool = False
    #: an administrator disabled the host: work requests, heartbeats and reports get 403
    disabled: bool = False
    #: data whose content the server refuses (this worker may not read it)
    forbidden_data: set[str] = field(default_factory=set)
    #: result uploads still to be refused with 507 (the server's store is full)
    full_store_uploads: int = 0
    #: work requests still to be answered at once "no room to wait, come back after 7 s"
    turned_away: int = 0
    #: set while a work request waits, so a test can act at that moment
    polling: asyncio.Event = field(default_factory=asyncio.Event)
    #: set by a release that withdraws the waiting work request: it ends at once, as on the server
    withdrawn: asyncio.Event = field(default_factory=asyncio.Event)
    #: False: withdraws change nothing (an older server, or a request claiming at that moment)
    withdraws: bool = True
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    hosts: int = 0
    seq: int = 0
    #: set when the test ends: long-polls return at once
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def add_data(self, content: bytes) -> DataRef:
        sha = hashlib.sha256(content).hexdigest()
        uid = U(f"data-{len(self.data)}")
        self.data[uid] = content
        return DataRef(data_uid=uid, sha256=sha, size=len(content))

    def called(self, name: str) -> list[Any]:
        return [body for n, body in self.calls if n == name]

    def _record(self, name: str, body: Any) -> None:
        self.calls.append((name, body))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        """Until ``predicate`` holds: looked at after every call, and every 50 ms (what it
        reads may change in the worker without a call: a worker waiting for work sends no
        heartbeats)."""

        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)

        await asyncio.wait_for(loop(), timeout_s)

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post(f"{API}/login", self.login)
        r.add_post(f"{API}/work/register", self.register)
        r.add_post(f"{API}/work/request", self.request)
        r.add_post(f"{API}/work/heartbeat", self.heartbeat)
        r.add_post(f"{API}/work/tasks/{{uid}}/result", self.result)
        r.add_post(f"{API}/work/tasks/{{uid}}/report", self.report)
        r.add_post(f"{API}/work/release", self.release)
        r.add_get(f"{API}/data/{{uid}}/content", self.content)
        return app

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("login", body)
        if {k: v for k, v in body.items() if k != "host_uid"} != {"login": "w", "password": "pw"}:
            return _error("unauthorized", "bad credentials", 401)
        return web.json_response({"token": "t0k", "expires_at": "2099-01-01T00:00:00Z", "user": {}})

    async def register(self, request: web.Request) -> web.Response:
        msg = Registration.decode(await request.read())
        self._record("register", msg)
        self.hosts += 1
        uid = msg.host_uid or U(f"host-{self.hosts}")
        return web.json_response(Registered(host_uid=uid, lease_s=60, heartbeat_interval_s=0.2).to_wire())

    def _disabled(self) -> web.Response:
        return _error("host_disabled", "host is disabled; ask an administrator to enable it", 403)

    def _apply(self, uid: str, report: Report, via: str) -> str | None:
        """Take a report as the real server does; the error code when refused."""
        if self.report_error is not None:
            return self.report_error
        if inline := report.result_inline:  # as the real server: checked, stored
            content = base64.b64decode(inline.content_b64, validate=True)
            assert hashlib.sha256(content).hexdigest() == inline.sha256
            assert report.result_uid is None
            self.results[uid] = content
        self.reports[uid] = report
        self.report_via[uid] = via
        self.changed.set()
        return None

    async def request(self, request: web.Request) -> web.Response:
        msg = WorkRequest.decode(await request.read())
        self._record("request", msg)
        if self.fail_requests:
            self.fail_requests -= 1
            return _error("error", "the database went away", 500)
        if self.disabled:
            return self._disabled()
        if self.forget_host_once:
            self.forget_host_once = False
            return _error("host_unknown", "no such host", 404)
        reported = []
        for r in msg.reports:
            assert r.task_uid is not None
            error = self._apply(r.task_uid, r, "request")
            reported.append(
                ReportOutcome(task_uid=r.task_uid, error=error, message="not live")
                if error
                else ReportOutcome(task_uid=r.task_uid, job_status=r.status)
            )
        if self.turned_away and msg.wait_s > 0:
            self.turned_away -= 1
            return web.json_response(WorkAnswer(reported=reported, retry_after_s=7.0).to_wire())
        out: list[Assignment] = []
        self.withdrawn.clear()
        self.polling.set()
        got = asyncio.ensure_future(self.queue.get())
        closing = asyncio.ensure_future(self.closing.wait())
        withdrawn = asyncio.ensure_future(self.withdrawn.wait())
        try:
            await asyncio.wait(
                {got, closing, withdrawn}, timeout=msg.wait_s, return_when=asyncio.FIRST_COMPLETED
            )
            if got.done():
                out.append(got.result())
                while len(out) < msg.capacity and not self.queue.empty():
                    out.append(self.queue.get_nowait())
        finally:
            self.polling.clear()
            got.cancel()
            closing.cancel()
            withdrawn.cancel()
        # as the real server: held tasks that are not live (here: cancelled) are named
        cancel = [u for u in msg.held or () if u in self.cancel]
        return web.json_response(WorkAnswer(assignments=out, reported=reported, cancel=cancel).to_wire())

    async def heartbeat(self, request: web.Request) -> web.Response:
        msg = Heartbeat.decode(await request.read())
        self._record("heartbeat", msg)
        if self.disabled:
            return self._disabled()
        cancel = [u for u in msg.task_uids if u in self.cancel and self.cancel_in_heartbeats]
        return web.json_response(HeartbeatAnswer(lease_s=60, cancel=cancel).to_wire())

    async def result(self, request: web.Request) -> web.Response:
        content = await request.read()
        uid = request.match_info["uid"]
        assert hashlib.sha256(content).hexdigest() == request.query["sha256"]
        assert len(content) == int(request.query["size"])
        if self.full_store_uploads > 0:
            self.full_store_uploads -= 1
            self._record("store_full", uid)
            return _error("insufficient_storage", "the data store is full", 507)
        self.results[uid] = content
        self._record("result", uid)
        return web.json_response(ResultStored(result_uid=U(f"result-of-{uid}")).to_wire())

    async def report(self, request: web.Request) -> web.Response:
        msg = Report.decode(await request.read())
        uid = request.match_info["uid"]
        assert not hasattr(msg, "task_uid")  # the path names it
        self._record("report", (uid, msg))
        if self.disabled:
            return self._disabled()
        if error := self._apply(uid, msg, "alone"):
            return _error(error, "not live", 409)
        return web.json_response(ReportAnswer(job_status=msg.status).to_wire())

    async def release(self, request: web.Request) -> web.Response:
        msg = Release.decode(await request.read())
        self._record("release", msg)
        if msg.withdraw and self.withdraws and self.polling.is_set():
            self.withdrawn.set()
        self.released.extend(msg.task_uids)
        return web.json_response(Released(released=len(msg.task_uids)).to_wire())

    async def content(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        self._record("content", uid)
        if uid in self.forbidden_data:
            return _error("forbidden", f"the owner of this job may not read data {uid}", 403)
        data = self.data[uid]
        return web.Response(body=data, headers={"X-XW-SHA256": hashlib.sha256(data).hexdigest()})


@dataclass
class Grid:
    stub: StubServer
    url: str
    ca_file: Path
    other_ca_file: Path
    tmp: Path

    def settings(self, **overrides: Any) -> WorkerSettings:
        s = WorkerSettings(
            servers=[self.url],
            login="w",
            password="pw",
            ca_file=self.ca_file,
            tmpdir=self.tmp / "worker",
            workpool_size=2,
            heartbeat_interval_s=0.2,
            shutdown_grace_s=5.0,
            work_request_wait_s=0.5,
            kill_grace_s=0.5,
        )
        for k, v in overrides.items():
            setattr(s, k, v)
        return s

    def worker(self, **overrides: Any) -> Worker:
        return Worker(self.settings(**overrides), backoff=Backoff(0.05, 0.2))


@pytest.fixture
async def grid(tmp_path: Path) -> AsyncIterator[Grid]:
    ca_file, ca_key, ca_cert = make_ca(tmp_path, "deployment-ca")
    other_ca_file, _, _ = make_ca(tmp_path, "some-other-ca")
    stub = StubServer()
    runner = web.AppRunner(stub.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(tmp_path, ca_key, ca_cert))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Grid(stub, f"https://127.0.0.1:{port}", ca_file, other_ca_file, tmp_path)
    finally:
        stub.closing.set()
        await runner.cleanup()


def script(body: str) -> bytes:
    return ("#!/usr/bin/env python3\n" + body).encode()


def assignment(stub: StubServer, name: str, binary: bytes, *args: str, **extra: Any) -> Assignment:
    """An assignment of task ``U(name)``, with the next ``seq``."""
    stub.seq += 1
    fields: dict[str, Any] = {
        "task_uid": U(name),
        "job_uid": U(f"job-of-{name}"),
        "seq": stub.seq,
        "app_name": "app",
        "args": list(args),
        "lease_expires_at": "2099-01-01T00:00:00Z",
        "binary": stub.add_data(binary),
        **extra,
    }
    return Assignment(**fields)


# -- tests -----------------------------------------------------------------------------------------------
async def run_until(grid: Grid, worker: Worker, predicate: Callable[[], bool]) -> None:
    """Run ``worker`` until ``predicate`` holds, then stop it and wait for its end.

    The stub answers the stopping worker's pending long-poll at once (a stop waits for it):
    how a worker stops while a request is in flight is what the stopping tests look at."""
    run = asyncio.create_task(worker.run())
    try:
        await grid.stub.wait_for(predicate)
    finally:
        grid.stub.closing.set()
        worker.stop()
        await asyncio.wait_for(run, 20)


async def test_an_assignment_is_run_uploaded_and_reported(grid: Grid) -> None:
    stub = grid.stub
    env = io.BytesIO()
    with zipfile.ZipFile(env, "w") as zf:
        zf.writestr("in/x.txt", "6")
    binary = script(
        "import sys\nx = int(open('in/x.txt').read())\nprint(x * int(sys.argv[1]), sys.stdin.read())\n"
    )
    stub.queue.put_nowait(
        assignment(
            stub, "t1", binary, "7", stdin=stub.add_data(b"from stdin"), env=stub.add_data(env.getvalue())
        )
    )
    worker = grid.worker()
    await run_until(grid, worker, lambda: U("t1") in stub.reports)

    register = stub.called("register")[0]
    assert register.name and register.os and register.cpu and register.cores >= 1
    assert register.memory_bytes > 0 and register.version
    report = stub.reports[U("t1")]
    accounting, inline = report.accounting, report.result_inline
    assert isinstance(accounting, Accounting) and isinstance(inline, InlineResult)
    assert (report.status, report.exit_code, report.message, report.result_uid) == (
        "COMPLETED",
        0,
        None,
        None,
    )
    # a small result rides in the report: no separate upload
    assert stub.called("result") == []
    # the job ran: its accounting is reported, in seconds, never negative
    seconds = [accounting.cpu_user_s, accounting.cpu_system_s, accounting.wall_s]
    assert all(v is not None and v >= 0 for v in seconds)
    assert accounting.wall_s is not None and 0 < accounting.wall_s < 20
    with zipfile.ZipFile(io.BytesIO(stub.results[U("t1")])) as zf:
        assert zf.read("stdout.txt") == b"42 from stdin\n"
        assert "app" not in zf.namelist()
    assert stub.released == []
    assert worker.completed == 1
    assert list((grid.tmp / "worker" / "tasks").iterdir()) == []
    assert list((grid.tmp / "worker" / "results").iterdir()) == []


async def test_a_result_too_big_to_ride_in_the_report_is_uploaded_first(grid: Grid) -> None:
    stub = grid.stub
    # random bytes do not compress: the archive stays bigger than the inline limit
    binary = script(
        f"import os\nopen('big.bin', 'wb').write(os.urandom({defaults.INLINE_RESULT_MAX_BYTES * 2}))\n"
    )
    stub.queue.put_nowait(assignment(stub, "t1", binary))
    await run_until(grid, grid.worker(), lambda: U("t1") in stub.reports)
    assert stub.called("result") == [U("t1")]
    assert stub.reports[U("t1")].result_uid == U(f"result-of-{U('t1')}")
    assert stub.reports[U("t1")].result_inline is None
    with zipfile.ZipFile(io.BytesIO(stub.results[U("t1")])) as zf:
        assert len(zf.read("big.bin")) == defaults.INLINE_RESULT_MAX_BYTES * 2


async def test_a_full_server_store_is_waited_for_and_said_not_given_up(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    binary = script(
        f"import os\nopen('big.bin', 'wb').write(os.urandom({defaults.INLINE_RESULT_MAX_BYTES * 2}))\n"
    )
    # more refusals than a delivery's attempts at other server errors: 507 is waited out
    stub.full_store_uploads = DELIVERY_ATTEMPTS + 2
    stub.queue.put_nowait(assignment(stub, "t1", binary))
    with caplog.at_level(logging.WARNING, logger="xwworker.loop"):
        await run_until(grid, grid.worker(), lambda: U("t1") in stub.reports)
    assert len(stub.called("store_full")) == DELIVERY_ATTEMPTS + 2
    assert stub.reports[U("t1")].result_uid == U(f"result-of-{U('t1')}")
    waits = [r.getMessage() for r in caplog.records if "no room to store it" in r.getMessage()]
    assert len(waits) == DELIVERY_ATTEMPTS + 2 and "the data store is full" in waits[0]


async def test_a_worker_told_to_come_back_later_waits_that_long_before_asking_again(grid: Grid) -> None:
    stub = grid.stub
    stub.turned_away = 2
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        await asyncio.sleep(min(s, 0.01))

    worker = Worker(grid.settings(), sleep=sleep, backoff=Backoff(0.05, 0.2))
    stub.queue.put_nowait(assignment(stub, "t1", script("print('ok')\n")))
    await run_until(grid, worker, lambda: U("t1") in stub.reports)
    assert slept.count(7.0) == 2  # once per answer that said so, before the next request
    assert len(stub.called("request")) >= 3


async def test_a_failing_job_is_reported_as_error_with_its_exit_code(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("import sys\nsys.exit(5)\n")))
    await run_until(grid, grid.worker(), lambda: U("t1") in stub.reports)
    report = stub.reports[U("t1")]
    assert (report.status, report.exit_code, report.message) == ("ERROR", 5, "exited with code 5")
    assert U("t1") in stub.results  # its output goes back too (inline: it is small)


async def test_tasks_sharing_a_binary_download_it_once(grid: Grid) -> None:
    stub = grid.stub
    binary = script("print('hi')\n")
    first = assignment(stub, "t1", binary)
    stub.seq += 1
    second = msgspec.structs.replace(first, task_uid=U("t2"), job_uid=U("job-of-t2"), seq=stub.seq)
    stub.queue.put_nowait(first)
    stub.queue.put_nowait(second)
    await run_until(grid, grid.worker(), lambda: {U("t1"), U("t2")} <= set(stub.reports))
    assert stub.called("content") == [first.binary.data_uid]


# -- reports ride on the next work request ------------------------------------------------------------
async def test_a_report_rides_on_the_next_work_request_which_does_not_wait(grid: Grid) -> None:
    stub = grid.stub
    ended: list[tuple[TaskRun, Outcome]] = []
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = Worker(
        grid.settings(workpool_size=1, work_request_wait_s=5.0),
        backoff=Backoff(0.05, 0.2),
        on_task_end=lambda run, outcome: ended.append((run, outcome)),
    )
    await run_until(grid, worker, lambda: bool(ended))
    carrying = [r for r in stub.called("request") if r.reports]
    assert len(carrying) == 1
    request = carrying[0]
    assert [r.task_uid for r in request.reports] == [U("t1")]
    assert request.reports[0].status == "COMPLETED" and request.reports[0].result_inline is not None
    assert request.wait_s == 0  # its answer acknowledges the report at once
    assert request.held == []  # the reported task is not named twice
    assert stub.report_via == {U("t1"): "request"}
    assert stub.called("report") == []  # no separate call
    assert worker.completed == 1
    run, outcome = ended[0]
    assert run.uid == U("t1") and outcome.ok and run.reported_at is not None


async def test_a_report_goes_alone_when_a_long_poll_is_in_flight(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("import time\ntime.sleep(0.5)\n")))
    worker = grid.worker(workpool_size=2, work_request_wait_s=30.0)
    run = asyncio.create_task(worker.run())
    # t1 runs in one slot, the other slot's request long-polls
    await stub.wait_for(lambda: U("t1") in worker.tasks and stub.polling.is_set())
    t0 = time.monotonic()
    await stub.wait_for(lambda: U("t1") in stub.reports)
    assert time.monotonic() - t0 < 10  # not after the long-poll's 30 s
    assert stub.polling.is_set()  # the long-poll still waits
    assert stub.report_via == {U("t1"): "alone"}
    (uid, report), *_ = stub.called("report")
    assert uid == U("t1") and report.status == "COMPLETED"
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert worker.completed == 1
    assert all(not r.reports for r in stub.called("request"))


async def test_reports_of_a_failed_work_request_are_sent_again(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = grid.worker(workpool_size=1)
    stub.fail_requests = 0
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: U("t1") in worker.tasks)
    stub.fail_requests = 1  # the request carrying the report gets a 500
    await stub.wait_for(lambda: U("t1") in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    carrying = [r for r in stub.called("request") if r.reports]
    assert len(carrying) == 2  # refused once, then sent again
    assert carrying[0].reports == carrying[1].reports
    assert stub.report_via == {U("t1"): "request"}
    assert worker.completed == 1
    assert any("work request failed" in r.getMessage() for r in caplog.records)


async def test_the_outbox_is_delivered_alone_when_the_worker_stops(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = grid.worker(workpool_size=1)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: U("t1") in worker.tasks)
    stub.fail_requests = 10**6  # from now on no work request succeeds: the report stays in the outbox
    await stub.wait_for(lambda: U("t1") in worker.outbox and any(r.reports for r in stub.called("request")))
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.report_via == {U("t1"): "alone"}
    assert worker.completed == 1 and not worker.outbox


@pytest.mark.parametrize("code", ["task_gone", "conflict"])
async def test_a_report_the_server_says_is_gone_is_dropped_and_the_worker_goes_on(
    grid: Grid, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    stub.report_error = code  # task_gone; an older server's conflict means the same
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = grid.worker(workpool_size=1)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: any(r.reports for r in stub.called("request")))
    await stub.wait_for(lambda: not worker.outbox)
    stub.report_error = None
    stub.queue.put_nowait(assignment(stub, "t2", script("print(2)\n")))
    await stub.wait_for(lambda: U("t2") in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    carried = [r.task_uid for req in stub.called("request") for r in req.reports]
    assert carried == [U("t1"), U("t2")]  # the refused report was not sent again
    assert U("t1") not in stub.reports and stub.called("report") == []
    assert stub.released == []
    assert worker.completed == 1
    assert not (grid.tmp / "worker" / "tasks" / U("t1")).exists()
    said = [
        r.getMessage() for r in caplog.records if U("t1") in r.getMessage() and "dropping" in r.getMessage()
    ]
    assert said and "no longer counts it as ours" in said[0] and code in said[0]


async def test_a_report_sent_alone_that_is_gone_is_dropped(grid: Grid) -> None:
    stub = grid.stub
    stub.report_error = "task_gone"
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = grid.worker(workpool_size=2, work_request_wait_s=30.0)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(stub.called("report")) == 1 and not worker.outbox)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert len(stub.called("report")) == 1  # not retried
    assert worker.completed == 0 and stub.released == []


# -- exact leases ---------------------------------------------------------------------------------------
async def test_work_requests_and_heartbeats_name_every_task_held(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    worker = grid.worker(workpool_size=2, work_request_wait_s=0.2, shutdown_grace_s=0.1)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: U("slow") in worker.tasks)
    seq = stub.seq
    # told to come back later, the worker has no work request out: it heartbeats
    stub.turned_away = 1000
    await stub.wait_for(lambda: any(U("slow") in hb.task_uids for hb in stub.called("heartbeat")))
    await stub.wait_for(lambda: any(r.held == [U("slow")] for r in stub.called("request")))
    worker.stop()
    await asyncio.wait_for(run, 20)
    # the first registration holds nothing; the first request neither
    assert stub.called("register")[0].held == []
    first, *later = stub.called("request")
    assert first.held == [] and first.capacity == 2
    assert all(r.held == [U("slow")] and r.capacity == 1 for r in later)
    beats = stub.called("heartbeat")
    assert all(hb.seen_seq == seq for hb in beats if hb.task_uids)
    # nothing seen before the assignment arrived; once seen, it stays seen (a heartbeat
    # after the task was handed back on stop names no task and still says seq)
    seen = [hb.seen_seq for hb in beats]
    first = seen.index(seq) if seq in seen else len(seen)
    assert all(s is None for s in seen[:first]) and all(s == seq for s in seen[first:]), seen
    assert stub.released == [U("slow")]


async def test_an_idle_worker_sends_no_heartbeat_while_its_work_request_is_out(grid: Grid) -> None:
    # the request says the host holds nothing and the server sees the host then: an idle
    # worker holds one connection while it waits for work, not two
    stub = grid.stub
    worker = grid.worker(workpool_size=2, work_request_wait_s=2.0, shutdown_grace_s=0.1)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: stub.polling.is_set())
    beats = len(stub.called("heartbeat"))
    await asyncio.sleep(1.0)  # five heartbeat intervals, the request still out
    assert stub.polling.is_set() and len(stub.called("heartbeat")) == beats
    # holding a task, it beats while it waits for more: a long-poll's answer comes only
    # when it ends, and a job aborted on the server must stop within a heartbeat interval
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    await stub.wait_for(lambda: U("slow") in worker.tasks)
    await stub.wait_for(lambda: stub.polling.is_set() and stub.called("request")[-1].held == [U("slow")])
    await stub.wait_for(lambda: any(U("slow") in hb.task_uids for hb in stub.called("heartbeat")[beats:]))
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_a_task_cancelled_on_the_server_is_stopped_at_the_next_work_request(
    grid: Grid, tmp_path: Path
) -> None:
    stub = grid.stub
    pid_file = tmp_path / "job.pid"
    binary = script(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    stub.queue.put_nowait(assignment(stub, "t1", binary))
    worker = grid.worker(workpool_size=2, work_request_wait_s=0.3)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    stub.cancel_in_heartbeats = False  # only a work answer can say it
    stub.cancel.add(U("t1"))
    await stub.wait_for(lambda: U("t1") not in worker.tasks)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert stub.reports == {} and stub.released == []


async def test_heartbeats_say_the_highest_seq_received(grid: Grid) -> None:
    stub = grid.stub
    stub.seq = 41
    stub.queue.put_nowait(assignment(stub, "a", script("import time\ntime.sleep(600)\n")))
    stub.seq = 6
    stub.queue.put_nowait(assignment(stub, "b", script("import time\ntime.sleep(600)\n")))
    worker = grid.worker(workpool_size=2, shutdown_grace_s=0.1)
    await run_until(
        grid,
        worker,
        lambda: any({U("a"), U("b")} <= set(hb.task_uids) for hb in stub.called("heartbeat")),
    )
    assert worker.seen_seq == 42
    assert [hb.seen_seq for hb in stub.called("heartbeat") if hb.task_uids][-1] == 42


async def test_a_malformed_assignment_is_skipped_and_not_held(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    good = assignment(stub, "good", script("import time\ntime.sleep(600)\n"))
    bad = msgspec.structs.replace(good, task_uid="not-a-uid", seq=good.seq + 1)
    stub.queue.put_nowait(bad)
    stub.queue.put_nowait(good)
    worker = grid.worker(workpool_size=3, shutdown_grace_s=0.1)
    await run_until(grid, worker, lambda: len(stub.called("request")) >= 2 and U("good") in worker.tasks)
    assert any("ignoring a malformed assignment" in r.getMessage() for r in caplog.records)
    assert stub.called("request")[1].held == [U("good")]


# -- the server's error codes ------------------------------------------------------------------------------
async def test_a_task_the_server_cancels_is_killed_and_not_reported(grid: Grid, tmp_path: Path) -> None:
    stub = grid.stub
    pid_file = tmp_path / "job.pid"
    binary = script(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    stub.queue.put_nowait(assignment(stub, "t1", binary))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: any(U("t1") in (r.held or ()) for r in stub.called("request")))
    await stub.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    stub.cancel.add(U("t1"))
    await stub.wait_for(lambda: U("t1") not in worker.tasks)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert stub.reports == {}
    assert stub.released == []


async def test_stopping_hands_back_unfinished_tasks_after_the_grace_period(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    stub.queue.put_nowait(assignment(stub, "fast", script("import time\ntime.sleep(0.3)\n")))
    worker = grid.worker(shutdown_grace_s=2.0)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(worker.tasks) == 2)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.reports[U("fast")].status == "COMPLETED"  # finished within the grace period
    assert stub.report_via[U("fast")] == "alone"  # no work request while stopping
    assert stub.released == [U("slow")]
    assert stub.called("release")[0].host_uid == U("host-1")
    assert U("slow") not in stub.reports


async def test_a_job_handed_out_while_the_worker_stops_is_handed_back(grid: Grid) -> None:
    stub = grid.stub
    stub.withdraws = False  # the stop's withdraw finds the request claiming this job
    worker = grid.worker(work_request_wait_s=5.0)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(stub.polling.wait(), 10)
    worker.stop()
    await asyncio.sleep(0.2)  # the worker stopped listening; the server does not know
    stub.queue.put_nowait(assignment(stub, "late", script("print('never')\n")))
    await asyncio.wait_for(run, 20)
    assert stub.released == [U("late")]
    assert stub.called("content") == []


async def test_a_forgotten_host_registers_again_with_its_uid(grid: Grid) -> None:
    stub = grid.stub
    stub.forget_host_once = True  # host_unknown
    await run_until(
        grid, grid.worker(), lambda: len(stub.called("register")) == 2 and len(stub.called("request")) >= 2
    )
    first, second = stub.called("register")
    assert first.host_uid is None
    assert second.host_uid == U("host-1")


async def test_a_restarted_worker_registers_as_the_same_host(grid: Grid) -> None:
    for _ in range(2):
        worker = grid.worker()
        await run_until(grid, worker, lambda w=worker: w.host_uid is not None)  # type: ignore[misc]
    assert [r.host_uid for r in grid.stub.called("register")] == [None, U("host-1")]
    assert [r.held for r in grid.stub.called("register")] == [[], []]


async def test_a_host_file_that_holds_no_uid_is_ignored(grid: Grid) -> None:
    settings = grid.settings()
    settings.tmpdir.mkdir(parents=True)
    settings.host_file.write_text("vm\n")  # written by hand, or by an old version
    worker = Worker(settings, backoff=Backoff(0.05, 0.2))
    await run_until(grid, worker, lambda: worker.host_uid is not None)
    assert grid.stub.called("register")[0].host_uid is None
    assert settings.host_file.read_text().strip() == U("host-1")


async def test_a_server_certificate_from_another_ca_is_fatal(grid: Grid) -> None:
    worker = grid.worker(ca_file=grid.other_ca_file)
    with pytest.raises(TLSError, match="not signed by the deployment CA"):
        await asyncio.wait_for(worker.run(), 20)
    assert grid.stub.calls == []


async def test_state_file_shows_the_host_and_is_removed_on_exit(grid: Grid) -> None:
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await grid.stub.wait_for(lambda: worker.settings.state_file.is_file() and worker.host_uid is not None)
    state = json.loads(worker.settings.state_file.read_text())
    assert state["host_uid"] == U("host-1")
    assert state["server"] == grid.url
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not worker.settings.state_file.exists()


# -- one worker process per state folder --------------------------------------------------------------
HOLD_LOCK = """import sys, time
from pathlib import Path
from xwworker.statedir import StateLock
StateLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


async def test_a_second_worker_on_the_same_folder_is_refused_and_a_restart_after_sigkill_is_not(
    grid: Grid,
) -> None:
    settings = grid.settings()
    other = _hold_lock(settings.tmpdir)  # a real worker process holding the folder
    try:
        worker = Worker(settings, backoff=Backoff(0.05, 0.2))
        with pytest.raises(ConfigError) as refused:
            await asyncio.wait_for(worker.run(), 20)
        message = refused.value.message
        assert str(settings.tmpdir) in message and f"pid {other.pid}" in message
        assert "give each worker its own path.tmpdir" in message
        assert grid.stub.calls == []  # refused before a word to the server
    finally:
        other.kill()  # SIGKILL: the kernel drops its lock
        other.wait()
        assert other.stdout is not None
        other.stdout.close()
    worker = Worker(settings, backoff=Backoff(0.05, 0.2))
    await run_until(grid, worker, lambda: worker.host_uid is not None)
    assert grid.stub.called("register")[0].held == []


def test_a_second_xwworker_process_on_the_same_folder_exits_with_a_clear_error(tmp_path: Path) -> None:
    ca_file, _, _ = make_ca(tmp_path, "ca")
    folder = tmp_path / "state"
    confs = []
    for i in (1, 2):
        conf = tmp_path / f"worker{i}.conf"
        # nothing listens on port 9: the first worker keeps trying to register
        conf.write_text(
            f"dispatcher.servers=https://127.0.0.1:9\nlogin=w\npassword=pw\nca.file={ca_file}\n"
            f"path.tmpdir={folder}\npid.file={tmp_path / f'w{i}.pid'}\nlog.file={tmp_path / f'w{i}.log'}\n"
            "sandbox.enable=false\n"
        )
        confs.append(conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XWWORKER_")}
    argv = [sys.executable, "-m", "xwworker", "console", "--xwconfig"]
    first = subprocess.Popen([*argv, str(confs[0])], env=env, stderr=subprocess.DEVNULL)
    try:
        lock = folder / "xwworker.lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(
            [*argv, str(confs[1])], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2
        assert f"{folder} is in use by another worker process (pid {first.pid})" in second.stderr
        assert "give each worker its own path.tmpdir" in second.stderr
    finally:
        first.terminate()
        first.wait(30)


# -- activation, suspension, needs ----------------------------------------------------------------------
class Switch(ActivationPolicy):
    """A policy a test turns on and off; it records the times it was asked about."""

    check_interval_s = 0.05

    def __init__(self) -> None:
        self.on = False
        self.asked: list[float] = []

    def allows(self, now: float) -> bool:
        self.asked.append(now)
        return self.on


async def test_no_work_is_asked_for_while_the_activation_policy_says_no(grid: Grid) -> None:
    policy = Switch()
    worker = Worker(grid.settings(), policy=policy, clock=lambda: 1234.0, backoff=Backoff(0.05, 0.2))
    run = asyncio.create_task(worker.run())
    await grid.stub.wait_for(lambda: len(grid.stub.called("heartbeat")) >= 2)
    assert grid.stub.called("request") == []
    assert policy.asked and set(policy.asked) == {1234.0}
    policy.on = True
    await grid.stub.wait_for(lambda: len(grid.stub.called("request")) >= 1)
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_a_second_stop_skips_the_grace_period(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    worker = grid.worker(shutdown_grace_s=600.0)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(worker.tasks) == 1)
    worker.stop()
    await asyncio.sleep(0.3)
    assert not run.done()
    worker.stop()
    await asyncio.wait_for(run, 10)
    assert stub.released == [U("slow")]


async def test_an_idle_worker_stops_at_once_when_the_server_ends_its_long_poll(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop withdraws the waiting work request instead of waiting LATE_POLL_WAIT_S for it."""
    monkeypatch.setattr(
        worker_loop, "LATE_POLL_WAIT_S", 10.0
    )  # without the withdraw, the stop waits this long
    stub = grid.stub
    worker = grid.worker(work_request_wait_s=60.0)
    run = asyncio.create_task(worker.run())
    await stub.wait_for(stub.polling.is_set)
    started = time.monotonic()
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert time.monotonic() - started < 5
    [release] = stub.called("release")
    assert release.withdraw and release.task_uids == []


async def test_a_disabled_host_stops_its_tasks_and_works_again_once_enabled(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: U("slow") in worker.tasks and worker.tasks[U("slow")].phase == "running")
    stub.disabled = True  # host_disabled
    await stub.wait_for(lambda: worker.disabled and not worker.tasks)
    n, k = len(stub.calls), len(stub.called("request"))
    await stub.wait_for(lambda: len(stub.called("request")) >= k + 3 and len(stub.calls) > n + 3)
    assert not run.done()  # refused, not dead
    # sent while disabled, a request does not wait for work: its answer says at once if enabled
    assert all(r.wait_s == 0 for r in stub.called("request")[k + 1 :])
    stub.disabled = False
    stub.queue.put_nowait(assignment(stub, "next", script("print(1)\n")))
    await stub.wait_for(lambda: U("next") in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not worker.disabled
    assert U("slow") not in stub.reports and stub.released == []  # the server had handed it to others
    said = [r.getMessage() for r in caplog.records if "is disabled on the server" in r.getMessage()]
    assert len(said) == 1, said  # said once, however many refusals followed
    assert "asking again until it is enabled" in said[0]
    assert any("is enabled again" in r.getMessage() for r in caplog.records)


async def test_a_disabled_worker_asks_for_work_as_soon_as_a_heartbeat_finds_it_enabled(grid: Grid) -> None:
    """Its back-off while disabled (here 30 s) ends when a call finds the host enabled again."""
    stub = grid.stub
    stub.disabled = True
    worker = Worker(grid.settings(), backoff=Backoff(30.0, 30.0))
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: worker.disabled and len(stub.called("heartbeat")) >= 2)
    asked = len(stub.called("request"))
    stub.disabled = False
    stub.queue.put_nowait(assignment(stub, "next", script("print(1)\n")))
    enabled_at = time.monotonic()
    await stub.wait_for(lambda: U("next") in stub.reports, timeout_s=10)
    assert time.monotonic() - enabled_at < 5  # a heartbeat interval or two, not the back-off
    assert len(stub.called("request")) > asked
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not worker.disabled


async def test_an_input_the_jobs_owner_may_no_longer_read_fails_the_task_at_once(grid: Grid) -> None:
    stub = grid.stub
    stdin = stub.add_data(b"secret")
    stub.forbidden_data.add(stdin.data_uid)
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n"), stdin=stdin))
    await run_until(grid, grid.worker(), lambda: U("t1") in stub.reports)
    assert stub.called("content").count(stdin.data_uid) == 1  # asked once, not retried
    report = stub.reports[U("t1")]
    assert report.status == "ERROR" and report.result_uid is None
    assert report.message == (
        f"may not read the stdin (data {stdin.data_uid}): the owner of this job may not read data "
        f"{stdin.data_uid}"
    )


BURN = """import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
while time.process_time() < float(sys.argv[2]):
    pass
print("burned", round(time.process_time(), 2))
"""


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def test_a_running_job_is_suspended_while_the_policy_says_no_and_resumed(
    grid: Grid, tmp_path: Path
) -> None:
    stub = grid.stub
    pid_file = tmp_path / "job.pid"
    stub.queue.put_nowait(assignment(stub, "t1", script(BURN), str(pid_file), "1.5"))
    policy = Switch()
    policy.on = True
    worker = Worker(grid.settings(), policy=policy, backoff=Backoff(0.05, 0.2))
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    await stub.wait_for(lambda: _cpu_s(pid) > 0.2)

    policy.on = False
    await stub.wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
    before = _cpu_s(pid)
    await asyncio.sleep(0.8)
    assert _cpu_s(pid) - before < 0.05, "a suspended job's CPU time must stop advancing"
    await stub.wait_for(
        lambda: any(hb.activation and hb.activation.state == "suspended" for hb in stub.called("heartbeat"))
    )
    assert U("t1") not in stub.reports
    requests_while_off = len(stub.called("request"))

    policy.on = True
    await stub.wait_for(lambda: U("t1") in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    report = stub.reports[U("t1")]
    assert report.status == "COMPLETED" and report.accounting is not None
    assert (report.accounting.cpu_user_s or 0) + (report.accounting.cpu_system_s or 0) >= 1.4
    assert stub.called("heartbeat")[-1].activation.state == "active"
    assert len(stub.called("request")) > requests_while_off  # it asked for work again
    assert stub.released == []


async def test_a_report_does_not_wait_for_the_machine_to_compute_again(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("import time\ntime.sleep(0.5)\n")))
    policy = Switch()
    policy.on = True
    worker = Worker(grid.settings(workpool_size=1), policy=policy, backoff=Backoff(0.05, 0.2))
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: U("t1") in worker.tasks and worker.tasks[U("t1")].phase == "running")
    worker._set_active(False, "test")  # not computing from now, but t1 finishes
    policy.on = False
    # the job was suspended: let it go on to its end as if the policy had said yes for it
    worker.executor.resume(U("t1"))
    await stub.wait_for(lambda: U("t1") in stub.reports)
    assert stub.report_via[U("t1")] == "alone"
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_a_job_suspended_longer_than_max_suspend_s_is_handed_back(grid: Grid, tmp_path: Path) -> None:
    stub = grid.stub
    pid_file = tmp_path / "job.pid"
    stub.queue.put_nowait(assignment(stub, "t1", script(BURN), str(pid_file), "600"))
    policy = Switch()
    policy.on = True
    worker = Worker(grid.settings(max_suspend_s=0.5), policy=policy, backoff=Backoff(0.05, 0.2))
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    policy.on = False
    await stub.wait_for(lambda: stub.released == [U("t1")])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert U("t1") not in worker.tasks
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert U("t1") not in stub.reports
    assert stub.released == [U("t1")]  # handed back once, not again at stop


async def test_the_pause_file_suspends_whatever_the_policy_says(grid: Grid, tmp_path: Path) -> None:
    stub = grid.stub
    worker = grid.worker()
    worker.settings.tmpdir.mkdir(parents=True, exist_ok=True)
    worker.settings.pause_file.write_text("paused\n")
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(stub.called("heartbeat")) >= 2)
    assert stub.called("request") == []
    assert stub.called("register")[0].activation == Activation(
        state="suspended", detail="paused by its owner (xwworker pause)"
    )
    worker.settings.pause_file.unlink()
    await stub.wait_for(lambda: len(stub.called("request")) >= 1)
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_work_requests_declare_free_memory_disk_and_network(grid: Grid) -> None:
    await run_until(grid, grid.worker(sandbox_network=True), lambda: len(grid.stub.called("request")) >= 1)
    body = grid.stub.called("request")[0]
    assert body.free_memory_bytes is not None and 0 < body.free_memory_bytes <= psutil.virtual_memory().total
    assert body.free_disk_bytes is not None and body.free_disk_bytes > 0
    assert body.network is True


@pytest.mark.parametrize(
    "needs",
    [{"min_memory_bytes": 10**18}, {"min_disk_bytes": 10**18}, {"needs_network": True}],
    ids=["memory", "disk", "network"],
)
async def test_an_assignment_whose_needs_do_not_fit_is_handed_back_unrun(
    grid: Grid, needs: dict[str, Any]
) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "big", script("print('never')\n"), **needs))
    # sandbox.network is off
    await run_until(grid, grid.worker(), lambda: stub.released == [U("big")])
    assert stub.called("content") == []  # not even its binary was fetched
    assert U("big") not in stub.reports


async def test_an_activation_detail_the_server_could_not_show_is_made_printable(grid: Grid) -> None:
    class Odd(Switch):
        def describe(self) -> str:
            return "line\none\ttab\x00" + "x" * 500

    worker = Worker(grid.settings(), policy=Odd(), backoff=Backoff(0.05, 0.2))
    detail = worker.activation().detail
    assert detail.isprintable() and len(detail) == 200 and detail.startswith("line one tab ")
    Activation.from_wire(worker.activation().to_wire())  # the server takes it
