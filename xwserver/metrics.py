"""Prometheus metrics at ``/metrics`` (the text exposition format, ``prometheus_client``).

What is counted where:

- requests by route template and status code, bytes in and out, login failures, and the
  latency of work requests and reports: :func:`middleware`, on every request;
- tasks assigned and completed: the work routes, from their answers
  (:func:`work_answered`, :func:`report_answered`);
- tasks lost and the claim's own latency: :func:`tasks_lost` and :func:`observe_claim`,
  called by the lease reaper and the claim;
- waits for a database connection: :func:`watch_pool` times the pool's getter;
- jobs by status, hosts by state, tasks by status and bytes stored: :class:`DatabaseCounts`,
  read from the database at most once per :data:`COUNTS_TTL_S` whatever the scrape rate.

Access: ``metrics.token`` (a bearer token of its own, compared in constant time) or
``metrics.allow`` (addresses and networks); with neither, ``/metrics`` answers 403. A
user's token is never accepted here: a scraper's file holds no password of anyone.

Several server processes (``server.processes``): the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at ``var/metrics/`` (emptied at each start) before it starts
its children, and every process writes its counters and histograms there; whichever
process answers a scrape adds them all up (``prometheus_client``'s multiprocess mode), so
a scrape sees the whole server whichever process the kernel hands it to. The counts from
the database are the same from every process.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from xwcommon import defaults
from xwcommon.status import JobStatus, TaskStatus

from .api.http import Handler, error_response
from .db.models import Data, Host, Job, Task
from .state import Server

log = logging.getLogger(__name__)

#: the path Prometheus scrapes
METRICS_PATH = "/metrics"
#: the database is counted at most this often, however often scrapers come
COUNTS_TTL_S = 10.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: latency buckets, seconds: Prometheus' defaults plus 25 ms and 50 ms steps where the
#: work routes answer on a healthy server
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HOST_STATES = ("active", "suspended", "lost", "disabled")

REQUESTS = Counter(
    "xw_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "code"],
)
HTTP_BYTES = Counter("xw_http_bytes", "Bytes of HTTP bodies received (in) and sent (out)", ["direction"])
LOGIN_FAILURES = Counter("xw_login_failures", "Logins refused (wrong login, password or host key)")
WORK_REQUEST_SECONDS = Histogram(
    "xw_work_request_seconds",
    "Time to answer a work request, long-poll wait included, by whether it assigned work",
    ["outcome"],
    buckets=LATENCY_BUCKETS_S,
)
CLAIM_SECONDS = Histogram(
    "xw_claim_seconds",
    "Time of one claim transaction (picking and assigning jobs)",
    buckets=LATENCY_BUCKETS_S,
)
REPORT_SECONDS = Histogram(
    "xw_report_seconds", "Time to take a task's final report", buckets=LATENCY_BUCKETS_S
)
TASKS_ASSIGNED = Counter("xw_tasks_assigned", "Tasks given to workers")
TASKS_COMPLETED = Counter("xw_tasks_completed", "Tasks reported COMPLETED and accepted")
TASKS_FAILED = Counter("xw_tasks_failed", "Tasks reported ERROR and accepted")
TASKS_LOST = Counter("xw_tasks_lost", "Tasks whose lease expired (LOST)")
POOL_WAIT_SECONDS = Histogram(
    "xw_db_pool_wait_seconds",
    "Time a request waited for a database connection from the pool",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
)
POOL_TIMEOUTS = Counter("xw_db_pool_timeouts", "Waits for a database connection that gave up (503)")

_WORK_REQUEST = f"{defaults.API_PREFIX}/work/request"
_REPORT = f"{defaults.API_PREFIX}/work/tasks/{{uid}}/report"
_LOGINS = {f"{defaults.API_PREFIX}/login", f"{defaults.API_PREFIX}/login/host", "/login"}


# -- hooks the domain calls -----------------------------------------------------------------------------
def tasks_assigned(n: int) -> None:
    if n > 0:
        TASKS_ASSIGNED.inc(n)


def tasks_completed(n: int) -> None:
    if n > 0:
        TASKS_COMPLETED.inc(n)


def tasks_failed(n: int) -> None:
    if n > 0:
        TASKS_FAILED.inc(n)


def tasks_lost(n: int) -> None:
    """The lease reaper's hook: ``n`` tasks just went LOST."""
    if n > 0:
        TASKS_LOST.inc(n)


def observe_claim(seconds: float) -> None:
    """The claim's hook: one claim transaction took ``seconds``."""
    CLAIM_SECONDS.observe(seconds)


def login_failed() -> None:
    LOGIN_FAILURES.inc()


def reported(outcomes: Iterable[tuple[str, str | None]]) -> None:
    """Reports the server took: (the status reported, the error it answered or None)."""
    for status, error in outcomes:
        if error is not None:
            continue
        if status == "COMPLETED":
            TASKS_COMPLETED.inc()
        elif status == "ERROR":
            TASKS_FAILED.inc()


def work_answered(answer: Any, statuses: dict[str, str]) -> None:
    """A work request's answer: its assignments and the reports it took (``statuses``: the
    status each reported task was reported with, by task UID)."""
    tasks_assigned(len(answer.assignments))
    reported((statuses.get(o.task_uid, ""), o.error) for o in answer.reported)


# -- the database's counts ----------------------------------------------------------------------------
class DatabaseCounts(Collector):
    """Jobs by status, hosts by state, tasks by status and bytes stored, from one round of
    ``GROUP BY`` queries kept for :data:`COUNTS_TTL_S`: a scraper every second costs the
    database one round per 10 s, and none while nobody scrapes."""

    def __init__(self, srv: Server, *, ttl_s: float = COUNTS_TTL_S) -> None:
        self._srv = srv
        self._ttl_s = ttl_s
        self._at = -float("inf")
        self._families: list[Metric] = []
        self._lock = asyncio.Lock()

    async def refresh(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        async with self._lock:
            if now - self._at < self._ttl_s:
                return
            self._families = await self._count()
            self._at = time.monotonic()

    async def _count(self) -> list[Metric]:
        srv, wall = self._srv, time.time()
        from .hosts import lost_after_s

        lost_before = wall - lost_after_s(srv)
        state = case(
            (Host.enabled.is_(False), "disabled"),
            (Host.last_seen_at < lost_before, "lost"),
            (Host.activation_state == "suspended", "suspended"),
            else_="active",
        )
        async with srv.sessions() as session:
            jobs = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
            tasks = dict(
                (await session.execute(select(Task.status, func.count()).group_by(Task.status))).all()
            )
            hosts: dict[str, int] = dict(
                (await session.execute(select(state, func.count()).group_by(state))).all()
            )
            stored = (await session.execute(select(func.coalesce(func.sum(Data.size), 0)))).scalar_one()
        job_family = GaugeMetricFamily("xw_jobs", "Jobs by status", labels=["status"])
        for s in JobStatus:
            job_family.add_metric([s.value], jobs.get(s.value, 0))
        task_family = GaugeMetricFamily("xw_tasks", "Tasks on record by status", labels=["status"])
        for t in TaskStatus:
            task_family.add_metric([t.value], tasks.get(t.value, 0))
        host_family = GaugeMetricFamily("xw_hosts", "Worker hosts by state", labels=["state"])
        for h in HOST_STATES:
            host_family.add_metric([h], hosts.get(h, 0))
        stored_family = GaugeMetricFamily(
            "xw_data_stored_bytes", "Bytes of data on record (inputs and results)"
        )
        stored_family.add_metric([], int(stored or 0))
        free_family = GaugeMetricFamily("xw_data_store_free_bytes", "Free bytes on the data store's disk")
        free_family.add_metric([], _free_bytes(srv.settings.data_dir))
        return [job_family, task_family, host_family, stored_family, free_family]

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


# -- the pool ---------------------------------------------------------------------------------------------
def watch_pool(engine: Any) -> None:
    """Time every wait for a connection of ``engine``'s pool (its getter runs when a
    transaction starts; a free connection costs microseconds, a saturated pool db_wait_s)."""
    pool = engine.sync_engine.pool
    inner = getattr(pool, "_do_get", None)
    if inner is None or getattr(inner, "_xw_timed", False):
        return

    def timed() -> Any:
        started = time.perf_counter()
        try:
            return inner()
        except Exception as exc:
            if type(exc).__name__ == "TimeoutError":
                POOL_TIMEOUTS.inc()
            raise
        finally:
            POOL_WAIT_SECONDS.observe(time.perf_counter() - started)

    timed._xw_timed = True  # type: ignore[attr-defined]
    pool._do_get = timed


# -- the endpoint -----------------------------------------------------------------------------------------
class Access:
    """Who may read ``/metrics``: the holder of ``metrics.token``, or an address of
    ``metrics.allow``."""

    def __init__(self, token: str, allow: str) -> None:
        self._token = token.encode()
        self._networks = [
            ipaddress.ip_network(a.strip(), strict=False)
            for a in allow.replace(" ", ",").split(",")
            if a.strip()
        ]

    @property
    def configured(self) -> bool:
        return bool(self._token or self._networks)

    def allows(self, remote: str | None, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        if (
            self._token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self._token)
        ):
            return True
        if remote and self._networks:
            try:
                address = ipaddress.ip_address(remote.split("%", 1)[0])
            except ValueError:
                return False
            return any(address in n for n in self._networks)
        return False


def check_settings(token: str, allow: str) -> Access:
    from xwcommon.errors import ConfigError

    try:
        return Access(token, allow)
    except ValueError as exc:
        raise ConfigError(
            f"metrics.allow: {exc}; give addresses or networks, e.g. 127.0.0.1,10.0.0.0/8"
        ) from None


METRICS_KEY = web.AppKey("metrics", DatabaseCounts)
ACCESS_KEY = web.AppKey("metrics_access", Access)


async def metrics_handler(request: web.Request) -> web.Response:
    access = request.app[ACCESS_KEY]
    if not access.configured:
        return error_response(
            403, "forbidden", "metrics are off: set metrics.token or metrics.allow in conf/xwserver.conf"
        )
    if not access.allows(request.remote, request.headers.get("Authorization", "")):
        return error_response(
            403, "forbidden", "not allowed to read metrics: send the metrics token (metrics.token)"
        )
    counts = request.app[METRICS_KEY]
    await counts.refresh()
    body = await asyncio.to_thread(_exposition, counts)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _exposition(counts: DatabaseCounts) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    registry.register(counts)
    try:
        return generate_latest(registry)
    finally:
        registry.unregister(counts)


def _route_of(request: web.Request) -> str:
    """The route template (``/api/v1/jobs/{uid}``), never the raw path: one series per route,
    however many UIDs clients send. Paths no route knows count as ``other``."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "other"
    canonical: str = resource.canonical
    return canonical


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    code = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        elapsed_s = time.perf_counter() - started
        route = _route_of(request)
        REQUESTS.labels(request.method, route, str(code)).inc()
        if request.content_length:
            HTTP_BYTES.labels("in").inc(request.content_length)
        sent = getattr(response, "body_length", 0) if response is not None else 0
        if sent:
            HTTP_BYTES.labels("out").inc(sent)
        if route in _LOGINS and request.method == "POST" and code == 401:
            LOGIN_FAILURES.inc()
        elif route == _REPORT and code < 400:
            REPORT_SECONDS.observe(elapsed_s)


def observe_work_request(elapsed_s: float, assigned: int) -> None:
    WORK_REQUEST_SECONDS.labels("assigned" if assigned else "empty").observe(elapsed_s)


def install(app: web.Application, srv: Server) -> None:
    """``/metrics`` on ``app``, its counters fed by :func:`middleware` (which ``app`` lists)."""
    app[METRICS_KEY] = DatabaseCounts(srv)
    app[ACCESS_KEY] = check_settings(srv.settings.metrics_token, srv.settings.metrics_allow)
    app.router.add_get(METRICS_PATH, metrics_handler)
    watch_pool(srv.engine)


# -- several processes -----------------------------------------------------------------------------------
def prepare_multiprocess(var_dir: Path) -> Path:
    """Before a supervisor starts its children: an empty ``var/metrics/`` that they all
    write to (set in the environment they inherit)."""
    folder = var_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def process_dead(pid: int) -> None:
    """A child process ended: its live gauges no longer count (counters and histograms stay)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
