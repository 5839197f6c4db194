"""Work requests: reports applied, unheld tasks released and PENDING jobs claimed for a
worker that may run them, in one short transaction; then a long-poll if none was there."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from xwcommon.errors import Forbidden
from xwcommon.levels import UserLevel
from xwcommon.platforms import ANY
from xwcommon.protocol import MAX_BYTES
from xwcommon.protocol.work import Assignment, DataRef, ReportOutcome, WorkAnswer, WorkRequest

from . import faults, hot, leases, lifecycle, metrics, validation
from . import signing as signed
from .access import Caller
from .db.engine import transaction
from .hosts import own_host
from .state import HostInfo, Server
from .wire import iso

log = logging.getLogger(__name__)


def worker_kind(caller: Caller) -> str:
    """Which jobs a worker identity may run (DESIGN: public, group and private workers)."""
    if caller.rights >= UserLevel.STANDARD:
        return "private"  # its owner's jobs only
    if caller.group_id is None:
        return "public"  # public jobs (executable by others)
    return "group"  # its group's jobs, and public jobs of its group's members


def _binary_rank(os_name: str, cpu: str) -> int:
    """Prefer the most specific binary: exact (os, cpu) over one 'any' over both."""
    return (os_name == ANY) + (cpu == ANY)


@dataclass(frozen=True)
class Resources:
    """What a work request says it has free now; None: not said (no filter on it)."""

    free_memory_bytes: int | None = None
    free_disk_bytes: int | None = None
    network: bool | None = None

    @property
    def fit(self) -> bool:
        return self.free_memory_bytes is not None or self.free_disk_bytes is not None

    @property
    def offline(self) -> bool:
        return self.network is False


async def claim(
    srv: Server,
    conn: AsyncConnection,
    caller: Caller,
    host: HostInfo,
    capacity: int,
    resources: Resources = Resources(),
) -> list[Assignment]:
    """Inside the caller's transaction: pick, mark RUNNING, insert the tasks, describe what to fetch."""
    now = time.time()
    started = time.perf_counter()
    lease_until = now + srv.settings.lease_s
    params = {
        "os": host.os,
        "cpu": host.cpu,
        "k": capacity,
        "b_owner_id": caller.id,
        "b_group_id": caller.group_id,
        "host_id": host.id,
        # distinct volunteers: a private worker's hosts are one volunteer's; a public or
        # group identity is shared by a fleet of volunteers (distinct hosts only)
        "b_volunteer": caller.id if caller.rights >= UserLevel.STANDARD else -1,
        # what the host offers jobs' requirements
        "b_cores": host.cores,
        "b_gpus": host.gpus,
        "b_tags": list(host.tags) or [hot.NO_TAG],
    }
    if resources.fit:  # one not said is no limit
        params["free_memory"] = (
            MAX_BYTES if resources.free_memory_bytes is None else resources.free_memory_bytes
        )
        params["free_disk"] = MAX_BYTES if resources.free_disk_bytes is None else resources.free_disk_bytes
    claimed = await lifecycle.claim(
        conn,
        backend=srv.backend,
        kind=worker_kind(caller),
        skip_locked=srv.skip_locked,
        fit=resources.fit,
        offline=resources.offline,
        inputs=not caller.is_super,
        alone=validation.sends_alone(host.valid_streak, trust_after=srv.settings.trust_after),
        params=params,
        host_id=host.id,
        host_uid=host.uid,
        now=now,
        lease_until=lease_until,
    )
    metrics.observe_claim(time.perf_counter() - started)
    if not claimed:
        return []
    jobs = [c.job for c in claimed]
    srv.queue_head = max(srv.queue_head or 0.0, max(j.share_key for j in jobs))
    binaries: dict[int, tuple[int, DataRef, str]] = {}
    missing = []
    for app_id in {j.app_id for j in jobs}:
        cached = srv.binaries.get(app_id, host.os, host.cpu, now)
        if cached is None:
            missing.append(app_id)
        else:
            binaries[app_id] = cached
    if missing:
        rows = await conn.execute(hot.BINARIES, {"app_ids": missing, "os": host.os, "cpu": host.cpu})
        for app_id, os_name, cpu, d_uid, sha, size, app_name in rows:
            rank = _binary_rank(os_name, cpu)
            if app_id not in binaries or rank < binaries[app_id][0]:
                binaries[app_id] = (rank, DataRef(data_uid=d_uid, sha256=sha, size=size), app_name)
        # what only a cache miss reads: each binary's signature, platform and URL
        details = await conn.execute(signed.BINARY_DETAILS, {"app_ids": missing})
        for app_id, os_name, cpu, d_uid, signature, url in details:
            got = binaries.get(app_id)
            if got is not None and got[1].data_uid == d_uid:
                ref = DataRef(
                    data_uid=d_uid,
                    sha256=got[1].sha256,
                    size=got[1].size,
                    url=url,
                    signature=signature,
                    os=os_name,
                    cpu=cpu,
                )
                binaries[app_id] = (got[0], ref, got[2])
        for app_id in missing:
            srv.binaries.put(app_id, host.os, host.cpu, binaries[app_id], now)
    input_ids = {i for j in jobs for i in (j.stdin_data_id, j.env_data_id) if i is not None}
    inputs: dict[int, DataRef] = {}
    if input_ids:
        for d_id, d_uid, sha, size, url in await conn.execute(signed.INPUTS, {"ids": list(input_ids)}):
            inputs[d_id] = DataRef(data_uid=d_uid, sha256=sha, size=size, url=url)
    lease_text = iso(lease_until) or ""
    return [
        Assignment(
            task_uid=c.task_uid,
            job_uid=c.job.uid,
            seq=c.seq,
            app_name=binaries[c.job.app_id][2],
            args=json.loads(c.job.args),
            lease_expires_at=lease_text,
            binary=binaries[c.job.app_id][1],
            stdin=inputs.get(c.job.stdin_data_id) if c.job.stdin_data_id else None,
            env=inputs.get(c.job.env_data_id) if c.job.env_data_id else None,
            needs_network=bool(c.job.needs_network),
            min_memory_bytes=c.job.min_memory_bytes,
            min_disk_bytes=c.job.min_disk_bytes,
        )
        for c in claimed
    ]


#: the longest "come back after" a worker is told, in seconds
MAX_COME_BACK_S = 600.0


class AwayWorkers:
    """How many workers were told to come back and are not due yet: a count per second of
    their return, so the figure costs a few hundred integers whatever the fleet's size."""

    def __init__(self) -> None:
        self._due: dict[int, int] = {}
        self._count = 0
        self._purged_at = 0

    def add(self, due_at: float) -> None:
        key = int(due_at)
        self._due[key] = self._due.get(key, 0) + 1
        self._count += 1

    def count(self, now: float) -> int:
        second = int(now)
        if second > self._purged_at:
            for key in [k for k in self._due if k < second]:
                self._count -= self._due.pop(key)
            self._purged_at = second
        return self._count


_away: weakref.WeakKeyDictionary[Server, AwayWorkers] = weakref.WeakKeyDictionary()


def away_workers(srv: Server) -> AwayWorkers:
    """The workers this process told to come back (one tally per server process)."""
    away = _away.get(srv)
    if away is None:
        away = _away[srv] = AwayWorkers()
    return away


def come_back_s(srv: Server, *, busy: bool = False, now: float | None = None) -> float:
    """When a worker that found no room should ask again, BOINC's way: the workers turned
    away come back at ``max_waiting_requests / come_back_s`` requests a second in all (100
    by default), however many they are. So the delay is ``come_back_s`` on average while
    few are away, and grows with their number (9,000 idle workers away: 90 s), up to
    MAX_COME_BACK_S; jittered by ±50% so a fleet turned away together does not return
    together. ``busy``: turned away by admission (the database is busy this instant, not
    the queue empty): a quarter of that."""
    now = time.time() if now is None else now
    away = away_workers(srv)
    rate = max(1, srv.settings.max_waiting_requests) / max(0.1, srv.settings.come_back_s)
    mean = min(MAX_COME_BACK_S, max(srv.settings.come_back_s, away.count(now) / rate))
    if busy:
        mean *= 0.25
    delay = round(max(0.5, mean * random.uniform(0.5, 1.5)), 1)
    away.add(now + delay)
    return delay


#: a worker told to come back after this many seconds or more gets its connection closed:
#: its transport would drop it itself, idle that long (xwcommon.transport keeps idle
#: connections 60 s). A shorter absence keeps it: a reconnection is a TLS handshake and a
#: new connection's setup, 2-3 ms of the server's event loop, and a fleet turned away by
#: a few seconds at a time then reconnected faster than the server could accept
#: (10,000 simulated workers with a 5 s threshold: about 500 connections a second, the
#: kernel's queue of new connections full, workers timing out on connect: bench/fleet.py)
CLOSE_IDLE_AFTER_S = 60.0


def leaves_idle(answer: WorkAnswer) -> bool:
    """Whether the answer sends its worker away for long enough to close its connection."""
    return (
        answer.retry_after_s is not None
        and answer.retry_after_s >= CLOSE_IDLE_AFTER_S
        and not answer.assignments
        and not answer.reported
    )


#: re-checks of the database by all waiting work requests together, per second at most
MAX_RECHECKS_PER_S = 100.0


def recheck_s(srv: Server) -> float:
    """How long a waiting work request sleeps before it looks at the database again.

    A submission through this process wakes waiters at once (the notifier); the re-check
    is for jobs that arrive otherwise: through another server process sharing the
    database, or made PENDING by something this process did not tell the notifier about.
    SQLite serves one process, and everything that makes a job PENDING here notifies: a
    re-check every few seconds is a safety net only. Elsewhere the waiters together re-check
    at most MAX_RECHECKS_PER_S times a second: a thousand waiters re-checking twice a
    second each kept the database too busy to serve the heartbeats.
    """
    base = srv.settings.work_request_recheck_s
    if srv.backend == "sqlite":
        base = max(base, 5.0)
    return max(base, srv.notifier.waiting / MAX_RECHECKS_PER_S)


def _always() -> bool:
    return True


async def request_work(
    srv: Server, caller: Caller, msg: WorkRequest, *, connected: Callable[[], bool] = _always
) -> WorkAnswer:
    """Apply the reports, release what the worker no longer holds, claim: one transaction.
    Then, if nothing was claimed, long-poll: wait for a submission (or the re-check timer)
    and claim again.

    ``connected`` tells whether the worker is still there: jobs claimed for a request
    whose worker went away meanwhile are handed back at once instead of waiting for
    their lease to expire (which would also spend a retry).
    """
    caller.require(UserLevel.WORKER, "requesting work")
    host = await own_host(srv, caller, msg.host_uid)
    resources = Resources(msg.free_memory_bytes, msg.free_disk_bytes, msg.network)
    inlines = await leases.store_inlines(srv, msg.reports)

    async def first(conn: AsyncConnection) -> tuple[list[ReportOutcome], int, list[str], list[Assignment]]:
        now = time.time()
        reported: list[ReportOutcome] = []
        released = 0
        cancel: list[str] = []
        if msg.reports or msg.held is not None:
            live = await lifecycle.live_tasks(conn, host.id, lock=srv.skip_locked)
            if msg.reports:
                reported = await leases.apply_reports(
                    conn, live, msg.reports, inlines, now, srv, host_uid=host.uid
                )
            if msg.held is not None:
                keep = set(msg.held) | {r.task_uid for r in msg.reports if r.task_uid}
                released = await lifecycle.release(conn, [t for u, t in live.items() if u not in keep], now)
                # a heartbeat's work (a worker holding no task sends none while this is out)
                held = set(msg.held)
                await lifecycle.renew(
                    conn, [t.id for u, t in live.items() if u in held], now + srv.settings.lease_s
                )
                await conn.execute(hot.HOST_SEEN, {"host_id": host.id, "now": now})
                cancel = [u for u in msg.held if u not in live]
        got = await claim(srv, conn, caller, host, msg.capacity, resources) if admitted else []
        return reported, released, cancel, got

    # Admission: a crowd of work requests queued on the pool would starve heartbeats and
    # reports (whose leases run meanwhile), and wait there beyond db_wait_s. A request that
    # only asks for work is told to come back shortly; one that carries reports is always
    # let in (it completes jobs), but past the cap its reports are all it does: it is told
    # to come back for work. So the work requests queued on the pool stay about the cap,
    # however many workers finish jobs at once (a fleet of short jobs keeps finishing).
    admitted = srv.work_in_flight < srv.settings.max_work_in_flight
    srv.work_requests += 1
    if not msg.reports and not admitted:
        return WorkAnswer(retry_after_s=come_back_s(srv, busy=True))
    if admitted:
        srv.work_in_flight += 1
    try:
        # without reports, losing this transaction in a database crash loses nothing a user saw
        reported, released, cancel, got = await transaction(srv.engine, first, durable=bool(msg.reports))
    finally:
        if admitted:
            srv.work_in_flight -= 1
    srv.queue_comparisons()
    if msg.reports:
        faults.point(faults.AFTER_REPORT_COMMIT)
    if released:
        log.info("host %s: %d task(s) it does not hold handed back", host.uid, released)
        srv.notifier.notify(released)
    if not admitted:
        return WorkAnswer(
            reported=reported, released=released, cancel=cancel, retry_after_s=come_back_s(srv, busy=True)
        )
    if not got and msg.wait_s > 0:
        if srv.notifier.waiting >= srv.settings.max_waiting_requests:
            # no room to wait: come back later (BOINC's request delay), at once a
            # definite answer rather than a connection held open
            return WorkAnswer(
                reported=reported, released=released, cancel=cancel, retry_after_s=come_back_s(srv)
            )
        got = await _wait_and_claim(srv, caller, host, msg, connected, resources)
    else:
        got = await _deliverable(srv, caller, host, got, connected)
    return WorkAnswer(assignments=got, reported=reported, released=released, cancel=cancel)


async def _claim_once(
    srv: Server, caller: Caller, host: HostInfo, capacity: int, resources: Resources
) -> list[Assignment]:
    async def work(conn: AsyncConnection) -> list[Assignment]:
        return await claim(srv, conn, caller, host, capacity, resources)

    return await transaction(srv.engine, work, durable=False)


async def _deliverable(
    srv: Server, caller: Caller, host: HostInfo, got: list[Assignment], connected: Callable[[], bool]
) -> list[Assignment]:
    """Claimed assignments, unless the worker went away or the host was disabled meanwhile
    (then they are handed back at once)."""
    if not got:
        return got
    faults.point(faults.AFTER_CLAIM_COMMIT)
    if not connected():
        await leases.release_tasks(srv, host, [a.task_uid for a in got])
        return []
    try:  # disabled while claiming: hand the claim back (hosts.set_enabled sweeps again)
        await own_host(srv, caller, host.uid)
    except Forbidden:
        await leases.release_tasks(srv, host, [a.task_uid for a in got])
        raise
    return got


async def _wait_and_claim(
    srv: Server,
    caller: Caller,
    host: HostInfo,
    msg: WorkRequest,
    connected: Callable[[], bool],
    resources: Resources,
) -> list[Assignment]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + msg.wait_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or srv.notifier.closing:
            return []
        if await srv.notifier.wait(min(recheck_s(srv), remaining), host.id):
            return []  # the worker is stopping: it asked to hear no more
        if not connected():
            srv.notifier.notify(1)  # pass a wake-up this request may have taken to a live one
            return []
        host = await own_host(srv, caller, host.uid)  # disabled while waiting: 403
        got = await _deliverable(
            srv, caller, host, await _claim_once(srv, caller, host, msg.capacity, resources), connected
        )
        if got:
            return got
