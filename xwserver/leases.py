"""Live tasks: heartbeats, results, final reports, hand-backs and the lease reaper.

The statements that change a status are :mod:`lifecycle`'s; this module decides which
tasks they apply to. A task is live while it is RUNNING on the host that holds it: every
report, result and renewal checks that in the same transaction, so a lost worker that
reports after its job was rescheduled changes nothing (it is told ``task_gone``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from xwcommon.errors import BadRequest, HostDisabled, IntegrityError, NotFound, TaskGone
from xwcommon.levels import PRIVATE, UserLevel
from xwcommon.protocol.work import (
    INLINE_RESULT_MAX_BYTES,
    Accounting,
    Heartbeat,
    HeartbeatAnswer,
    Release,
    Released,
    Report,
    ReportAnswer,
    ReportOutcome,
    ResultStored,
    TaskReport,
)
from xwcommon.status import DataStatus, TaskStatus
from xwcommon.uri import new_uid, parse_uid

from . import hot, lifecycle, metrics, validation
from .access import Caller
from .data import store_upload
from .db.engine import transaction
from .db.models import App, Data, Job
from .hosts import own_host
from .lifecycle import Finish, LiveTask
from .state import HostInfo, Server

log = logging.getLogger(__name__)


async def heartbeat(srv: Server, caller: Caller, msg: Heartbeat) -> HeartbeatAnswer:
    """Renew the leases of the tasks the heartbeat names, and only those; release the host's
    other tasks the worker must have known of (``seq`` up to ``seen_seq``): their assignment
    never reached it. Named tasks that are not live come back in ``cancel``."""
    caller.require(UserLevel.WORKER, "heartbeats")
    host = await own_host(srv, caller, msg.host_uid)
    now = time.time()
    named = set(msg.task_uids)
    activation = msg.activation

    async def work(conn: AsyncConnection) -> tuple[list[str], int]:
        live = await lifecycle.live_tasks(conn, host.id, lock=False)
        await lifecycle.renew(
            conn, [t.id for uid, t in live.items() if uid in named], now + srv.settings.lease_s
        )
        released = 0
        if msg.seen_seq is not None:
            unnamed = [t for uid, t in live.items() if uid not in named and t.id <= msg.seen_seq]
            released = await lifecycle.release(conn, unnamed, now)
        if activation is None:
            await conn.execute(hot.HOST_SEEN, {"host_id": host.id, "now": now})
        else:  # still one UPDATE of the host
            await conn.execute(
                hot.HOST_SEEN_ACTIVATION,
                {
                    "host_id": host.id,
                    "now": now,
                    "since": now,
                    "state": activation.state,
                    "detail": activation.detail,
                },
            )
        return [u for u in msg.task_uids if u not in live], released

    cancel, released = await transaction(srv.engine, work)
    if released:
        log.info("host %s: %d task(s) it does not hold handed back", host.uid, released)
        srv.notifier.notify(released)
    return HeartbeatAnswer(lease_s=srv.settings.lease_s, cancel=cancel, released=released)


async def _task_of_caller(conn: AsyncConnection, caller: Caller, task_uid: str, *, lock: bool) -> LiveTask:
    """The caller's live task: 404 if no host of the caller's holds it, 403 if its host is
    disabled, ``task_gone`` (409) if it ended (its lease expired, its job went elsewhere)."""
    uid = parse_uid(task_uid, "task_uid")
    row = (await conn.execute(hot.TASK_OF_LOCKED if lock else hot.TASK_OF, {"uid": uid})).first()
    if row is None or row.host_owner_id != caller.id:
        raise NotFound(f"no task {uid} held by {caller.login}")
    if caller.host_uid is not None and row.host_uid != caller.host_uid:  # a host credential's login
        raise NotFound(f"no task {uid} held by host {caller.host_uid}")
    if not row.host_enabled:
        raise HostDisabled(f"host {row.host_uid} is disabled by an administrator")
    if row.status != TaskStatus.RUNNING:
        raise TaskGone(f"task {uid} is {row.status}, no longer live; its job went elsewhere")
    return LiveTask(row.id, uid, row.job_id, row.job_uid, row.job_owner_id, row.min_quorum, row.sent)


async def upload_result(
    srv: Server,
    caller: Caller,
    task_uid: str,
    chunks: AsyncIterator[bytes],
    *,
    sha256: str | None,
    size: int | None,
) -> ResultStored:
    """Store a task's result archive; it belongs to the job's owner (delegation)."""
    caller.require(UserLevel.WORKER, "uploading results")
    async with srv.engine.connect() as conn:
        task = await _task_of_caller(conn, caller, task_uid, lock=False)
    data = await store_upload(
        srv,
        caller,
        chunks,
        name=f"ResultsOf_{task.job_uid}.zip",
        owner_id=task.job_owner_id,
        access_rights=PRIVATE,
        expected_sha256=sha256,
        expected_size=size,
        task_id=task.id,
    )
    return ResultStored(result_uid=data.uid)


def _accounting(rep: Report) -> dict[str, float | int | None]:
    return msgspec.structs.asdict(rep.accounting or Accounting())


@dataclass
class _Inline:
    """An inline result already in the store, waiting for its data row."""

    uid: str
    sha256: str
    size: int


async def _store_inline(srv: Server, rep: Report) -> _Inline | None:
    """Put a report's inline result in the store (before the transaction: a file nothing
    references yet is the collector's if the transaction never commits)."""
    if rep.result_inline is None:
        return None
    try:
        content = base64.b64decode(rep.result_inline.content_b64, validate=True)
    except ValueError:
        raise BadRequest('"result_inline.content_b64" is not valid base64') from None
    if len(content) > INLINE_RESULT_MAX_BYTES:
        raise BadRequest(
            f'"result_inline" holds at most {INLINE_RESULT_MAX_BYTES} bytes; upload bigger results first'
        )
    if hashlib.sha256(content).hexdigest() != rep.result_inline.sha256:
        raise IntegrityError("the inline result does not match its sha256; send it again")
    sha, size = await srv.store.put_bytes(content)
    return _Inline(new_uid(), sha, size)


_INSERT_RESULT = insert(Data)
_RESULT_IDS = select(Data.uid, Data.id, Data.task_id).where(Data.uid.in_(bindparam("uids", expanding=True)))


async def _result_ids(
    conn: AsyncConnection, items: Sequence[tuple[LiveTask, Report, _Inline | None]], now: float
) -> tuple[dict[str, int | None], dict[str, str]]:
    """The data id of each report's result, by task uid, and the reports refused, by task uid:
    a ``result_uid`` that names no result of that very task. Checked before the inline
    results get their data rows, so a refusal leaves nothing half-written."""
    named = [rep.result_uid for _t, rep, inline in items if inline is None and rep.result_uid]
    found = {}
    if named:
        found = {r.uid: (r.id, r.task_id) for r in await conn.execute(_RESULT_IDS, {"uids": named})}
    ids: dict[str, int | None] = {}
    refused: dict[str, str] = {}
    for task, rep, inline in items:
        if inline is None and rep.result_uid:
            hit = found.get(rep.result_uid)
            if hit is None or hit[1] != task.id:
                refused[task.uid] = (
                    f"task {task.uid}: result_uid does not name a result uploaded for this task"
                )
            else:
                ids[task.uid] = hit[0]
        elif inline is None:
            ids[task.uid] = None
    rows = [
        {
            "uid": inline.uid,
            "name": f"ResultsOf_{task.job_uid}.zip",
            "size": inline.size,
            "sha256": inline.sha256,
            "status": DataStatus.AVAILABLE.value,
            "owner_id": task.job_owner_id,
            "access_rights": PRIVATE,
            "created_at": now,
            "task_id": task.id,
        }
        for task, _rep, inline in items
        if inline is not None
    ]
    if rows:
        await conn.execute(_INSERT_RESULT, rows)
        stored = {r.uid: r.id for r in await conn.execute(_RESULT_IDS, {"uids": [r["uid"] for r in rows]})}
        ids.update({task.uid: stored[inline.uid] for task, _rep, inline in items if inline is not None})
    return ids, refused


_RESULT_SHAS = select(Data.id, Data.sha256).where(Data.id.in_(bindparam("ids", expanding=True)))
_VOLATILE_OF = (
    select(Job.id, App.volatile, App.comparator_data_id)
    .join(App, App.id == Job.app_id)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
)


async def _digests(
    srv: Server, conn: AsyncConnection, items: Sequence[tuple[LiveTask, Report, int | None]]
) -> dict[str, str]:
    """What each completed copy of a replicated job hashes to (validation.result_digest),
    by task uid; read from the store in a thread (replicated jobs only)."""
    wanted = [(t, result_id) for t, rep, result_id in items if t.replicated and rep.status == "COMPLETED"]
    if not wanted:
        return {}
    ids = [r for _t, r in wanted if r is not None]
    shas = dict((await conn.execute(_RESULT_SHAS, {"ids": ids})).all()) if ids else {}
    volatile: dict[int, tuple[str, ...]] = {}
    compared: set[int] = set()  # jobs whose app has a comparison program (judged later)
    for job_id, text, comparator in await conn.execute(
        _VOLATILE_OF, {"ids": sorted({t.job_id for t, _ in wanted})}
    ):
        volatile[job_id] = validation.parse_volatile(text)
        if comparator is not None:
            compared.add(job_id)
    out = {}
    for task, result_id in wanted:
        if task.job_id in compared:
            srv.compare_after_commit.append(task.id)
            continue
        if result_id is None or result_id not in shas:
            out[task.uid] = validation.NO_RESULT
            continue
        path = srv.store.path_of(shas[result_id])
        out[task.uid] = await asyncio.to_thread(validation.result_digest, path, volatile.get(task.job_id, ()))
    return out


async def apply_reports(
    conn: AsyncConnection,
    live: dict[str, LiveTask],
    reports: Sequence[TaskReport],
    inlines: Sequence[_Inline | None],
    now: float,
    srv: Server | None = None,
    *,
    host_uid: str | None = None,
) -> list[ReportOutcome]:
    """Finish the reported tasks that are live on the host (``live``, read locked in this
    transaction), as sets; each report gets its own outcome (``task_gone`` for the others)."""
    outcomes: list[ReportOutcome] = []
    items: list[tuple[LiveTask, Report, _Inline | None]] = []
    seen: set[str] = set()
    for rep, inline in zip(reports, inlines, strict=True):
        uid = rep.task_uid
        task = live.get(uid)
        if task is None or uid in seen:
            outcomes.append(
                ReportOutcome(
                    task_uid=uid, error=TaskGone.code, message=f"task {uid} is no longer live on this host"
                )
            )
            continue
        seen.add(uid)
        items.append((task, rep, inline))
    if not items:
        return outcomes
    # one bad result_uid is that report's error, not the others'
    result_ids, refused = await _result_ids(conn, items, now)
    outcomes += [
        ReportOutcome(task_uid=uid, error=BadRequest.code, message=why) for uid, why in refused.items()
    ]
    items = [item for item in items if item[0].uid not in refused]
    digests = (
        await _digests(srv, conn, [(t, rep, result_ids[t.uid]) for t, rep, _ in items])
        if srv is not None
        else {}
    )
    finishes = [
        Finish(
            task=task,
            status=TaskStatus(rep.status),
            exit_code=rep.exit_code,
            message=rep.message,
            result_id=result_ids[task.uid],
            accounting=_accounting(rep),
            digest=digests.get(task.uid),
        )
        for task, rep, _inline in items
    ]
    moved: set[int] = set()
    judged = await lifecycle.finish(conn, finishes, now, moved, host_uid)
    if srv is not None and moved:  # their records of valid results changed: read them again
        srv.hosts.drop_ids(moved)
    outcomes += [
        ReportOutcome(task_uid=f.task.uid, job_status=judged.get(f.task.job_id, f.job_status).value)
        for f in finishes
    ]
    return outcomes


async def store_inlines(srv: Server, reports: Sequence[Report]) -> list[_Inline | None]:
    return [await _store_inline(srv, rep) for rep in reports]


async def report(srv: Server, caller: Caller, task_uid: str, rep: Report) -> ReportAnswer:
    """One report alone (``POST /work/tasks/{uid}/report``): errors are the call's."""
    caller.require(UserLevel.WORKER, "reporting results")
    uid = parse_uid(task_uid, "task_uid")
    inline = await _store_inline(srv, rep)
    now = time.time()

    async def work(conn: AsyncConnection) -> list[ReportOutcome]:
        task = await _task_of_caller(conn, caller, uid, lock=srv.skip_locked)
        return await apply_reports(
            conn, {uid: task}, [TaskReport(**msgspec.structs.asdict(rep), task_uid=uid)], [inline], now, srv
        )

    [outcome] = await transaction(srv.engine, work)
    srv.queue_comparisons()
    if outcome.error == TaskGone.code:
        raise TaskGone(outcome.message or "the task is no longer live")
    if outcome.error is not None:
        raise BadRequest(outcome.message or outcome.error)
    return ReportAnswer(job_status=outcome.job_status or "")


async def release(srv: Server, caller: Caller, msg: Release) -> Released:
    """A stopping worker hands tasks back: their jobs return to PENDING, no retry spent."""
    caller.require(UserLevel.WORKER, "handing tasks back")
    host = await own_host(srv, caller, msg.host_uid)
    if msg.withdraw:
        srv.notifier.withdraw(host.id)
    return Released(released=await release_tasks(srv, host, msg.task_uids))


async def release_tasks(srv: Server, host: HostInfo, uids: Sequence[str]) -> int:
    """Release these live tasks of the host (the others are left alone)."""
    if not uids:
        return 0

    async def work(conn: AsyncConnection) -> int:
        return await lifecycle.release_host(conn, host.id, only=uids)

    released = await transaction(srv.engine, work)
    srv.notifier.notify(released)
    return released


async def reap(srv: Server, *, now: float | None = None, batch: int = 1000) -> int:
    """Expired leases: task LOST; job back to PENDING (retry+1) or ERROR once retries are spent."""
    at = time.time() if now is None else now

    async def work(conn: AsyncConnection) -> tuple[int, int]:
        return await lifecycle.reap(conn, at, batch=batch, skip_locked=srv.skip_locked)

    lost, requeued = await transaction(srv.engine, work)
    if lost:
        metrics.tasks_lost(lost)
        log.info("reaped %d lost tasks, %d jobs rescheduled", lost, requeued)
        srv.notifier.notify(requeued)

    async def overdue(conn: AsyncConnection) -> int:
        return await lifecycle.send_overdue_again(conn, at, batch=batch)

    twins = await transaction(srv.engine, overdue)
    if twins:
        log.info("%d copies ran past their job's delay bound: sent to another host as well", twins)
        srv.notifier.notify(twins)
    return lost


async def grant_restart_grace(srv: Server, *, now: float | None = None) -> int:
    """At start, give every live task a fresh lease: its worker could not heartbeat while we were down."""
    until = (time.time() if now is None else now) + srv.settings.lease_s

    async def work(conn: AsyncConnection) -> int:
        return await lifecycle.grant_grace(conn, until)

    return await transaction(srv.engine, work)


async def reaper_loop(srv: Server) -> None:
    """Runs for the server's life; one error never stops it."""
    delay = srv.settings.reaper_interval_s
    while True:
        await asyncio.sleep(delay)
        try:
            if await srv.leader.held():  # one process of several reaps
                await reap(srv)
            delay = srv.settings.reaper_interval_s
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lease reaper failed; retrying")
            delay = min(delay * 2, 60.0)
