"""The worker's pull loop against a small in-process HTTPS server speaking the /work API.

The stub server answers what the real one would, and can be told to misbehave (409 on a
report, 404 for a forgotten host, a cancel in a heartbeat, a job handed out while the
worker stops), which the real server does only in rare races. Jobs are real processes.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import ipaddress
import json
import ssl
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xwcommon import defaults
from xwcommon.errors import TLSError
from xwworker.activation import ActivationPolicy
from xwworker.loop import Backoff, Worker
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
@dataclass
class StubServer:
    """Just enough of the /work API; every call is recorded in ``calls``."""

    data: dict[str, bytes] = field(default_factory=dict)
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    results: dict[str, bytes] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    cancel: set[str] = field(default_factory=set)
    report_status: int = 200
    forget_host_once: bool = False
    #: an administrator disabled the host: work requests, heartbeats and reports get 403
    disabled: bool = False
    #: data whose content the server refuses (this worker may not read it)
    forbidden_data: set[str] = field(default_factory=set)
    #: set while a work request waits, so a test can act at that moment
    polling: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    hosts: int = 0

    def add_data(self, content: bytes) -> dict[str, Any]:
        sha = hashlib.sha256(content).hexdigest()
        uid = f"data-{len(self.data)}"
        self.data[uid] = content
        return {"data_uid": uid, "sha256": sha, "size": len(content)}

    def called(self, name: str) -> list[Any]:
        return [body for n, body in self.calls if n == name]

    def _record(self, name: str, body: Any) -> None:
        self.calls.append((name, body))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

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
        if body != {"login": "w", "password": "pw"}:
            return web.json_response({"error": "unauthorized", "message": "bad credentials"}, status=401)
        return web.json_response({"token": "t0k", "expires_at": "2099-01-01T00:00:00Z", "user": {}})

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("register", body)
        self.hosts += 1
        uid = body.get("host_uid") or f"host-{self.hosts}"
        return web.json_response({"host_uid": uid, "lease_s": 60, "heartbeat_interval_s": 0.2})

    def _refused(self) -> web.Response:
        message = "host host-1 is disabled; ask an administrator to enable it"
        return web.json_response({"error": "forbidden", "message": message}, status=403)

    async def request(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("request", body)
        if self.disabled:
            return self._refused()
        if self.forget_host_once:
            self.forget_host_once = False
            return web.json_response({"error": "not_found", "message": "no such host"}, status=404)
        out = []
        self.polling.set()
        try:
            out.append(await asyncio.wait_for(self.queue.get(), body["wait_s"]))
            while len(out) < body["capacity"] and not self.queue.empty():
                out.append(self.queue.get_nowait())
        except TimeoutError:
            pass
        finally:
            self.polling.clear()
        return web.json_response({"assignments": out})

    async def heartbeat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("heartbeat", body)
        if self.disabled:
            return self._refused()
        cancel = [u for u in body["task_uids"] if u in self.cancel]
        return web.json_response({"lease_s": 60, "cancel": cancel})

    async def result(self, request: web.Request) -> web.Response:
        content = await request.read()
        uid = request.match_info["uid"]
        assert hashlib.sha256(content).hexdigest() == request.query["sha256"]
        assert len(content) == int(request.query["size"])
        self.results[uid] = content
        self._record("result", uid)
        return web.json_response({"result_uid": f"result-of-{uid}"})

    async def report(self, request: web.Request) -> web.Response:
        body = await request.json()
        uid = request.match_info["uid"]
        self._record("report", (uid, body))
        if self.disabled:
            return self._refused()
        if self.report_status != 200:
            return web.json_response({"error": "conflict", "message": "not live"}, status=self.report_status)
        if inline := body.get("result_inline"):  # as the real server: checked, stored
            content = base64.b64decode(inline["content_b64"], validate=True)
            assert hashlib.sha256(content).hexdigest() == inline["sha256"]
            assert body["result_uid"] is None
            self.results[uid] = content
        self.reports[uid] = body
        self.changed.set()
        return web.json_response({"job_status": body["status"]})

    async def release(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("release", body)
        self.released.extend(body["task_uids"])
        return web.json_response({"released": len(body["task_uids"])})

    async def content(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        self._record("content", uid)
        if uid in self.forbidden_data:
            message = f"the owner of this job may not read data {uid}"
            return web.json_response({"error": "forbidden", "message": message}, status=403)
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
        await runner.cleanup()


def script(body: str) -> bytes:
    return ("#!/usr/bin/env python3\n" + body).encode()


def assignment(stub: StubServer, uid: str, binary: bytes, *args: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_uid": uid,
        "job_uid": f"job-of-{uid}",
        "app_name": "app",
        "args": list(args),
        "lease_expires_at": "2099-01-01T00:00:00Z",
        "binary": stub.add_data(binary),
        "stdin": None,
        "env": None,
        **extra,
    }


# -- tests -----------------------------------------------------------------------------------------------
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
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: "t1" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)

    register = stub.called("register")[0]
    assert {"name", "os", "cpu", "cores", "memory_bytes", "disk_free_bytes", "tags", "version"} <= set(
        register
    )
    report = dict(stub.reports["t1"])
    accounting = report.pop("accounting")
    inline = report.pop("result_inline")
    assert report == {"status": "COMPLETED", "exit_code": 0, "message": None, "result_uid": None}
    # a small result rides in the report: no separate upload
    assert set(inline) == {"content_b64", "sha256"}
    assert stub.called("result") == []
    # the job ran: its accounting is reported, in seconds, never negative
    assert (
        {"cpu_user_s", "cpu_system_s", "wall_s"}
        <= set(accounting)
        <= {
            "cpu_user_s",
            "cpu_system_s",
            "wall_s",
            "max_rss_bytes",
        }
    )
    assert all(v >= 0 for v in accounting.values())
    assert 0 < accounting["wall_s"] < 20
    with zipfile.ZipFile(io.BytesIO(stub.results["t1"])) as zf:
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
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: "t1" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.called("result") == ["t1"]
    assert stub.reports["t1"]["result_uid"] == "result-of-t1"
    assert "result_inline" not in stub.reports["t1"]
    with zipfile.ZipFile(io.BytesIO(stub.results["t1"])) as zf:
        assert len(zf.read("big.bin")) == defaults.INLINE_RESULT_MAX_BYTES * 2


async def test_a_failing_job_is_reported_as_error_with_its_exit_code(grid: Grid) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "t1", script("import sys\nsys.exit(5)\n")))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: "t1" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.reports["t1"]["status"] == "ERROR"
    assert stub.reports["t1"]["exit_code"] == 5
    assert stub.reports["t1"]["message"] == "exited with code 5"
    assert "t1" in stub.results  # its output goes back too (inline: it is small)


async def test_tasks_sharing_a_binary_download_it_once(grid: Grid) -> None:
    stub = grid.stub
    binary = script("print('hi')\n")
    first = assignment(stub, "t1", binary)
    second = dict(first, task_uid="t2", job_uid="job-of-t2")
    stub.queue.put_nowait(first)
    stub.queue.put_nowait(second)
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: {"t1", "t2"} <= set(stub.reports))
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.called("content") == [first["binary"]["data_uid"]]


async def test_a_409_on_report_drops_the_task_and_the_worker_goes_on(grid: Grid) -> None:
    stub = grid.stub
    stub.report_status = 409
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n")))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(stub.called("report")) == 1)
    stub.report_status = 200
    stub.queue.put_nowait(assignment(stub, "t2", script("print(2)\n")))
    await stub.wait_for(lambda: "t2" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert len(stub.called("report")) == 2  # the refused report was not retried
    assert "t1" not in stub.reports
    assert stub.released == []
    assert not (grid.tmp / "worker" / "tasks" / "t1").exists()


async def test_a_task_the_server_cancels_is_killed_and_not_reported(grid: Grid, tmp_path: Path) -> None:
    stub = grid.stub
    pid_file = tmp_path / "job.pid"
    binary = script(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    stub.queue.put_nowait(assignment(stub, "t1", binary))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: any("t1" in hb["task_uids"] for hb in stub.called("heartbeat")))
    await stub.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    stub.cancel.add("t1")
    await stub.wait_for(lambda: "t1" not in worker.tasks)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert stub.called("report") == []
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
    assert stub.reports["fast"]["status"] == "COMPLETED"  # finished within the grace period
    assert stub.released == ["slow"]
    assert stub.called("release")[0]["host_uid"] == "host-1"
    assert "slow" not in stub.reports


async def test_a_job_handed_out_while_the_worker_stops_is_handed_back(grid: Grid) -> None:
    stub = grid.stub
    worker = grid.worker(work_request_wait_s=5.0)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(stub.polling.wait(), 10)
    worker.stop()
    await asyncio.sleep(0.2)  # the worker stopped listening; the server does not know
    stub.queue.put_nowait(assignment(stub, "late", script("print('never')\n")))
    await asyncio.wait_for(run, 20)
    assert stub.released == ["late"]
    assert stub.called("content") == []


async def test_a_forgotten_host_registers_again_with_its_uid(grid: Grid) -> None:
    stub = grid.stub
    stub.forget_host_once = True
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(stub.called("register")) == 2 and len(stub.called("request")) >= 2)
    worker.stop()
    await asyncio.wait_for(run, 20)
    first, second = stub.called("register")
    assert "host_uid" not in first
    assert second["host_uid"] == "host-1"


async def test_a_restarted_worker_registers_as_the_same_host(grid: Grid) -> None:
    for _ in range(2):
        worker = grid.worker()
        run = asyncio.create_task(worker.run())
        await grid.stub.wait_for(lambda w=worker: w.host_uid is not None)  # type: ignore[misc]
        worker.stop()
        await asyncio.wait_for(run, 20)
    assert [r.get("host_uid") for r in grid.stub.called("register")] == [None, "host-1"]


async def test_a_server_certificate_from_another_ca_is_fatal(grid: Grid) -> None:
    worker = grid.worker(ca_file=grid.other_ca_file)
    with pytest.raises(TLSError, match="not signed by the deployment CA"):
        await asyncio.wait_for(worker.run(), 20)
    assert grid.stub.calls == []


async def test_state_file_shows_the_host_and_is_removed_on_exit(grid: Grid) -> None:
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await grid.stub.wait_for(lambda: len(grid.stub.called("heartbeat")) >= 1)
    state = json.loads(worker.settings.state_file.read_text())
    assert state["host_uid"] == "host-1"
    assert state["server"] == grid.url
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not worker.settings.state_file.exists()


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
    assert stub.released == ["slow"]


async def test_a_disabled_host_stops_its_tasks_and_works_again_once_enabled(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    stub = grid.stub
    stub.queue.put_nowait(assignment(stub, "slow", script("import time\ntime.sleep(600)\n")))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: "slow" in worker.tasks and worker.tasks["slow"].phase == "running")
    stub.disabled = True
    await stub.wait_for(lambda: worker.disabled and not worker.tasks)
    n = len(stub.calls)
    await stub.wait_for(lambda: len(stub.called("request")) >= 3 and len(stub.calls) > n + 3)
    assert not run.done()  # refused, not dead
    stub.disabled = False
    stub.queue.put_nowait(assignment(stub, "next", script("print(1)\n")))
    await stub.wait_for(lambda: "next" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert not worker.disabled
    assert "slow" not in stub.reports and stub.released == []  # the server had handed it to others
    said = [r.getMessage() for r in caplog.records if "is disabled on the server" in r.getMessage()]
    assert len(said) == 1, said  # said once, however many refusals followed
    assert "asking again until it is enabled" in said[0]
    assert any("is enabled again" in r.getMessage() for r in caplog.records)


async def test_an_input_the_jobs_owner_may_no_longer_read_fails_the_task_at_once(grid: Grid) -> None:
    stub = grid.stub
    stdin = stub.add_data(b"secret")
    stub.forbidden_data.add(stdin["data_uid"])
    stub.queue.put_nowait(assignment(stub, "t1", script("print(1)\n"), stdin=stdin))
    worker = grid.worker()
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: "t1" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.called("content").count(stdin["data_uid"]) == 1  # asked once, not retried
    report = stub.reports["t1"]
    assert report["status"] == "ERROR" and report["result_uid"] is None
    assert report["message"] == (
        f"may not read the stdin (data {stdin['data_uid']}): the owner of this job may not read data "
        f"{stdin['data_uid']}"
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
        lambda: any(hb.get("activation", {}).get("state") == "suspended" for hb in stub.called("heartbeat"))
    )
    assert "t1" not in stub.reports
    requests_while_off = len(stub.called("request"))

    policy.on = True
    await stub.wait_for(lambda: "t1" in stub.reports)
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.reports["t1"]["status"] == "COMPLETED"
    assert (
        stub.reports["t1"]["accounting"]["cpu_user_s"] + stub.reports["t1"]["accounting"]["cpu_system_s"]
        >= 1.4
    )
    assert stub.called("heartbeat")[-1]["activation"]["state"] == "active"
    assert len(stub.called("request")) > requests_while_off  # it asked for work again
    assert stub.released == []


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
    await stub.wait_for(lambda: stub.released == ["t1"])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "t1" not in worker.tasks
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert "t1" not in stub.reports
    assert stub.released == ["t1"]  # handed back once, not again at stop


async def test_the_pause_file_suspends_whatever_the_policy_says(grid: Grid, tmp_path: Path) -> None:
    stub = grid.stub
    worker = grid.worker()
    worker.settings.tmpdir.mkdir(parents=True, exist_ok=True)
    worker.settings.pause_file.write_text("paused\n")
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: len(stub.called("heartbeat")) >= 2)
    assert stub.called("request") == []
    assert stub.called("register")[0]["activation"] == {
        "state": "suspended",
        "detail": "paused by its owner (xwworker pause)",
    }
    worker.settings.pause_file.unlink()
    await stub.wait_for(lambda: len(stub.called("request")) >= 1)
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_work_requests_declare_free_memory_disk_and_network(grid: Grid) -> None:
    worker = grid.worker(sandbox_network=True)
    run = asyncio.create_task(worker.run())
    await grid.stub.wait_for(lambda: len(grid.stub.called("request")) >= 1)
    worker.stop()
    await asyncio.wait_for(run, 20)
    body = grid.stub.called("request")[0]
    assert 0 < body["free_memory_bytes"] <= psutil.virtual_memory().total
    assert body["free_disk_bytes"] > 0
    assert body["network"] is True


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
    worker = grid.worker()  # sandbox.network is off
    run = asyncio.create_task(worker.run())
    await stub.wait_for(lambda: stub.released == ["big"])
    worker.stop()
    await asyncio.wait_for(run, 20)
    assert stub.called("content") == []  # not even its binary was fetched
    assert "big" not in stub.reports


async def test_an_activation_detail_the_server_could_not_show_is_made_printable(grid: Grid) -> None:
    class Odd(Switch):
        def describe(self) -> str:
            return "line\none\ttab\x00" + "x" * 500

    worker = Worker(grid.settings(), policy=Odd(), backoff=Backoff(0.05, 0.2))
    detail = worker.activation_wire()["detail"]
    assert detail.isprintable() and len(detail) == 200 and detail.startswith("line one tab ")
