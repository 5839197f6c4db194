"""Dispatch benchmark: jobs per second through the full cycle, as a ratio to this machine's
bare ceiling, and submit-to-start latency.

It starts a real server (``xwserver init`` + ``xwserver start`` in a temporary home on a
free loopback port, by the tests' harness: ``Deployment`` of tests/helpers/deployment.py,
through :func:`deployment` and :func:`with_server`, which the other benchmarks use too),
inserts an app whose binary is a tiny script, and drives it with M simulated workers that speak the protocol (the messages of ``xwcommon.protocol.work``) over
real HTTPS: each one is a ``Transport`` logged in as the deployment's worker identity,
registers itself (``Registration``), then loops on work requests (``WorkRequest``, long-poll,
capacity 1..k) and completes every assignment at once (exit code 0, no result): its
``Report`` rides on the next work request, or with ``--separate-reports`` goes alone to
``POST /work/tasks/{uid}/report``. Every work request names the tasks the worker still holds
(``held``) and a ``Heartbeat`` goes out at the server's interval, as a real worker does.
Nothing is executed: what is measured is the middleware's own cost per job.

Two phases:

1. Full cycle: with the workers idle and long-polling, the clock starts, N jobs are
   submitted in bulks (``POST /jobs/bulk``) as the admin, and the clock stops when the
   N-th report has been answered. Prints jobs/s over that wall time, and the submit rate
   (N over the time the bulk calls took, measured while the workers consume).
2. Latency: every worker asks for one job at a time; one job is submitted at a time
   (``POST /jobs``) and the time from the submit call to the assignment arriving at a
   worker is recorded; the next job is submitted once the previous one is reported.

With ``--ceiling``, bench/ceiling.py (a bare aiohttp handler doing one SQLite INSERT+COMMIT
per request over TLS, kept-alive, driven by as many clients as workers) runs in processes of
its own before the server starts and after it stops, and the full cycle is printed as a
ratio to it. Machines differ up to 5x from one day to the next; the ratio much less.

Also counted: every 5xx answer the workers and the submitter got (by HTTP status, retried
ones included), the tasks the server ended LOST (``GET /tasks?status=LOST``), tasks handed
back as not held, and jobs assigned twice. Figures only: nothing is asserted. See
bench/README.md.
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
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if str(ROOT) not in sys.path:  # run from a checkout where the package is not installed
    sys.path.insert(0, str(ROOT))

from xwcommon.config import load_properties, resolve_path  # noqa: E402
from xwcommon.errors import XWError  # noqa: E402
from xwcommon.platforms import local_cpu, local_os  # noqa: E402
from xwcommon.protocol import Answer  # noqa: E402
from xwcommon.protocol.work import (  # noqa: E402
    Assignment,
    Heartbeat,
    HeartbeatAnswer,
    Registered,
    Registration,
    Report,
    ReportAnswer,
    TaskReport,
    WorkAnswer,
    WorkRequest,
)
from xwcommon.transport import Transport  # noqa: E402
from xwworker.loop import heartbeat_wait_s  # noqa: E402

if str(HERE) not in sys.path:  # bench/ceiling.py, when this module is imported from elsewhere
    sys.path.insert(0, str(HERE))
from ceiling import machine_busy_s, others_cores  # noqa: E402

if str(ROOT / "tests") not in sys.path:  # the tests' harness: tests/helpers/deployment.py
    sys.path.insert(0, str(ROOT / "tests"))
from helpers.deployment import Deployment  # noqa: E402

log = logging.getLogger("bench.dispatch")

APP_NAME = "bench-noop"
NOOP_SCRIPT = b"#!/bin/sh\nexit 0\n"
BULK_MAX_JOBS = 5000  # the wire contract's limit per POST /jobs/bulk
LATENCY_WARMUP = 5  # first latency samples dropped (connections and caches warming up)
LATENCY_SAMPLE_TIMEOUT_S = 10.0
LIST_PAGE = 10_000  # the most a listing answers at once
CEILING_TIMEOUT_S = 600.0
#: more than this many cores busy elsewhere during a measurement makes the run unsteady
UNSTEADY_OTHERS_CORES = 0.25
#: full cycle ÷ ceiling, by database (issue 9's targets); MariaDB's target is 0 errors, not a ratio
RATIO_TARGETS = {"sqlite": 0.30, "postgresql": 0.15}
LATENCY_TARGETS_MS = (5.0, 50.0)  # p50, p99 with 50 idle workers
LATENCY_TARGET_BACKENDS = {"sqlite", "postgresql"}


class BenchError(Exception):
    """Raised when the benchmark cannot run; the message says why."""


# -- the server under test ----------------------------------------------------------------------


def checkout_env() -> dict[str, str]:
    """What our child programs' environment adds: this checkout first on the import path."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}


def deployment_env() -> dict[str, str]:
    """The environment the deployment's processes get on top of ours: this checkout first,
    and their output buffered as users run them (the harness makes it unbuffered for tests,
    which read logs while processes run; a client printing 10,000 URIs then writes 10,000 times)."""
    return {**checkout_env(), "PYTHONUNBUFFERED": ""}


def child_env() -> dict[str, str]:
    """The environment for our child programs: this checkout first on the import path."""
    return {**os.environ, **checkout_env()}


def server_settings(lines: list[str]) -> dict[str, str]:
    """``--server-conf KEY=VALUE`` lines as settings for the server's xwserver.conf."""
    settings = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--server-conf {line!r} is not KEY=VALUE")
        settings[key.strip()] = value.strip()
    return settings


def deployment(workdir: Path, db_url: str | None, settings: Mapping[str, object] | None = None) -> Deployment:
    """Every benchmark's deployment, started as the tests start theirs (``Deployment`` of
    tests/helpers/deployment.py): a server home made by ``xwserver init`` in
    ``workdir/server`` on a free loopback port (embedded SQLite unless ``db_url``, which must
    name an empty database), ``settings`` added to its xwserver.conf, its child programs
    importing this checkout first."""
    return Deployment(
        workdir, home=workdir / "server", db_url=db_url, settings=settings, env=deployment_env()
    )


def transport_from_conf(conf: Path, statuses: Counter[int] | None = None, **kwargs: Any) -> Transport:
    """A ``Transport`` from an XWHEP-style client or worker config file; with ``statuses``, one
    that counts every HTTP answer there by status (:class:`CountingTransport`)."""
    props = load_properties(conf)
    ca_file = props.get("ca.file") or props.get("path.certfile")  # XWHEP's name for it
    missing = [k for k in ("dispatcher.servers", "login", "password") if not props.get(k)]
    if not ca_file:
        missing.append("ca.file")
    if missing or not ca_file:
        raise BenchError(f"{conf}: missing key(s) {', '.join(missing)}")
    if statuses is not None:
        kwargs["statuses"] = statuses
    return (CountingTransport if statuses is not None else Transport)(
        props["dispatcher.servers"],
        resolve_path(ca_file, conf.parent),
        props["login"],
        props["password"],
        **kwargs,
    )


# -- simulated workers ----------------------------------------------------------------------------

A = TypeVar("A", bound=Answer)


class ProtocolMismatch(Exception):
    """Raised when a server's answer does not parse as its protocol message: the end of the run."""


def parse_answer(cls: type[A], body: Any) -> A:
    """``cls.from_wire(body)``; a mismatch is not noise to count but a reason to stop."""
    try:
        return cls.from_wire(body)
    except XWError as exc:
        raise ProtocolMismatch(f"the server's answer is not a {cls.__name__}: {exc}") from None


class CountingTransport(Transport):
    """A ``Transport`` that counts every HTTP answer by status, retried ones included.

    The transport retries 502, 503 and 504 on its own (a busy server says when to come
    back), so an exception shows only an answer that ended the retries; what the server
    really answered is counted here, on the wire (an aiohttp trace)."""

    def __init__(self, *args: Any, statuses: Counter[int], connections: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, connections=connections, **kwargs)
        self.statuses = statuses
        self._connection_limit = connections

    @property
    def session(self) -> aiohttp.ClientSession:
        # Transport.session's own settings, plus the trace
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_end.append(self._count)
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=self._connection_limit, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                trace_configs=[trace],
            )
        return self._session

    async def _count(self, _session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        self.statuses[params.response.status] += 1


def server_errors(statuses: Counter[int]) -> dict[str, int]:
    """The 5xx answers of ``statuses``, by status (JSON keys are strings)."""
    return {str(s): n for s, n in sorted(statuses.items()) if s >= 500}


@dataclass
class Tally:
    """What the workers did, shared by all of them (one event loop, no locks needed)."""

    target: int = 0
    reported: int = 0
    #: calls that failed (after the transport's retries) and reports the server refused
    errors: int = 0
    #: refused reports by the server's error code (``task_gone``, ...)
    report_errors: Counter[str] = field(default_factory=Counter)
    #: failed calls by what failed and the error's code (``work request: timeout``, ...)
    call_errors: Counter[str] = field(default_factory=Counter)
    #: the first error message of each kind of ``call_errors``
    call_error_examples: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    heartbeats: int = 0
    #: heartbeats not sent because a work request was out (it renews the leases itself)
    beats_skipped: int = 0
    #: work answers that said "no room: come back after N s"
    turned_away: int = 0
    #: tasks the server handed back because a registration, work request or heartbeat did not name them
    released: int = 0
    #: every HTTP answer the workers got, by status
    statuses: Counter[int] = field(default_factory=Counter)
    seen_jobs: set[str] = field(default_factory=set)
    duplicates: int = 0
    #: why the run cannot go on (an answer that is not the protocol); set once
    fatal: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: the latency phase sets this: job uid -> time its assignment arrived, and an event per arrival
    arrivals: dict[str, float] | None = None
    arrival: asyncio.Event = field(default_factory=asyncio.Event)

    #: assignments in all (with replication, a job's copies)
    copies: int = 0
    #: jobs replicated (``--quorum``): their copies are not duplicates
    replicated: bool = False

    def arrived(self, job_uid: str, now: float) -> None:
        self.copies += 1
        if job_uid in self.seen_jobs and not self.replicated:
            self.duplicates += 1
        self.seen_jobs.add(job_uid)
        if self.arrivals is not None:
            self.arrivals[job_uid] = now
            self.arrival.set()

    def finished(self) -> None:
        self.reported += 1
        if self.target and self.reported >= self.target:
            self.done.set()

    def refused(self, code: str) -> None:
        self.errors += 1
        self.report_errors[code] += 1

    def failed(self, call: str, exc: XWError) -> None:
        """A call that failed after the transport's retries."""
        self.errors += 1
        kind = f"{call}: {exc.code}"
        self.call_errors[kind] += 1
        self.call_error_examples.setdefault(kind, str(exc)[:300])

    def stop_all(self, reason: str) -> None:
        if self.fatal is None:
            self.fatal = reason
        self.done.set()
        self.arrival.set()


class SimWorker:
    """A worker that speaks the protocol (``xwcommon.protocol.work``) and completes every task at once.

    It keeps what a real worker keeps for exact leases: the tasks it holds (assigned, their
    report not yet answered) and the highest assignment ``seq`` it has received. Every work
    request names the tasks it still holds besides those it reports (``held``), and a
    heartbeat every ``heartbeat_interval_s`` (the server's figure) names them with
    ``seen_seq``; the server hands back any other task it believed this host held.
    """

    def __init__(self, name: str, transport: Transport, tally: Tally, wait_s: float) -> None:
        self.name = name
        self.t = transport
        self.tally = tally
        self.wait_s = wait_s
        self.host_uid = ""
        self.heartbeat_interval_s = 15.0
        self.lease_s = 60.0
        #: when the work request out now was sent (monotonic); None: none is out
        self.polling_since: float | None = None
        self.capacity = 1
        self.stopping = False
        self.separate_reports = False
        #: task uid -> its assignment, from its arrival until its report is answered
        self.holding: dict[str, Assignment] = {}
        self.seen_seq: int | None = None

    async def register(self) -> None:
        registration = Registration(
            name=self.name,
            os=local_os(),
            cpu=local_cpu(),
            cores=1,
            memory_bytes=1 << 30,
            disk_free_bytes=10 << 30,
            tags=["bench"],
            version="bench",
            held=[],  # a new host: it holds nothing yet
        )
        body = await self.t.request("POST", "/work/register", json=registration.to_wire())
        registered = parse_answer(Registered, body)
        self.host_uid = registered.host_uid
        self.heartbeat_interval_s = registered.heartbeat_interval_s
        self.lease_s = registered.lease_s
        self.tally.released += registered.released

    async def run(self) -> None:
        """Work and heartbeat until told to stop; an error never ends the loops, a protocol mismatch does."""
        stop_heartbeats = asyncio.Event()
        heartbeats = asyncio.create_task(self.heartbeats(stop_heartbeats), name=f"{self.name} heartbeats")
        try:
            await self.work()
        except ProtocolMismatch as exc:
            self.tally.stop_all(str(exc))
        finally:
            stop_heartbeats.set()
            with contextlib.suppress(ProtocolMismatch):
                await heartbeats

    async def work(self) -> None:
        """Request, report, repeat.

        By default the reports of the tasks just done ride on the next work request (one
        call per cycle, as a busy worker does); ``--separate-reports`` sends one report
        call per task instead (``POST /work/tasks/{uid}/report``).
        """
        delay_s = 0.05
        reports: list[TaskReport] = []
        while not self.stopping:
            reporting = {r.task_uid for r in reports}
            request = WorkRequest(
                host_uid=self.host_uid,
                capacity=self.capacity,
                # a request that carries reports does not wait: its answer confirms them
                wait_s=0 if reports else self.wait_s,
                reports=reports,
                held=[uid for uid in self.holding if uid not in reporting],
            )
            self.polling_since = time.monotonic()
            try:
                body = await self.t.request(
                    "POST", "/work/request", json=request.to_wire(), timeout_s=self.wait_s + 30
                )
            except XWError as exc:
                self.polling_since = None
                # the reports stay: they ride on the next request
                self.tally.failed("work request", exc)
                log.warning("%s: work request failed: %s", self.name, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            self.polling_since = None
            delay_s = 0.05
            now = time.perf_counter()
            answer = parse_answer(WorkAnswer, body)
            self.tally.requests += 1
            self.tally.released += answer.released
            for outcome in answer.reported:
                self.holding.pop(outcome.task_uid, None)
                if outcome.job_status in FINAL:
                    self.tally.finished()
                elif outcome.job_status is not None:
                    pass  # a replicated job's copy: the job waits for its quorum
                else:
                    self.tally.refused(outcome.error or "unknown")
                    log.warning("%s: report of task %s refused: %s", self.name, outcome.task_uid, outcome)
            if answer.retry_after_s and not answer.assignments and not answer.reported:
                # the server had no room for this request: come back when it said, as the
                # real worker does (a fleet that asked again at once would spin)
                self.tally.turned_away += 1
                await self.pause(answer.retry_after_s)
            reports = []
            for a in answer.assignments:
                self.holding[a.task_uid] = a
                self.seen_seq = a.seq if self.seen_seq is None else max(self.seen_seq, a.seq)
                self.tally.arrived(a.job_uid, now)
            if self.separate_reports:
                await asyncio.gather(*(self.report(a.task_uid) for a in answer.assignments))
            else:
                reports = [
                    TaskReport(task_uid=a.task_uid, status="COMPLETED", exit_code=0)
                    for a in answer.assignments
                ]
        if reports:  # deliver what is done before leaving
            await asyncio.gather(*(self.report(r.task_uid) for r in reports if r.task_uid))

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the worker is told to stop meanwhile."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.5))

    async def report(self, task_uid: str) -> None:
        """One report alone: ``POST /work/tasks/{uid}/report`` (the path names the task)."""
        try:
            body = await self.t.request(
                "POST",
                f"/work/tasks/{task_uid}/report",
                json=Report(status="COMPLETED", exit_code=0).to_wire(),
            )
        except XWError as exc:
            self.tally.refused(exc.code)
            log.warning("%s: report of task %s failed: %s", self.name, task_uid, exc)
            return
        finally:
            self.holding.pop(task_uid, None)  # reported or refused, the worker holds it no more
        parse_answer(ReportAnswer, body)
        self.tally.finished()

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """Every ``heartbeat_interval_s`` (jittered as the real worker's): renew the tasks
        held, name the highest ``seq`` seen. The first beat comes at a random moment of the
        first interval: volunteers' workers start at different times, not all in one second."""
        wait_s = self.heartbeat_interval_s * random.random()
        while True:
            try:
                await asyncio.wait_for(stop.wait(), wait_s)
                return
            except TimeoutError:
                pass
            wait_s = heartbeat_wait_s(self.heartbeat_interval_s)
            since = self.polling_since
            if since is not None and not self.holding and time.monotonic() - since < self.lease_s / 2:
                # holding nothing, the work request out now did a heartbeat's work, as the
                # real worker counts it
                self.tally.beats_skipped += 1
                continue
            heartbeat = Heartbeat(
                host_uid=self.host_uid, task_uids=list(self.holding), seen_seq=self.seen_seq
            )
            try:
                body = await self.t.request("POST", "/work/heartbeat", json=heartbeat.to_wire())
            except XWError as exc:
                self.tally.failed("heartbeat", exc)
                log.warning("%s: heartbeat failed: %s", self.name, exc)
                continue
            try:
                answer = parse_answer(HeartbeatAnswer, body)
            except ProtocolMismatch as exc:
                self.tally.stop_all(str(exc))
                return
            self.tally.heartbeats += 1
            self.tally.released += answer.released


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
    db_url: str | None = None
    wall_s: float = math.nan
    submit_s: float = math.nan
    completed_on_server: int = -1
    errors: int = 0
    report_errors: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    #: assignments in all (copies of replicated jobs included)
    copies: int = 0
    requests: int = 0
    heartbeats: int = 0
    released: int = 0
    #: tasks that ended LOST on the server: after the full cycle, and after both phases
    lost_full_cycle: int = -1
    lost_total: int = -1
    #: 5xx answers by status, to the simulated workers and to the submitter (retried ones included)
    worker_5xx: dict[str, int] = field(default_factory=dict)
    submitter_5xx: dict[str, int] = field(default_factory=dict)
    #: CPU seconds used during the full cycle by the server process and by this process
    server_cpu_s: float = math.nan
    #: the server's CPU after the cycle, until it is idle: background work the cycle left
    #: (the event history's settling), not counted in server_cpu_s
    server_cpu_after_s: float = math.nan
    client_cpu_s: float = math.nan
    #: the database server's processes (PostgreSQL, MariaDB; all of them, whoever they serve)
    db_cpu_s: float = 0.0
    #: cores the rest of the machine kept busy during the full cycle
    others_cores: float = math.nan
    latencies_ms: list[float] = field(default_factory=list)
    latency_misses: int = 0
    #: bench/ceiling.py's JSON, measured before the server starts and after it stops
    ceilings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def ceiling_req_per_s(self) -> float:
        rates = [c["req_per_s"] for c in self.ceilings]
        return statistics.fmean(rates) if rates else math.nan

    @property
    def ceiling_cpu_ms(self) -> float:
        """The ceiling server's CPU per request, in ms (mean of the runs)."""
        per = [1000 * c["server_cpu_s"] / c["requests"] for c in self.ceilings]
        return statistics.fmean(per) if per else math.nan

    @property
    def cpu_ratio(self) -> float:
        """Server CPU per job ÷ the ceiling server's CPU per request (lower is better)."""
        return 1000 * self.server_cpu_s / self.jobs / self.ceiling_cpu_ms if self.jobs else math.nan

    @property
    def steady(self) -> bool:
        """Whether the machine was quiet enough to compare: the ceiling runs within 25% of each
        other, and under a quarter of a core busy elsewhere during them and the full cycle."""
        rates = [c["req_per_s"] for c in self.ceilings]
        loads = [c["others_cores"] for c in self.ceilings] + [self.others_cores]
        spread_ok = not rates or min(rates) >= 0.75 * max(rates)
        return spread_ok and all(not load > UNSTEADY_OTHERS_CORES for load in loads)

    @property
    def clean(self) -> bool:
        """No error of any kind: every job COMPLETED once, no 5xx, no lost or released task."""
        return (
            self.completed_on_server == self.jobs
            and self.errors == 0
            and self.duplicates == 0
            and not self.worker_5xx
            and not self.submitter_5xx
            and self.lost_total == 0
            and self.released == 0
            and self.latency_misses == 0
        )

    @property
    def ratios(self) -> list[float]:
        """The full cycle over each ceiling run (before, after)."""
        return [self.jobs_per_s / c["req_per_s"] for c in self.ceilings if c["req_per_s"] > 0]

    @property
    def ratio(self) -> float:
        """The full cycle as a share of the ceiling (jobs/s ÷ req/s)."""
        return self.jobs_per_s / self.ceiling_req_per_s if self.ceilings else math.nan


#: the job statuses that end a job (a replicated job's copy reports WAITING or PENDING first)
FINAL = ("COMPLETED", "ERROR", "ABORTED")


def replication(args: argparse.Namespace) -> dict[str, int]:
    """The jobs' replication fields (``--quorum``, ``--replicas``): none by default."""
    if args.quorum <= 1 and args.replicas <= 1:
        return {}
    return {"min_quorum": args.quorum, "target_results": max(args.quorum, args.replicas)}


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
    tally.replicated = bool(replication(args))
    tally.done.clear()
    fleet.start(lambda i: 1 + i % args.capacity)
    await asyncio.sleep(0.5)  # let every worker's first long-poll reach the server
    db_names = DB_SERVER_PROCESSES.get(backend_of(args.db), set())
    server_cpu0, client_cpu0, busy0 = process_cpu_s(server_pid), time.process_time(), machine_busy_s()
    db_cpu0 = processes_cpu_s(db_names)
    t0 = time.perf_counter()
    for part in chunks(args.jobs, args.bulk):
        specs = [{"app": APP_NAME, "args": [str(i)], "label": label, **replication(args)} for i in part]
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
            f"({tally.errors} worker errors, 5xx answers {server_errors(tally.statuses) or 'none'})"
        ) from None
    if tally.fatal:
        raise BenchError(tally.fatal)
    fig.wall_s = time.perf_counter() - t0
    fig.server_cpu_s = process_cpu_s(server_pid) - server_cpu0
    fig.client_cpu_s = time.process_time() - client_cpu0
    fig.db_cpu_s = processes_cpu_s(db_names) - db_cpu0
    ours_s = fig.server_cpu_s + fig.client_cpu_s + fig.db_cpu_s
    fig.others_cores = others_cores(machine_busy_s() - busy0, ours_s, fig.wall_s)
    await fleet.stop()
    fig.server_cpu_after_s = await background_cpu_s(server_pid, since=server_cpu0 + fig.server_cpu_s)
    collect(tally, fig)
    fig.completed_on_server = await count_listed(
        admin, "/jobs", "jobs", {"label": label, "status": "COMPLETED"}
    )
    fig.lost_full_cycle = await count_listed(admin, "/tasks", "tasks", {"status": "LOST"})


async def latency(
    admin: Transport, fleet: Fleet, tally: Tally, args: argparse.Namespace, fig: Figures
) -> None:
    if args.latency_samples <= 0:
        fig.lost_total = fig.lost_full_cycle
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
            if tally.fatal:
                raise BenchError(tally.fatal)
            fig.latency_misses += 1
            continue
        if i >= LATENCY_WARMUP:
            fig.latencies_ms.append((arrived - t0) * 1000)
        # the system is idle again once the worker's report is answered (or has failed)
        deadline = time.perf_counter() + LATENCY_SAMPLE_TIMEOUT_S
        while tally.reported == before and tally.errors == errors_before and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        if tally.fatal:
            raise BenchError(tally.fatal)
    tally.arrivals = None
    await fleet.stop()
    collect(tally, fig)
    fig.lost_total = await count_listed(admin, "/tasks", "tasks", {"status": "LOST"})


def collect(tally: Tally, fig: Figures) -> None:
    """The workers' tallies into the figures (cumulative over the phases)."""
    fig.errors, fig.duplicates, fig.requests = tally.errors, tally.duplicates, tally.requests
    fig.copies = tally.copies
    fig.report_errors = dict(tally.report_errors)
    fig.heartbeats, fig.released = tally.heartbeats, tally.released
    fig.worker_5xx = server_errors(tally.statuses)


async def count_listed(admin: Transport, path: str, key: str, params: dict[str, Any]) -> int:
    """How many objects a listing holds, page by page (the server lists at most LIST_PAGE at a time)."""
    total = 0
    while True:
        body = await admin.request(
            "GET", path, params={**params, "limit": LIST_PAGE, "offset": total}, timeout_s=120
        )
        got = len(body.get(key, []))
        total += got
        if got < LIST_PAGE:
            return total


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


async def run(args: argparse.Namespace, server: Deployment, fig: Figures) -> None:
    submitter: Counter[int] = Counter()
    admin = transport_from_conf(server.admin_conf, statuses=submitter)
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
                transport_from_conf(
                    server.worker_conf, statuses=tally.statuses, connections=max(2, args.capacity + 1)
                ),
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
        await full_cycle(admin, fleet, tally, args, fig, server.server_pid())
        await latency(admin, fleet, tally, args, fig)
    finally:
        fig.submitter_5xx = server_errors(submitter)
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


#: process names of the database servers the benchmark may run against
DB_SERVER_PROCESSES = {"postgresql": {"postgres"}, "mariadb": {"mariadbd", "mysqld"}}


def processes_cpu_s(names: set[str]) -> float:
    """User + system CPU seconds of every live process named one of ``names`` and of the children
    they reaped (PostgreSQL's connections come and go: their parent keeps their time); 0 when none."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        if comm in names:
            fields = text.rsplit(") ", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


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


def backend_of(url: str | None) -> str:
    """``sqlite``, ``postgresql``, ``mariadb`` or the URL's own dialect name."""
    dialect = (url or "sqlite").split(":", 1)[0].split("+", 1)[0].lower()
    return "mariadb" if dialect in {"mysql", "mariadb"} else dialect


def measure_ceiling(clients: int, requests: int) -> dict[str, Any]:
    """bench/ceiling.py in processes of its own (its server in one, its clients in another)."""
    cmd = [sys.executable, str(HERE / "ceiling.py"), "--json", "--clients", str(clients)]
    cmd += ["--requests", str(requests)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CEILING_TIMEOUT_S, env=child_env())
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"bench/ceiling.py did not finish within {CEILING_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(f"bench/ceiling.py failed ({proc.returncode}): {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def counts(by: dict[str, int]) -> str:
    """``3 (500: 2, 503: 1)``, or ``0``."""
    total = sum(by.values())
    return f"{total} ({', '.join(f'{k}: {v}' for k, v in by.items())})" if total else "0"


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


async def background_cpu_s(
    pid: int, *, since: float, window_s: float = 1.0, idle_cpu_s: float = 0.02
) -> float:
    """The CPU a server spent from the end of the cycle (its total was ``since`` then) while
    its workers stopped and after, until three windows in a row pass with less than
    ``idle_cpu_s`` each: the work the cycle left behind (moving the newest events to the
    indexed history), at most two minutes' worth."""
    last = process_cpu_s(pid)
    deadline = time.monotonic() + 120
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:  # background loops wake every second or so
        await asyncio.sleep(window_s)
        now = process_cpu_s(pid)
        quiet = quiet + 1 if now - last < idle_cpu_s else 0
        last = now
    return last - since


def print_table(fig: Figures, as_json: bool) -> None:
    rate = fig.jobs_per_s
    submit_rate = fig.jobs / fig.submit_s if fig.submit_s > 0 else math.nan
    p50, p99 = percentile(fig.latencies_ms, 50), percentile(fig.latencies_ms, 99)
    server_ms_per_job = 1000 * fig.server_cpu_s / fig.jobs if fig.jobs else math.nan
    backend = backend_of(fig.db_url)
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
                    "separate_reports": fig.separate_reports,
                    "db": fig.db,
                    "wall_s": round(fig.wall_s, 3),
                    "jobs_per_s": round(rate, 1),
                    "copies_per_job": round(fig.copies / fig.jobs, 3) if fig.jobs else None,
                    "ceiling_req_per_s": round(fig.ceiling_req_per_s, 1) if fig.ceilings else None,
                    "full_cycle_ratio": round(fig.ratio, 4) if fig.ceilings else None,
                    "full_cycle_ratio_by_run": [round(r, 4) for r in fig.ratios],
                    "server_cpu_ratio": round(fig.cpu_ratio, 2) if fig.ceilings else None,
                    "steady": fig.steady,
                    "clean": fig.clean,
                    "ceilings": fig.ceilings,
                    "submit_jobs_per_s": round(submit_rate, 1),
                    "latency_p50_ms": round(p50, 2),
                    "latency_p99_ms": round(p99, 2),
                    "latency_samples": len(fig.latencies_ms),
                    "latency_misses": fig.latency_misses,
                    "completed_on_server": fig.completed_on_server,
                    "http_5xx_workers": fig.worker_5xx,
                    "http_5xx_submitter": fig.submitter_5xx,
                    "leases_lost": fig.lost_total,
                    "leases_lost_full_cycle": fig.lost_full_cycle,
                    "released_by_server": fig.released,
                    "worker_errors": fig.errors,
                    "report_errors": fig.report_errors,
                    "duplicate_assignments": fig.duplicates,
                    "work_requests": fig.requests,
                    "heartbeats": fig.heartbeats,
                    "server_cpu_s": round(fig.server_cpu_s, 2),
                    "server_cpu_ms_per_job": round(server_ms_per_job, 3),
                    "server_cpu_after_s": round(fig.server_cpu_after_s, 2),
                    "server_cpu_ms_per_job_with_after": round(
                        1000 * (fig.server_cpu_s + fig.server_cpu_after_s) / fig.jobs, 3
                    )
                    if fig.jobs
                    else None,
                    "client_cpu_s": round(fig.client_cpu_s, 2),
                    "db_server_cpu_s": round(fig.db_cpu_s, 2),
                    "others_cores": round(fig.others_cores, 2),
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
    ]
    if fig.ceilings:
        target = RATIO_TARGETS.get(backend)
        goal = f" (target ≥ {target:.2f}x on {backend}: {verdict(fig.ratio >= target)})" if target else ""
        if backend == "mariadb":
            goal = f" (target on mariadb: no error; {verdict(fig.clean)})"
        runs = " / ".join(f"{c['req_per_s']:.0f}" for c in fig.ceilings)
        loads = " / ".join(f"{c['others_cores']:.2f}" for c in fig.ceilings)
        ceiling = fig.ceilings[0]
        rows += [
            (
                "ceiling",
                f"{fig.ceiling_req_per_s:.0f} req/s ({ceiling['what']}); full cycle {fig.ratio:.3f}x{goal}",
            ),
            (
                "ratio by run",
                " / ".join(f"{r:.3f}x" for r in fig.ratios)
                + " (the full cycle over each ceiling run: how far the machine drifted)",
            ),
            (
                "ceiling runs",
                f"{runs} req/s before / after ({ceiling['clients']} clients, {ceiling['requests']} requests "
                f"each); other load {loads} cores"
                + ("" if fig.steady else "; UNSTEADY machine: compare with care or run again"),
            ),
            (
                "server cpu",
                f"{server_ms_per_job:.2f} ms per job = {fig.cpu_ratio:.1f}x the ceiling server's "
                f"{fig.ceiling_cpu_ms:.3f} ms per request (steadier than wall time on a shared machine)",
            ),
        ]
    latency_goal = (
        f"; target ≤ {LATENCY_TARGETS_MS[0]:.0f} / {LATENCY_TARGETS_MS[1]:.0f} ms: "
        + verdict(p50 <= LATENCY_TARGETS_MS[0] and p99 <= LATENCY_TARGETS_MS[1])
        if fig.latencies_ms and backend in LATENCY_TARGET_BACKENDS
        else ""
    )
    rows += [
        ("submit", f"{submit_rate:.0f} jobs/s (bulk, while workers consume)"),
        (
            "after the cycle",
            f"{fig.server_cpu_after_s:.2f} s of server CPU from the cycle's end until idle (the workers "
            f"stopping, and background work left: the event history's settling), {1000 * fig.server_cpu_after_s / max(1, fig.jobs):.3f} ms per job",
        ),
        (
            "latency p50 / p99",
            f"{p50:.1f} / {p99:.1f} ms submit-to-start ({len(fig.latencies_ms)} samples"
            + (f", {fig.latency_misses} missed" if fig.latency_misses else "")
            + latency_goal
            + ")",
        ),
        (
            "cpu in full cycle",
            f"server {100 * fig.server_cpu_s / fig.wall_s:.0f}% ({server_ms_per_job:.2f} ms per job), "
            f"bench client {100 * fig.client_cpu_s / fig.wall_s:.0f}%, "
            + (f"database server {100 * fig.db_cpu_s / fig.wall_s:.0f}%, " if fig.db_cpu_s else "")
            + f"others {100 * fig.others_cores:.0f}% (100% = one core busy)",
        ),
        (
            "5xx answers",
            f"workers {counts(fig.worker_5xx)}, submitter {counts(fig.submitter_5xx)} "
            "(every answer, retried ones included)",
        ),
        (
            "copies per job",
            f"{fig.copies / fig.jobs:.3f} ({fig.copies} assignments for {fig.jobs} jobs)"
            if fig.jobs
            else "-",
        ),
        (
            "leases lost",
            f"{fig.lost_total} tasks LOST on the server ({fig.lost_full_cycle} after the full cycle); "
            f"{fig.released} handed back as not held",
        ),
        (
            "checks",
            f"{fig.completed_on_server} of {fig.jobs} COMPLETED on the server, "
            f"{fig.duplicates} duplicate assignments, {fig.errors} worker errors"
            + (f" (refused reports {counts(fig.report_errors)})" if fig.report_errors else "")
            + f", {fig.requests} work requests, {fig.heartbeats} heartbeats"
            + ("; clean" if fig.clean else "; NOT CLEAN"),
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
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure the bare ceiling (bench/ceiling.py, before and after) and print the ratio to it",
    )
    p.add_argument(
        "--ceiling-requests",
        type=int,
        default=20_000,
        help="requests per ceiling measurement, by as many clients as --workers (default 20000)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes (server.processes; PostgreSQL only; the server CPU figure then "
        "counts the supervisor alone)",
    )
    p.add_argument(
        "--quorum",
        type=int,
        default=1,
        help="results that must agree per job (min_quorum; default 1: no replication); the "
        "simulated workers all return the same (empty) result, so every quorum is reached",
    )
    p.add_argument(
        "--replicas", type=int, default=1, help="copies sent at first (target_results, at least --quorum)"
    )
    p.add_argument(
        "--server-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a line for the server's xwserver.conf (repeatable), e.g. trust_after=0",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--keep", action="store_true", help="keep the server home folder (its path is printed)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.capacity < 1 or args.ceiling_requests < 1:
        p.error("--jobs, --workers, --capacity and --ceiling-requests must be at least 1")
    if not 1 <= args.bulk <= BULK_MAX_JOBS:
        p.error(f"--bulk must be between 1 and {BULK_MAX_JOBS}")
    return args


def with_server(
    program: str, workdir: Path, server: Deployment, keep: bool, body: Callable[[Deployment], None]
) -> bool:
    """``xwserver init`` and ``start`` ``server``, run ``body`` with it, stop it and all it
    started (``Deployment.close``); True when ``body`` ran to its end. A failure is printed
    with the tails of the server's (and any worker's) logs; ``workdir`` is removed unless
    ``keep`` or a failure (its path is printed then). Every benchmark's frame."""
    ok = False
    try:
        server.init()
        server.start_server()
        body(server)
        ok = True
    except (BenchError, XWError, AssertionError, subprocess.TimeoutExpired) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        print(server.describe(), file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
    finally:
        try:
            server.close()
        except Exception as exc:
            ok = False
            print(f"{program}: stopping the deployment: {exc}", file=sys.stderr)
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
    fig = Figures(jobs=args.jobs, workers=args.workers, capacity=args.capacity, db=describe_db(args.db))
    fig.db_url, fig.separate_reports = args.db, args.separate_reports
    try:
        if args.ceiling:  # nothing of ours runs meanwhile
            fig.ceilings.append(measure_ceiling(args.workers, args.ceiling_requests))
    except BenchError as exc:
        print(f"bench/dispatch.py: {exc}", file=sys.stderr)
        return 1
    try:
        settings: dict[str, object] = dict(server_settings(args.server_conf))
    except BenchError as exc:
        print(f"bench/dispatch.py: {exc}", file=sys.stderr)
        return 1
    if args.processes > 1:  # several server processes on one database (PostgreSQL)
        settings["server.processes"] = args.processes
    workdir = Path(tempfile.mkdtemp(prefix="xwbench-"))
    server = deployment(workdir, args.db, settings)
    if not with_server(
        "bench/dispatch.py", workdir, server, args.keep, lambda s: asyncio.run(run(args, s, fig))
    ):
        return 1
    try:
        if args.ceiling:  # again once the server is gone: two figures show how steady the machine was
            fig.ceilings.append(measure_ceiling(args.workers, args.ceiling_requests))
    except BenchError as exc:
        print(f"bench/dispatch.py: {exc}", file=sys.stderr)
        return 1
    print_table(fig, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
