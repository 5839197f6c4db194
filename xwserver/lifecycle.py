"""Every change of a job's, task's or host's status, and nothing else.

Each statement here is guarded by the transition table of :mod:`xwcommon.status`: its
``WHERE status IN (…)`` is built by :func:`job_moves` / :func:`task_moves`, which check
at import time that every source may reach the target. A transition the table forbids
cannot be written (the module would not import), and a row that another transaction
moved first is left alone (the guard no longer matches), so a job completes at most once
even when a lost worker reports after its job was rescheduled.

No other server module writes a status column (a test walks the source to hold that).
Functions run inside the caller's transaction; they never commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from xwcommon.status import (
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
)
from xwcommon.uri import new_uid

from . import hot
from .db.models import AppBinary, Data, Host, Job, Task

#: a transaction's connection or session: both run Core statements
Conn = AsyncConnection | AsyncSession

RUNNING_TASK = TaskStatus.RUNNING.value
#: IN lists are cut to this many values (SQLite's variable limit, PostgreSQL's planner)
CHUNK = 900


def job_moves(to: JobStatus, *sources: JobStatus) -> ColumnElement[bool]:
    """``jobs.status IN sources``, after checking the table allows every ``source -> to``."""
    for source in sources:
        check_job_transition(source, to)
    return hot.status_is(Job.status, *(s.value for s in sources))


def task_moves(to: TaskStatus, *sources: TaskStatus) -> ColumnElement[bool]:
    """``tasks.status IN sources``, after checking the table allows every ``source -> to``."""
    for source in sources:
        check_task_transition(source, to)
    return hot.status_is(Task.status, *(s.value for s in sources))


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# -- claim: PENDING -> RUNNING, one task per job --------------------------------------------------

_CLAIM_GUARD = job_moves(JobStatus.RUNNING, JobStatus.PENDING)


@cache
def _claim_update(kind: str, skip_locked: bool, fit: bool, offline: bool, inputs: bool = True) -> Any:
    """One ``UPDATE … WHERE id IN (pick) RETURNING …``: pick, lock and mark in one statement."""
    # A CTE, materialized: PostgreSQL may run an IN (subquery) more than once, and each run
    # with SKIP LOCKED picks other rows, so more than k jobs would be claimed. The guard is
    # the CTE's: the rows it locks were PENDING when locked (PostgreSQL checks the WHERE
    # again on a row it waited for), and a guard on the outer UPDATE would lead the planner
    # to scan every PENDING job instead of looking the k picked ones up by key.
    pick = (
        hot.claim_select(kind, skip_locked, fit, offline, inputs)
        .with_only_columns(Job.id)
        .where(_CLAIM_GUARD)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(Job)
        .where(Job.id.in_(select(pick.c.id)))
        .values(status=JobStatus.RUNNING.value, started_at=bindparam("now"))
        .returning(*hot.CLAIMED_COLUMNS)
    )


_CLAIM_BY_IDS = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)), _CLAIM_GUARD)
    .values(status=JobStatus.RUNNING.value, started_at=bindparam("now"))
)
_INSERT_TASKS = insert(Task)
_INSERT_TASKS_RETURNING = insert(Task).returning(Task.id, sort_by_parameter_order=True)
_TASK_IDS = select(Task.uid, Task.id).where(Task.uid.in_(bindparam("uids", expanding=True)))


@dataclass(frozen=True)
class Claimed:
    """A job just marked RUNNING and the task that runs it (``seq``: the task's id)."""

    job: Any  # a row of hot.CLAIMED_COLUMNS
    task_uid: str
    seq: int


async def claim(
    conn: Conn,
    *,
    backend: str,
    kind: str,
    skip_locked: bool,
    fit: bool,
    offline: bool,
    inputs: bool = True,
    params: dict[str, Any],
    host_id: int,
    now: float,
    lease_until: float,
) -> list[Claimed]:
    """Mark up to ``params["k"]`` eligible PENDING jobs RUNNING and insert their tasks.

    PostgreSQL and SQLite do it in one ``UPDATE … RETURNING`` (locked rows skipped on
    PostgreSQL); MariaDB has no ``UPDATE … RETURNING``: there it is a ``SELECT … FOR
    UPDATE SKIP LOCKED`` and an ``UPDATE`` of the rows it locked.
    """
    if backend == "mysql":
        jobs = list(
            (await conn.execute(hot.claim_select(kind, skip_locked, fit, offline, inputs), params)).all()
        )
        if jobs:
            await conn.execute(_CLAIM_BY_IDS, {"ids": [j.id for j in jobs], "now": now})
    else:
        update_stmt = _claim_update(kind, skip_locked, fit, offline, inputs)
        jobs = sorted((await conn.execute(update_stmt, {**params, "now": now})).all(), key=lambda j: j.id)
    if not jobs:
        return []
    tasks = [
        {
            "uid": new_uid(),
            "job_id": j.id,
            "host_id": host_id,
            "status": RUNNING_TASK,
            "started_at": now,
            "lease_expires_at": lease_until,
            "ended_at": None,
            "exit_code": None,
        }
        for j in jobs
    ]
    if backend == "mysql":
        await conn.execute(_INSERT_TASKS, tasks)
        ids = dict((await conn.execute(_TASK_IDS, {"uids": [t["uid"] for t in tasks]})).all())
        seqs = [ids[t["uid"]] for t in tasks]
    else:
        seqs = list((await conn.execute(_INSERT_TASKS_RETURNING, tasks)).scalars())
    return [Claimed(j, t["uid"], seq) for j, t, seq in zip(jobs, tasks, seqs, strict=True)]


# -- a host's live tasks --------------------------------------------------------------------------

_LIVE_OF_HOST = (
    select(Task.id, Task.uid, Task.job_id, Job.uid.label("job_uid"), Job.owner_id)
    .join(Job, Job.id == Task.job_id)
    .where(Task.host_id == bindparam("host_id"), hot.status_is(Task.status, RUNNING_TASK))
)
_LIVE_OF_HOST_LOCKED = _LIVE_OF_HOST.with_for_update(of=Task)


@dataclass(frozen=True)
class LiveTask:
    id: int
    uid: str
    job_id: int
    job_uid: str
    job_owner_id: int


async def live_tasks(conn: Conn, host_id: int, *, lock: bool) -> dict[str, LiveTask]:
    """The host's RUNNING tasks by UID (locked for this transaction if ``lock``)."""
    rows = await conn.execute(_LIVE_OF_HOST_LOCKED if lock else _LIVE_OF_HOST, {"host_id": host_id})
    return {r.uid: LiveTask(r.id, r.uid, r.job_id, r.job_uid, r.owner_id) for r in rows}


_RENEW = (
    update(Task)
    .where(Task.id.in_(bindparam("ids", expanding=True)), hot.status_is(Task.status, RUNNING_TASK))
    .values(lease_expires_at=bindparam("until"))
)


async def renew(conn: Conn, task_ids: Sequence[int], until: float) -> None:
    """Extend the leases of these live tasks (and only these) to ``until``."""
    for chunk in _chunks(task_ids):
        await conn.execute(_RENEW, {"ids": list(chunk), "until": until})


# -- finish: RUNNING -> COMPLETED | ERROR ----------------------------------------------------------

_FINISH_TASK = (
    update(Task)
    .where(
        Task.id == bindparam("task_id"),
        # one guard for both targets: the table must allow RUNNING -> each of them
        task_moves(TaskStatus.COMPLETED, TaskStatus.RUNNING),
        task_moves(TaskStatus.ERROR, TaskStatus.RUNNING),
    )
    .values(
        status=bindparam("b_status"),
        ended_at=bindparam("now"),
        exit_code=bindparam("b_exit_code"),
        cpu_user_s=bindparam("b_cpu_user_s"),
        cpu_system_s=bindparam("b_cpu_system_s"),
        wall_s=bindparam("b_wall_s"),
        max_rss_bytes=bindparam("b_max_rss_bytes"),
    )
)

_FINISH_JOB = (
    update(Job)
    .where(
        Job.id == bindparam("job_id"),
        job_moves(JobStatus.COMPLETED, JobStatus.RUNNING),
        job_moves(JobStatus.ERROR, JobStatus.RUNNING),
    )
    .values(
        status=bindparam("b_status"),
        exit_code=bindparam("b_exit_code"),
        message=bindparam("b_message"),
        result_data_id=bindparam("result_id"),
        completed_at=bindparam("now"),
    )
)


@dataclass(frozen=True)
class Finish:
    """One live task's end, as the worker reported it (``result_id``: its stored result)."""

    task: LiveTask
    status: TaskStatus
    exit_code: int | None
    message: str | None
    result_id: int | None
    accounting: dict[str, float | int | None]

    @property
    def job_status(self) -> JobStatus:
        return JobStatus.COMPLETED if self.status is TaskStatus.COMPLETED else JobStatus.ERROR


async def finish(conn: Conn, items: Sequence[Finish], now: float) -> None:
    """End tasks and their jobs: two statements for any number (executemany).

    The tasks must have been read as live in this transaction (:func:`live_tasks` with
    ``lock``), so every guarded UPDATE here matches its row.
    """
    if not items:
        return
    await conn.execute(
        _FINISH_TASK,
        [
            {
                "task_id": f.task.id,
                "b_status": f.status.value,
                "now": now,
                "b_exit_code": f.exit_code,
                **{f"b_{k}": v for k, v in f.accounting.items()},
            }
            for f in items
        ],
    )
    await conn.execute(
        _FINISH_JOB,
        [
            {
                "job_id": f.task.job_id,
                "b_status": f.job_status.value,
                "b_exit_code": f.exit_code,
                "b_message": f.message,
                "result_id": f.result_id,
                "now": now,
            }
            for f in items
        ],
    )


# -- release: a task handed back (ABORTED), its job back to PENDING with no retry spent ------------

_ABORT_TASKS = (
    update(Task)
    .where(Task.id.in_(bindparam("ids", expanding=True)), task_moves(TaskStatus.ABORTED, TaskStatus.RUNNING))
    .values(status=TaskStatus.ABORTED.value, ended_at=bindparam("now"))
)
_REQUEUE_JOBS = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)), job_moves(JobStatus.PENDING, JobStatus.RUNNING))
    .values(status=JobStatus.PENDING.value, started_at=None)
)


async def release(conn: Conn, tasks: Sequence[LiveTask], now: float | None = None) -> int:
    """Hand live tasks back: tasks ABORTED, their jobs PENDING again without spending a retry."""
    now = time.time() if now is None else now
    for chunk in _chunks(tasks):
        await conn.execute(_ABORT_TASKS, {"ids": [t.id for t in chunk], "now": now})
        await conn.execute(_REQUEUE_JOBS, {"ids": [t.job_id for t in chunk]})
    return len(tasks)


async def release_host(
    conn: Conn, host_id: int, *, only: Iterable[str] | None = None, keep: Iterable[str] | None = None
) -> int:
    """Release a host's live tasks: all of them, those in ``only``, or all but ``keep``."""
    live = await live_tasks(conn, host_id, lock=True)
    if only is not None:
        wanted = set(only)
        chosen = [t for uid, t in live.items() if uid in wanted]
    else:
        kept = set(keep or ())
        chosen = [t for uid, t in live.items() if uid not in kept]
    return await release(conn, chosen)


# -- reap: an expired lease; task LOST, job PENDING with retry+1 or ERROR when retries are spent ---

_EXPIRED = select(Task.id, Task.job_id).where(
    hot.status_is(Task.status, RUNNING_TASK), Task.lease_expires_at < bindparam("now")
)
_LOSE_TASKS = (
    update(Task)
    .where(Task.id.in_(bindparam("ids", expanding=True)), task_moves(TaskStatus.LOST, TaskStatus.RUNNING))
    .values(status=TaskStatus.LOST.value, ended_at=bindparam("now"))
)
_RETRY_JOBS = (
    update(Job)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        job_moves(JobStatus.PENDING, JobStatus.RUNNING),
        Job.retry < Job.max_retry,
    )
    .values(status=JobStatus.PENDING.value, retry=Job.retry + 1, started_at=None)
)
_FAIL_JOBS = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)), job_moves(JobStatus.ERROR, JobStatus.RUNNING))
    .values(
        status=JobStatus.ERROR.value,
        completed_at=bindparam("now"),
        message="its worker stopped answering and its retries are spent (max_retry reached)",
    )
)


@cache
def _expired(skip_locked: bool) -> Any:
    """Built once: the driver-level statement caches key on the statement object."""
    q = _EXPIRED.limit(bindparam("batch"))
    return q.with_for_update(skip_locked=True) if skip_locked else q


async def reap(conn: Conn, now: float, *, batch: int, skip_locked: bool) -> tuple[int, int]:
    """Expired leases, at most ``batch``: (tasks lost, jobs rescheduled)."""
    rows = (await conn.execute(_expired(skip_locked), {"now": now, "batch": batch})).all()
    if not rows:
        return 0, 0
    task_ids = [r.id for r in rows]
    job_ids = [r.job_id for r in rows]
    await conn.execute(_LOSE_TASKS, {"ids": task_ids, "now": now})
    requeued = await conn.execute(_RETRY_JOBS, {"ids": job_ids})
    await conn.execute(_FAIL_JOBS, {"ids": job_ids, "now": now})
    return len(rows), requeued.rowcount or 0  # type: ignore[attr-defined]


_GRACE = (
    update(Task)
    .where(hot.status_is(Task.status, RUNNING_TASK), Task.lease_expires_at < bindparam("until"))
    .values(lease_expires_at=bindparam("until"))
)


async def grant_grace(conn: Conn, until: float) -> int:
    """Every live lease lasts until ``until`` at least (the server was down: nobody could renew)."""
    result = await conn.execute(_GRACE, {"until": until})
    return result.rowcount or 0  # type: ignore[attr-defined]


# -- remove: jobs, their task records and results go ------------------------------------------------


def _in_use(data_id: Any) -> ColumnElement[bool]:
    """Whether a data is another job's input or an app's binary (then a removed job's result stays)."""
    return or_(
        exists().where(or_(Job.stdin_data_id == data_id, Job.env_data_id == data_id)),
        exists().where(AppBinary.data_id == data_id),
    )


async def remove_jobs(conn: Conn, job_ids: Sequence[int]) -> list[str]:
    """Remove jobs: their task records (a live one's worker is told to stop at its next
    heartbeat: the task is gone), the jobs, and their results unless another job or app uses
    them. Returns the removed results' sha256: their files are the caller's to collect."""
    shas: list[str] = []
    for chunk in _chunks(job_ids):
        results = list(
            (
                await conn.execute(
                    select(Job.result_data_id).where(Job.id.in_(chunk), Job.result_data_id.is_not(None))
                )
            ).scalars()
        )
        if results:
            shas += (await conn.execute(select(Data.sha256).where(Data.id.in_(results)))).scalars()
        await conn.execute(delete(Task).where(Task.job_id.in_(chunk)))
        await conn.execute(delete(Job).where(Job.id.in_(chunk)))
        if results:  # a result another job takes as its input stays (that job needs it)
            await conn.execute(delete(Data).where(Data.id.in_(results), ~_in_use(Data.id)))
    return shas


async def remove_host_tasks(conn: Conn, host_ids: Sequence[int]) -> None:
    """Forget the task records of hosts that are being removed (their jobs were released)."""
    for chunk in _chunks(host_ids):
        await conn.execute(delete(Task).where(Task.host_id.in_(chunk)))


# -- hosts: enabled or disabled by an administrator -------------------------------------------------


async def set_host_enabled(conn: Conn, host_id: int, enabled: bool) -> None:
    await conn.execute(update(Host).where(Host.id == host_id).values(enabled=enabled))


async def disable_hosts_of(conn: Conn, owner_id: int) -> list[int]:
    """Disable every host of an identity; returns their ids (their tasks are the caller's to release)."""
    ids = list((await conn.execute(select(Host.id).where(Host.owner_id == owner_id))).scalars())
    if ids:
        await conn.execute(update(Host).where(Host.owner_id == owner_id).values(enabled=False))
    return ids
