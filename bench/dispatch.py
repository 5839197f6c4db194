"""Dispatch benchmark: jobs per second through the full cycle, and submit-to-start latency.

It starts a real server (``xwserver init`` + ``xwserver start`` in a temporary home on a
free loopback port), inserts an app whose binary is a tiny script, and drives it with M
simulated workers that speak the real protocol over real HTTPS: each one is a
``Transport`` logged in as the deployment's worker identity, registers itself
(``POST /work/register``), then loops on ``POST /work/request`` (long-poll, capacity
1..k) and reports every assignment ``COMPLETED`` at once (``POST
/work/tasks/{uid}/report``, exit code 0, no result). Nothing is executed: what is measured
is the middleware's own cost per job.

Two phases:

1. Full cycle: with the workers idle and long-polling, the clock starts, N jobs are
   submitted in bulks (``POST /jobs/bulk``) as the admin, and the clock stops when the
   N-th report has been answered. Prints jobs/s over that wall time, and the submit rate
   (N over the time the bulk calls took, measured while the workers consume).
2. Latency: every worker asks for one job at a time; one job is submitted at a time
   (``POST /jobs``) and the time from the submit call to the assignment arriving at a
   worker is recorded; the next job is submitted once the previous one is reported.

Figures only: nothing is asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

try:
    from xwcommon.config import load_properties, resolve_path
    from xwcommon.errors import XWError
    from xwcommon.platforms import local_cpu, local_os
    from xwcommon.transport import Transport
except ImportError:  # run from a checkout where the package is not installed
    sys.path.insert(0, str(ROOT))
    from xwcommon.config import load_properties, resolve_path
    from xwcommon.errors import XWError
    from xwcommon.platforms import local_cpu, local_os
    from xwcommon.transport import Transport

log = logging.getLogger("bench.dispatch")

APP_NAME = "bench-noop"
NOOP_SCRIPT = b"#!/bin/sh\nexit 0\n"
BULK_MAX_JOBS = 5000  # the wire contract's limit per POST /jobs/bulk
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 30.0
LATENCY_WARMUP = 5  # first latency samples dropped (connections and caches warming up)
LATENCY_SAMPLE_TIMEOUT_S = 10.0


class BenchError(Exception):
    """Raised when the benchmark cannot run; the message says why."""


# -- the server under test ----------------------------------------------------------------------


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for our child programs: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Server:
    """One ``xwserver`` deployment in a home folder we own: init, start, stop."""

    def __init__(self, home: Path, db_url: str | None) -> None:
        self.home = home
        self.url = f"https://127.0.0.1:{free_loopback_port()}"
        self.db_url = db_url
        self.pid: int | None = None

    def _xwserver(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "xwserver", *args]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=child_env(), cwd=self.home.parent
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{' '.join(cmd[1:])} did not finish within {timeout_s:.0f} s") from exc
        if proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise BenchError(f"{' '.join(cmd[1:])} failed with exit code {proc.returncode}:\n{output}")
        return proc

    def init(self) -> None:
        args = ["init", "--home", str(self.home), "--url", self.url]
        if self.db_url:
            args += ["--db", self.db_url]
        self._xwserver(*args, timeout_s=60)

    def start(self) -> None:
        self._xwserver("start", "--home", str(self.home), timeout_s=SERVER_START_TIMEOUT_S)
        self.pid = self._read_pid()

    def _read_pid(self) -> int | None:
        try:
            return int((self.home / "var" / "xwserver.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """``xwserver stop``; if the process we started survives it, end it by its pid."""
        pid = self.pid or self._read_pid()
        with contextlib.suppress(BenchError):
            self._xwserver("stop", "--home", str(self.home), timeout_s=SERVER_STOP_TIMEOUT_S)
        if pid is not None and not wait_pid_gone(pid, 10.0):
            log.warning("server pid %d survived xwserver stop; sending SIGTERM", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_pid_gone(pid, 5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted((self.home / "var" / "log").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)

    @property
    def client_conf(self) -> Path:
        return self.home / "conf" / "xwrc"

    @property
    def worker_conf(self) -> Path:
        return self.home / "conf" / "xtremweb.worker.conf"


def wait_pid_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is gone for every purpose
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def transport_from_conf(conf: Path, **kwargs: Any) -> Transport:
    """A ``Transport`` from an XWHEP-style client or worker config file."""
    props = load_properties(conf)
    ca_file = props.get("ca.file") or props.get("path.certfile")  # XWHEP's name for it
    missing = [k for k in ("dispatcher.servers", "login", "password") if not props.get(k)]
    if not ca_file:
        missing.append("ca.file")
    if missing or not ca_file:
        raise BenchError(f"{conf}: missing key(s) {', '.join(missing)}")
    return Transport(
        props["dispatcher.servers"],
        resolve_path(ca_file, conf.parent),
        props["login"],
        props["password"],
        **kwargs,
    )


# -- simulated workers ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the workers did, shared by all of them (one event loop, no locks needed)."""

    target: int = 0
    reported: int = 0
    errors: int = 0
    requests: int = 0
    seen_jobs: set[str] = field(default_factory=set)
    duplicates: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: the latency phase sets this: job uid -> time its assignment arrived, and an event per arrival
    arrivals: dict[str, float] | None = None
    arrival: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, job_uid: str, now: float) -> None:
        if job_uid in self.seen_jobs:
            self.duplicates += 1
        self.seen_jobs.add(job_uid)
        if self.arrivals is not None:
            self.arrivals[job_uid] = now
            self.arrival.set()

    def finished(self) -> None:
        self.reported += 1
        if self.target and self.reported >= self.target:
            self.done.set()


class SimWorker:
    """A worker that speaks the real protocol and completes every task at once."""

    def __init__(self, name: str, transport: Transport, tally: Tally, wait_s: float) -> None:
        self.name = name
        self.t = transport
        self.tally = tally
        self.wait_s = wait_s
        self.host_uid = ""
        self.capacity = 1
        self.stopping = False
        self.separate_reports = False

    async def register(self) -> None:
        body = await self.t.request(
            "POST",
            "/work/register",
            json={
                "name": self.name,
                "os": local_os(),
                "cpu": local_cpu(),
                "cores": 1,
                "memory_bytes": 1 << 30,
                "disk_free_bytes": 10 << 30,
                "tags": ["bench"],
                "version": "bench",
            },
        )
        self.host_uid = body["host_uid"]

    async def run(self) -> None:
        """Request, report, repeat until told to stop; an error never ends the loop.

        By default the reports of the tasks just done ride on the next work request (one
        call per cycle, as a busy worker does); ``--separate-reports`` sends one report
        call per task instead.
        """
        delay_s = 0.05
        reports: list[dict[str, Any]] = []
        while not self.stopping:
            try:
                # a request that carries reports does not wait: its answer confirms them
                body = await self.t.request(
                    "POST",
                    "/work/request",
                    json={
                        "host_uid": self.host_uid,
                        "capacity": self.capacity,
                        "wait_s": 0 if reports else self.wait_s,
                        "reports": reports,
                    },
                    timeout_s=self.wait_s + 30,
                )
                now = time.perf_counter()
                self.tally.requests += 1
                for outcome in body.get("reported", []):
                    if "job_status" in outcome:
                        self.tally.finished()
                    else:
                        self.tally.errors += 1
                        log.warning(
                            "%s: report of task %s failed: %s", self.name, outcome["task_uid"], outcome
                        )
                reports = []
                assignments = body.get("assignments", [])
                for a in assignments:
                    self.tally.arrived(a["job_uid"], now)
                if self.separate_reports:
                    await asyncio.gather(*(self.report(a["task_uid"]) for a in assignments))
                else:
                    reports = [
                        {"task_uid": a["task_uid"], "status": "COMPLETED", "exit_code": 0}
                        for a in assignments
                    ]
                delay_s = 0.05
            except (XWError, KeyError, TypeError) as exc:
                self.tally.errors += 1
                log.warning("%s: work request failed: %s", self.name, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
        if reports:  # deliver what is done before leaving
            await asyncio.gather(*(self.report(r["task_uid"]) for r in reports))

    async def report(self, task_uid: str) -> None:
        try:
            await self.t.request(
                "POST",
                f"/work/tasks/{task_uid}/report",
                json={"status": "COMPLETED", "exit_code": 0, "message": None, "result_uid": None},
            )
        except XWError as exc:
            self.tally.errors += 1
            log.warning("%s: report of task %s failed: %s", self.name, task_uid, exc)
            return
        self.tally.finished()


class Fleet:
    """M simulated workers; started and stopped gracefully between phases.

    Stopping never cancels a waiting work request: a request cancelled on our side may
    still be served by the server, which would hand a job to nobody until its lease
    expires. Each loop finishes its current long-poll (at most ``wait_s``) and ends.
    """

    def __init__(self, workers: list[SimWorker]) -> None:
        self.workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, capacity_of: Any) -> None:
        for i, w in enumerate(self.workers):
            w.capacity = capacity_of(i)
            w.stopping = False
            self._tasks.append(asyncio.create_task(w.run(), name=w.name))

    async def stop(self) -> None:
        for w in self.workers:
            w.stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def close(self) -> None:
        await self.stop()
        await asyncio.gather(*(w.t.close() for w in self.workers), return_exceptions=True)


# -- the phases ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    jobs: int = 0
    workers: int = 0
    capacity: int = 0
    separate_reports: bool = False
    db: str = ""
    wall_s: float = math.nan
    submit_s: float = math.nan
    completed_on_server: int = -1
    errors: int = 0
    duplicates: int = 0
    requests: int = 0
    #: CPU seconds used during the full cycle by the server process and by this process
    server_cpu_s: float = math.nan
    client_cpu_s: float = math.nan
    latencies_ms: list[float] = field(default_factory=list)
    latency_misses: int = 0


def chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


async def full_cycle(
    admin: Transport,
    fleet: Fleet,
    tally: Tally,
    args: argparse.Namespace,
    fig: Figures,
    server_pid: int | None,
) -> None:
    label = f"bench-{os.getpid()}"
    tally.target, tally.reported = args.jobs, 0
    tally.done.clear()
    fleet.start(lambda i: 1 + i % args.capacity)
    await asyncio.sleep(0.5)  # let every worker's first long-poll reach the server
    server_cpu0, client_cpu0 = process_cpu_s(server_pid), time.process_time()
    t0 = time.perf_counter()
    for part in chunks(args.jobs, args.bulk):
        specs = [{"app": APP_NAME, "args": [str(i)], "label": label} for i in part]
        body = await admin.request("POST", "/jobs/bulk", json={"jobs": specs}, timeout_s=120)
        if len(body.get("jobs", [])) != len(specs):
            raise BenchError(
                f"POST /jobs/bulk of {len(specs)} jobs answered {len(body.get('jobs', []))} jobs"
            )
    fig.submit_s = time.perf_counter() - t0
    timeout_s = max(60.0, args.jobs / 50)
    try:
        await asyncio.wait_for(tally.done.wait(), timeout_s)
    except TimeoutError:
        raise BenchError(
            f"only {tally.reported} of {args.jobs} jobs were reported within {timeout_s:.0f} s "
            f"({tally.errors} worker errors)"
        ) from None
    fig.wall_s = time.perf_counter() - t0
    fig.server_cpu_s = process_cpu_s(server_pid) - server_cpu0
    fig.client_cpu_s = time.process_time() - client_cpu0
    await fleet.stop()
    fig.errors, fig.duplicates, fig.requests = tally.errors, tally.duplicates, tally.requests
    listed = await admin.request(
        "GET", "/jobs", params={"label": label, "status": "COMPLETED", "limit": args.jobs + 1}, timeout_s=120
    )
    fig.completed_on_server = len(listed.get("jobs", []))


async def latency(
    admin: Transport, fleet: Fleet, tally: Tally, args: argparse.Namespace, fig: Figures
) -> None:
    if args.latency_samples <= 0:
        return
    label = f"bench-latency-{os.getpid()}"
    tally.target = 0
    fleet.start(lambda i: 1)
    await asyncio.sleep(0.5)
    tally.arrivals = {}
    for i in range(LATENCY_WARMUP + args.latency_samples):
        before, errors_before = tally.reported, tally.errors
        t0 = time.perf_counter()
        job = await admin.request("POST", "/jobs", json={"app": APP_NAME, "args": [str(i)], "label": label})
        arrived = await arrival_of(tally, job["uid"], t0 + LATENCY_SAMPLE_TIMEOUT_S)
        if arrived is None:
            fig.latency_misses += 1
            continue
        if i >= LATENCY_WARMUP:
            fig.latencies_ms.append((arrived - t0) * 1000)
        # the system is idle again once the worker's report is answered (or has failed)
        deadline = time.perf_counter() + LATENCY_SAMPLE_TIMEOUT_S
        while tally.reported == before and tally.errors == errors_before and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
    tally.arrivals = None
    await fleet.stop()
    fig.errors, fig.duplicates = tally.errors, tally.duplicates


async def arrival_of(tally: Tally, job_uid: str, deadline: float) -> float | None:
    """When the assignment of ``job_uid`` reached a worker (perf_counter), or None past ``deadline``."""
    assert tally.arrivals is not None
    while job_uid not in tally.arrivals:
        tally.arrival.clear()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return None
        try:
            await asyncio.wait_for(tally.arrival.wait(), remaining)
        except TimeoutError:
            return None
    return tally.arrivals[job_uid]


async def run(args: argparse.Namespace, server: Server, fig: Figures) -> None:
    admin = transport_from_conf(server.client_conf)
    tally = Tally()
    fleet = Fleet([])
    try:
        version = await admin.request("GET", "/version", auth=False)  # waits for the server to listen
        log.info("server %s answers: %s", server.url, version)
        binary = await admin.upload("/data", NOOP_SCRIPT, params={"name": "noop.sh"})
        await admin.request(
            "POST",
            "/apps",
            json={"name": APP_NAME, "binaries": [{"os": "any", "cpu": "any", "data_uid": binary["uid"]}]},
        )
        fleet.workers = [
            SimWorker(
                f"bench-worker-{i:03d}",
                transport_from_conf(server.worker_conf, connections=max(2, args.capacity + 1)),
                tally,
                args.wait_s,
            )
            for i in range(args.workers)
        ]
        for w in fleet.workers:
            w.separate_reports = args.separate_reports
        # logins are slow on purpose (salted slow hash): a few at a time, before the clock starts
        sem = asyncio.Semaphore(8)

        async def register(w: SimWorker) -> None:
            async with sem:
                await w.register()

        await asyncio.gather(*(register(w) for w in fleet.workers))
        await full_cycle(admin, fleet, tally, args, fig, server.pid)
        await latency(admin, fleet, tally, args, fig)
    finally:
        await fleet.close()
        await admin.close()


# -- reporting ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there is no value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process, from /proc (NaN when unknown)."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    # fields[0] is stat field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_db(url: str | None) -> str:
    if not url:
        return "sqlite (embedded default)"
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def print_table(fig: Figures, as_json: bool) -> None:
    rate = fig.jobs / fig.wall_s if fig.wall_s > 0 else math.nan
    submit_rate = fig.jobs / fig.submit_s if fig.submit_s > 0 else math.nan
    p50, p99 = percentile(fig.latencies_ms, 50), percentile(fig.latencies_ms, 99)
    machine = (
        f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, {platform.system()}"
    )
    if as_json:
        print(
            json.dumps(
                {
                    "jobs": fig.jobs,
                    "workers": fig.workers,
                    "capacity_max": fig.capacity,
                    "db": fig.db,
                    "wall_s": round(fig.wall_s, 3),
                    "jobs_per_s": round(rate, 1),
                    "submit_jobs_per_s": round(submit_rate, 1),
                    "latency_p50_ms": round(p50, 2),
                    "latency_p99_ms": round(p99, 2),
                    "latency_samples": len(fig.latencies_ms),
                    "latency_misses": fig.latency_misses,
                    "completed_on_server": fig.completed_on_server,
                    "worker_errors": fig.errors,
                    "duplicate_assignments": fig.duplicates,
                    "work_requests": fig.requests,
                    "server_cpu_s": round(fig.server_cpu_s, 2),
                    "client_cpu_s": round(fig.client_cpu_s, 2),
                    "machine": machine,
                }
            )
        )
        return
    rows = [
        ("jobs", f"{fig.jobs}"),
        (
            "workers",
            f"{fig.workers} simulated (capacity 1..{fig.capacity}, "
            + ("one report call per task)" if fig.separate_reports else "reports ride on work requests)"),
        ),
        ("db", fig.db),
        ("wall", f"{fig.wall_s:.2f} s"),
        ("full cycle", f"{rate:.0f} jobs/s (submit, assign, report)"),
        ("submit", f"{submit_rate:.0f} jobs/s (bulk, while workers consume)"),
        (
            "latency p50 / p99",
            f"{p50:.1f} / {p99:.1f} ms submit-to-start ({len(fig.latencies_ms)} samples"
            + (f", {fig.latency_misses} missed" if fig.latency_misses else "")
            + ")",
        ),
        (
            "cpu in full cycle",
            f"server {100 * fig.server_cpu_s / fig.wall_s:.0f}%, "
            f"bench client {100 * fig.client_cpu_s / fig.wall_s:.0f}% (100% = one core busy)",
        ),
        (
            "checks",
            f"{fig.completed_on_server} COMPLETED on the server, {fig.errors} worker errors, "
            f"{fig.duplicates} duplicate assignments, {fig.requests} work requests",
        ),
        ("machine", machine),
    ]
    width = max(len(k) for k, _ in rows)
    print("XtremWeb-Py dispatch benchmark")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=5000, help="jobs through the full cycle (default 5000)")
    p.add_argument("--workers", type=int, default=50, help="simulated workers (default 50)")
    p.add_argument(
        "--capacity", type=int, default=4, help="worker i asks for 1 + i %% K jobs per request (default 4)"
    )
    p.add_argument("--db", default=None, help="SQLAlchemy URL for the server (default: embedded SQLite)")
    p.add_argument(
        "--latency-samples", type=int, default=200, help="submit-to-start samples (default 200; 0 skips)"
    )
    p.add_argument(
        "--bulk", type=int, default=1000, help=f"jobs per POST /jobs/bulk (default 1000, max {BULK_MAX_JOBS})"
    )
    p.add_argument("--wait-s", type=float, default=5.0, help="long-poll wait_s of the workers (default 5)")
    p.add_argument(
        "--separate-reports",
        action="store_true",
        help="one report call per task instead of reports riding on the next work request",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--keep", action="store_true", help="keep the server home folder (its path is printed)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.capacity < 1:
        p.error("--jobs, --workers and --capacity must be at least 1")
    if not 1 <= args.bulk <= BULK_MAX_JOBS:
        p.error(f"--bulk must be between 1 and {BULK_MAX_JOBS}")
    return args


def with_server(
    program: str, workdir: Path, server: Server, keep: bool, body: Callable[[Server], None]
) -> bool:
    """``xwserver init`` and ``start`` ``server``, run ``body`` with it, stop it; True when
    ``body`` ran to its end. A failure is printed with the server log's tail; ``workdir`` is
    removed unless ``keep`` or a failure (its path is printed then). Every benchmark's frame."""
    ok = False
    try:
        server.init()
        server.start()
        body(server)
        ok = True
    except (BenchError, XWError) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        tail = server.log_tail()
        if tail:
            print(tail, file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
    finally:
        server.stop()
        if keep or not ok:
            print(f"temporary folder kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(asctime)s %(name)s %(message)s"
    )
    workdir = Path(tempfile.mkdtemp(prefix="xwbench-"))
    fig = Figures(jobs=args.jobs, workers=args.workers, capacity=args.capacity, db=describe_db(args.db))
    fig.separate_reports = args.separate_reports
    server = Server(workdir / "server", args.db)
    if not with_server(
        "bench/dispatch.py", workdir, server, args.keep, lambda s: asyncio.run(run(args, s, fig))
    ):
        return 1
    print_table(fig, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
