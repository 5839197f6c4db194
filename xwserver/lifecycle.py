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

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from xwcommon.status import (
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
)
from xwcommon.uri import new_uid

from . import events, hot
from .db.models import AppBinary, Data, Host, Job, JobTag, Task, UsageLedger

#: a transaction's connection or session: both run Core statements
Conn = AsyncConnection | AsyncSession

RUNNING_TASK = TaskStatus.RUNNING.value
PENDING_JOB = JobStatus.PENDING.value
RUNNING_JOB = JobStatus.RUNNING.value
WAITING_JOB = JobStatus.WAITING.value
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
# a claimed copy leaves its job PENDING (more copies to send), WAITING (results came back,
# no quorum yet) or RUNNING: the table must allow each
job_moves(JobStatus.WAITING, JobStatus.PENDING)


@cache
def _claim_values(alone: bool) -> list[tuple[Any, Any]]:
    """What a claim writes on each job it takes (one copy sent), as ordered values: MariaDB
    assigns left to right, each assignment seeing those before it, so the columns the
    others read (``unsent``, ``sent``) come last.

    ``alone``: the host is trusted for its record of valid results (adaptive trust): a
    replicated job of which no copy went out yet goes to it alone (``trusted``)."""
    lone = and_(Job.sent == 0, Job.min_quorum > 1) if alone else None
    more = Job.unsent > 1
    status = case(
        *([(lone, RUNNING_JOB)] if lone is not None else []),
        (more, PENDING_JOB),
        (Job.done > 0, WAITING_JOB),
        else_=RUNNING_JOB,
    )
    values: list[tuple[Any, Any]] = [
        (Job.status, status),
        (Job.started_at, func.coalesce(Job.started_at, bindparam("now"))),
    ]
    if lone is not None:
        values += [
            (Job.trusted, case((lone, true()), else_=Job.trusted)),
            (Job.unsent, case((lone, 0), else_=Job.unsent - 1)),
        ]
    else:
        values.append((Job.unsent, Job.unsent - 1))
    values.append((Job.sent, Job.sent + 1))
    return values


@cache
def _claim_update(
    kind: str, skip_locked: bool, fit: bool, offline: bool, inputs: bool = True, alone: bool = False
) -> Any:
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
        .ordered_values(*_claim_values(alone))
        .returning(*hot.CLAIMED_COLUMNS)
    )


@cache
def _claim_by_ids(alone: bool) -> Any:
    return (
        update(Job)
        .where(Job.id.in_(bindparam("ids", expanding=True)), _CLAIM_GUARD)
        .ordered_values(*_claim_values(alone))
    )


_CLAIM_BY_IDS = _claim_by_ids(False)
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
    alone: bool = False,
    params: dict[str, Any],
    host_id: int,
    now: float,
    lease_until: float,
    host_uid: str | None = None,
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
            await conn.execute(_claim_by_ids(alone), {"ids": [j.id for j in jobs], "now": now})
    else:
        update_stmt = _claim_update(kind, skip_locked, fit, offline, inputs, alone)
        jobs = sorted(
            (await conn.execute(update_stmt, {**params, "now": now})).all(),
            key=lambda j: (j.nice, j.share_key, j.id),  # the queue's order
        )
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
            "overdue": False,
        }
        for j in jobs
    ]
    if backend == "mysql":
        await conn.execute(_INSERT_TASKS, tasks)
        ids = dict((await conn.execute(_TASK_IDS, {"uids": [t["uid"] for t in tasks]})).all())
        seqs = [ids[t["uid"]] for t in tasks]
    else:
        seqs = list((await conn.execute(_INSERT_TASKS_RETURNING, tasks)).scalars())
    await events.record(
        conn,
        [
            events.event("task", t["uid"], "assigned", owner_id=j.owner_id, job_uid=j.uid, host_uid=host_uid)
            for j, t in zip(jobs, tasks, strict=True)
        ],
        now,
    )
    return [Claimed(j, t["uid"], seq) for j, t, seq in zip(jobs, tasks, seqs, strict=True)]


# -- a host's live tasks --------------------------------------------------------------------------

_LIVE_OF_HOST = (
    select(Task.id, Task.uid, Task.job_id, Job.uid.label("job_uid"), Job.owner_id, Job.min_quorum, Job.sent)
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
    #: its job's: results that must agree (above 1: a replicated job), and copies sent
    min_quorum: int = 1
    sent: int = 1

    @property
    def replicated(self) -> bool:
        return self.min_quorum > 1


async def live_tasks(conn: Conn, host_id: int, *, lock: bool) -> dict[str, LiveTask]:
    """The host's RUNNING tasks by UID (locked for this transaction if ``lock``)."""
    rows = await conn.execute(_LIVE_OF_HOST_LOCKED if lock else _LIVE_OF_HOST, {"host_id": host_id})
    return {r.uid: LiveTask(r.id, r.uid, r.job_id, r.job_uid, r.owner_id, r.min_quorum, r.sent) for r in rows}


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
        digest=bindparam("b_digest"),
        validity=bindparam("b_validity"),
    )
)

#: a job of one copy ends with it. PENDING too: a copy that ran past the job's delay bound
#: may still finish first, while the job waits for its next copy to be sent
_FINISH_JOB = (
    update(Job)
    .where(
        Job.id == bindparam("job_id"),
        job_moves(JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.PENDING),
        job_moves(JobStatus.ERROR, JobStatus.RUNNING, JobStatus.PENDING),
    )
    .values(
        status=bindparam("b_status"),
        exit_code=bindparam("b_exit_code"),
        message=bindparam("b_message"),
        result_data_id=bindparam("result_id"),
        completed_at=bindparam("now"),
        unsent=0,
    )
)


@dataclass(frozen=True)
class Finish:
    """One live task's end, as the worker reported it (``result_id``: its stored result;
    ``digest``: what a replicated job's result hashes to, see validation.result_digest)."""

    task: LiveTask
    status: TaskStatus
    exit_code: int | None
    message: str | None
    result_id: int | None
    accounting: dict[str, float | int | None]
    digest: str | None = None

    @property
    def job_status(self) -> JobStatus:
        return JobStatus.COMPLETED if self.status is TaskStatus.COMPLETED else JobStatus.ERROR


async def finish(
    conn: Conn,
    items: Sequence[Finish],
    now: float,
    judged: set[int] | None = None,
    host_uid: str | None = None,
) -> dict[int, JobStatus]:
    """End tasks and their jobs: two statements for any number of jobs of one copy
    (executemany). A replicated job's copy ends its task only; the job is then revisited
    (:func:`revisit`). Returns the replicated jobs' statuses after that, by job id.

    The tasks must have been read as live in this transaction (:func:`live_tasks` with
    ``lock``), so every guarded UPDATE here matches its row.
    """
    if not items:
        return {}
    await conn.execute(
        _FINISH_TASK,
        [
            {
                "task_id": f.task.id,
                "b_status": f.status.value,
                "now": now,
                "b_exit_code": f.exit_code,
                "b_digest": f.digest,
                # a job of one copy accepts its result as it comes (credit is granted); a
                # replicated job's copies are judged when a quorum agrees
                "b_validity": (
                    "valid" if f.status is TaskStatus.COMPLETED and not f.task.replicated else None
                ),
                **{f"b_{k}": v for k, v in f.accounting.items()},
            }
            for f in items
        ],
    )
    await events.record(
        conn,
        [
            events.event(
                "task",
                f.task.uid,
                f.status.value.lower(),
                owner_id=f.task.job_owner_id,
                job_uid=f.task.job_uid,
                host_uid=host_uid,
                detail=_said(f),
            )
            for f in items
        ],
        now,
    )
    single = [f for f in items if not f.task.replicated]
    if single:
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
                for f in single
            ],
        )
        # a job of one copy sent twice (past its delay bound): the other copy stops
        twice = [f.task.job_id for f in single if f.task.sent > 1]
        if twice:
            await _abort_live_copies(conn, twice, now)
    replicated = [f.task.job_id for f in items if f.task.replicated]
    return await revisit(conn, replicated, now, judged) if replicated else {}


def _said(f: Finish) -> str | None:
    """What a report said, in words, for the event history."""
    parts = [] if f.exit_code is None else [f"exit code {f.exit_code}"]
    if f.message:
        parts.append(f.message)
    return "; ".join(parts) or None


# -- replicated jobs: the validator's decisions written ----------------------------------------------

_LIVE_JOBS = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING)


def _live_sources(to: JobStatus) -> ColumnElement[bool]:
    """``jobs.status`` among the live statuses that may become ``to`` (or are ``to`` already:
    a job may stay PENDING with one more copy to send)."""
    sources = [s for s in _LIVE_JOBS if s is not to]
    guard = job_moves(to, *sources)
    return or_(guard, hot.status_is(Job.status, to.value)) if to in _LIVE_JOBS else guard


@cache
def _set_job(to: JobStatus) -> Any:
    values: dict[str, Any] = {
        "status": to.value,
        "unsent": bindparam("b_unsent"),
        "done": bindparam("b_done"),
    }
    if to in (JobStatus.COMPLETED, JobStatus.ERROR):
        values |= {
            "message": bindparam("b_message"),
            "completed_at": bindparam("now"),
            "result_data_id": bindparam("result_id"),
            "exit_code": bindparam("b_exit_code"),
        }
    return update(Job).where(Job.id == bindparam("job_id"), _live_sources(to)).values(**values)


_JOBS_FOR_REVISIT = select(
    Job.id,
    Job.uid,
    Job.owner_id,
    Job.status,
    Job.min_quorum,
    Job.max_error_results,
    Job.max_total_results,
    Job.unsent,
    Job.sent,
    Job.trusted,
).where(Job.id.in_(bindparam("ids", expanding=True)))
_COPIES = select(
    Task.id,
    Task.job_id,
    Task.host_id,
    Task.status,
    Task.digest,
    Task.validity,
    Task.exit_code,
    Task.overdue,
    Task.uid,
).where(Task.job_id.in_(bindparam("ids", expanding=True)))
_RESULTS_OF = select(Data.task_id, Data.id).where(Data.task_id.in_(bindparam("ids", expanding=True)))
_SET_VALIDITY = (
    update(Task).where(Task.id.in_(bindparam("ids", expanding=True))).values(validity=bindparam("b_validity"))
)
#: a record stops growing here (the column is a 32-bit integer on every database)
MAX_STREAK = 2**31 - 1
_STREAK_UP = (
    update(Host)
    .where(Host.id.in_(bindparam("ids", expanding=True)))
    .values(valid_streak=case((Host.valid_streak < MAX_STREAK, Host.valid_streak + 1), else_=MAX_STREAK))
)
_STREAK_RESET = update(Host).where(Host.id.in_(bindparam("ids", expanding=True))).values(valid_streak=0)


_RESULTS_OF_JOBS = select(Data.id).where(
    Data.task_id.in_(select(Task.id).where(Task.job_id.in_(bindparam("jobs", expanding=True))))
)
_DROP_DATA = delete(Data).where(Data.id.in_(bindparam("ids", expanding=True)))


async def revisit(
    conn: Conn, job_ids: Sequence[int], now: float, judged: set[int] | None = None
) -> dict[int, JobStatus]:
    """Decide replicated (or re-sent) jobs again from their copies and write the outcome:
    quorum reached (COMPLETED, copies judged valid or invalid, hosts' records moved, the
    other copies stopped), caps reached (ERROR), or more copies to send (PENDING) or to
    wait for (RUNNING, WAITING). The jobs are locked first where the database locks rows,
    so two copies reported at once are judged once. ``judged`` collects the hosts whose
    record of valid results moved (the caller's caches of them are stale)."""
    from . import validation

    ids = sorted(set(job_ids))
    out: dict[int, JobStatus] = {}
    for chunk in _chunks(ids):
        jobs_q = _JOBS_FOR_REVISIT.with_for_update() if _locks_rows(conn) else _JOBS_FOR_REVISIT
        jobs = {r.id: r for r in await conn.execute(jobs_q, {"ids": list(chunk)})}
        copies: dict[int, list[validation.Copy]] = {}
        for r in await conn.execute(_COPIES, {"ids": list(chunk)}):
            copies.setdefault(r.job_id, []).append(
                validation.Copy(
                    r.id, r.host_id, r.status, r.digest, r.validity, r.exit_code, bool(r.overdue), r.uid
                )
            )
        decisions = []
        for job_id, j in jobs.items():
            state = validation.JobState(
                j.id,
                j.status,
                j.min_quorum,
                j.max_error_results,
                j.max_total_results,
                j.unsent,
                j.sent,
                j.trusted,
            )
            d = validation.decide(state, copies.get(job_id, []))
            if d is not None:
                decisions.append(d)
                out[job_id] = d.status
        moved = await _write_decisions(conn, decisions, now)
        await events.record(conn, _decision_events(jobs, decisions), now)
        if judged is not None:
            judged |= moved
    return out


#: what a decision that changes a job's status is called in the event history
_DECIDED = {
    JobStatus.COMPLETED: "validated",
    JobStatus.ERROR: "error",
    JobStatus.PENDING: "resent",
    JobStatus.WAITING: "waiting",
    JobStatus.RUNNING: "running",
}


def _decision_events(jobs: dict[int, Any], decisions: Sequence[Any]) -> list[events.Made]:
    out = []
    for d in decisions:
        j = jobs[d.job_id]
        if d.status.value != j.status:
            out.append(events.event("job", j.uid, _DECIDED[d.status], owner_id=j.owner_id, detail=d.message))
        out += [
            events.event(
                "task",
                c.uid,
                "invalid",
                owner_id=j.owner_id,
                job_uid=j.uid,
                detail="its result disagreed with the quorum",
            )
            for c in d.invalid
        ]
    return out


def _locks_rows(conn: Conn) -> bool:
    """SQLite has no row locks (BEGIN IMMEDIATE serializes writers); the others lock rows."""
    dialect = conn.get_bind().dialect if isinstance(conn, AsyncSession) else conn.dialect
    return dialect.name != "sqlite"


async def _write_decisions(conn: Conn, decisions: Sequence[Any], now: float) -> set[int]:
    """Write what :func:`revisit` decided; returns the hosts whose records moved."""
    if not decisions:
        return set()
    canon = [d.canonical.id for d in decisions if d.canonical is not None]
    results: dict[int, int] = {}
    if canon:
        results = {t: d for t, d in await conn.execute(_RESULTS_OF, {"ids": canon}) if t is not None}
    for d in decisions:
        await conn.execute(
            _set_job(d.status),
            {
                "job_id": d.job_id,
                "b_unsent": d.unsent,
                "b_done": d.done,
                "b_message": d.message,
                "now": now,
                "result_id": results.get(d.canonical.id) if d.canonical else None,
                "b_exit_code": d.canonical.exit_code if d.canonical else None,
            },
        )
    valid = [c for d in decisions for c in d.valid if c.validity != "valid"]
    invalid = [c for d in decisions for c in d.invalid]
    if valid:
        await conn.execute(_SET_VALIDITY, {"ids": [c.id for c in valid], "b_validity": "valid"})
        await conn.execute(_STREAK_UP, {"ids": sorted({c.host_id for c in valid})})
    if invalid:
        await conn.execute(_SET_VALIDITY, {"ids": [c.id for c in invalid], "b_validity": "invalid"})
        bad_hosts = sorted({c.host_id for c in invalid})
        await conn.execute(_STREAK_RESET, {"ids": bad_hosts})
        await recheck_alone(conn, bad_hosts, now)
    cancel = [c.id for d in decisions for c in d.cancel]
    if cancel:
        await conn.execute(_ABORT_TASKS, {"ids": cancel, "now": now})
    # the results no quorum kept: their rows go now, their files at the collector's round
    ended = [d for d in decisions if d.status in (JobStatus.COMPLETED, JobStatus.ERROR)]
    if ended:
        keep = {results[d.canonical.id] for d in ended if d.canonical and d.canonical.id in results}
        found = (await conn.execute(_RESULTS_OF_JOBS, {"jobs": [d.job_id for d in ended]})).scalars()
        drop = [i for i in found if i not in keep]
        if drop:
            await conn.execute(_DROP_DATA, {"ids": drop})
    return {c.host_id for c in valid} | {c.host_id for c in invalid}


_ALONE_OF = (
    select(Job.id)
    .join(Task, Task.job_id == Job.id)
    .where(
        Task.host_id.in_(bindparam("hosts", expanding=True)),
        Job.trusted.is_(True),
        hot.status_is(Job.status, JobStatus.COMPLETED.value),
        Job.completed_at > bindparam("since"),
    )
)
_REOPEN = (
    update(Job)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        job_moves(JobStatus.PENDING, JobStatus.COMPLETED),
        Job.trusted.is_(True),
    )
    .values(
        status=JobStatus.PENDING.value,
        trusted=False,
        unsent=case((Job.target_results > Job.min_quorum, Job.target_results), else_=Job.min_quorum) - 1,
        result_data_id=None,
        completed_at=None,
        message="sent again: the host that ran it alone returned an invalid result since",
    )
)
_UNJUDGE = update(Task).where(Task.job_id.in_(bindparam("ids", expanding=True))).values(validity=None)


async def recheck_alone(conn: Conn, host_ids: Sequence[int], now: float) -> int:
    """The jobs these hosts ran alone lately (trusted) go back to the queue, replicated:
    their results are compared again with new copies (sent to other hosts)."""
    from .validation import RECHECK_ALONE_S

    ids = list(
        (await conn.execute(_ALONE_OF, {"hosts": list(host_ids), "since": now - RECHECK_ALONE_S})).scalars()
    )
    if not ids:
        return 0
    for chunk in _chunks(ids):
        await conn.execute(_UNJUDGE, {"ids": list(chunk)})
        await conn.execute(_REOPEN, {"ids": list(chunk)})
    return len(ids)


async def fail_live_jobs(conn: Conn, job_ids: Sequence[int], now: float, message: str) -> None:
    """Jobs not over yet end in ERROR with ``message``; their live copies stop."""
    for job_id in job_ids:
        await conn.execute(
            _set_job(JobStatus.ERROR),
            {
                "job_id": job_id,
                "b_unsent": 0,
                "b_done": 0,
                "b_message": message,
                "now": now,
                "result_id": None,
                "b_exit_code": None,
            },
        )
    await _abort_live_copies(conn, job_ids, now)


# -- abort: by the job's owner; its live copies are told to stop at their next heartbeat ----------

_ABORT_JOBS = (
    update(Job)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        job_moves(JobStatus.ABORTED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING),
    )
    .values(
        status=JobStatus.ABORTED.value,
        unsent=0,
        completed_at=bindparam("now"),
        message=bindparam("b_message"),
    )
)


_LIVE_JOBS_OF = select(Job.uid, Job.owner_id).where(
    Job.id.in_(bindparam("ids", expanding=True)),
    hot.status_is(Job.status, JobStatus.PENDING.value, JobStatus.RUNNING.value, JobStatus.WAITING.value),
)


async def abort_jobs(conn: Conn, job_ids: Sequence[int], now: float, message: str) -> int:
    """Jobs that are not over end ABORTED (kept for their owner to see); their live copies
    are ABORTED, which their workers learn at their next heartbeat. Returns how many."""
    n = 0
    for chunk in _chunks(job_ids):
        live = (await conn.execute(_LIVE_JOBS_OF, {"ids": list(chunk)})).all()
        await events.record(
            conn,
            [events.event("job", r.uid, "aborted", owner_id=r.owner_id, detail=message) for r in live],
            now,
        )
        result = await conn.execute(_ABORT_JOBS, {"ids": list(chunk), "now": now, "b_message": message})
        n += result.rowcount or 0  # type: ignore[attr-defined]
        await _abort_live_copies(conn, chunk, now)
    return n


_LIVE_COPIES = select(Task.id).where(
    Task.job_id.in_(bindparam("ids", expanding=True)), hot.status_is(Task.status, RUNNING_TASK)
)


async def _abort_live_copies(conn: Conn, job_ids: Sequence[int], now: float) -> None:
    ids = list((await conn.execute(_LIVE_COPIES, {"ids": list(job_ids)})).scalars())
    if ids:
        await conn.execute(_ABORT_TASKS, {"ids": ids, "now": now})


# -- deadlines: a copy running past its job's delay bound gets a twin on another host -------------

_OVERDUE = (
    select(Task.id, Task.job_id, Task.uid, Job.uid.label("job_uid"), Job.owner_id)
    .join(Job, Job.id == Task.job_id)
    .where(
        hot.status_is(Task.status, RUNNING_TASK),
        Task.overdue.is_(False),
        Job.delay_bound_s.is_not(None),
        Task.started_at + Job.delay_bound_s < bindparam("now"),
    )
    .limit(bindparam("batch"))
)
_MARK_OVERDUE = update(Task).where(Task.id.in_(bindparam("ids", expanding=True))).values(overdue=True)


async def send_overdue_again(conn: Conn, now: float, *, batch: int = 1000) -> int:
    """Copies past their job's delay bound (BOINC's): marked overdue (they may still finish
    and count), and their jobs revisited, which sends another copy. Returns how many."""
    rows = (await conn.execute(_OVERDUE, {"now": now, "batch": batch})).all()
    if not rows:
        return 0
    await conn.execute(_MARK_OVERDUE, {"ids": [r.id for r in rows]})
    await events.record(
        conn,
        [
            events.event(
                "task",
                r.uid,
                "overdue",
                owner_id=r.owner_id,
                job_uid=r.job_uid,
                detail="past its job's delay bound: sent again",
            )
            for r in rows
        ],
        now,
    )
    await revisit(conn, [r.job_id for r in rows], now)
    return len(rows)


# -- release: a task handed back (ABORTED), its job back to PENDING with no retry spent ------------

_ABORT_TASKS = (
    update(Task)
    .where(Task.id.in_(bindparam("ids", expanding=True)), task_moves(TaskStatus.ABORTED, TaskStatus.RUNNING))
    .values(status=TaskStatus.ABORTED.value, ended_at=bindparam("now"))
)
_REQUEUE_JOBS = (
    update(Job)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        job_moves(JobStatus.PENDING, JobStatus.RUNNING),
        Job.min_quorum <= 1,
    )
    .values(status=JobStatus.PENDING.value, started_at=None, unsent=1)
)


async def release(conn: Conn, tasks: Sequence[LiveTask], now: float | None = None) -> int:
    """Hand live tasks back: tasks ABORTED, their jobs PENDING again without spending a retry
    (a replicated job is revisited: it sends another copy if it needs one)."""
    now = time.time() if now is None else now
    for chunk in _chunks(tasks):
        await conn.execute(_ABORT_TASKS, {"ids": [t.id for t in chunk], "now": now})
        await conn.execute(_REQUEUE_JOBS, {"ids": [t.job_id for t in chunk]})
    await events.record(
        conn,
        [
            events.event(
                "task",
                t.uid,
                "released",
                owner_id=t.job_owner_id,
                job_uid=t.job_uid,
                detail="handed back: its job goes back to the queue",
            )
            for t in tasks
        ],
        now,
    )
    replicated = [t.job_id for t in tasks if t.replicated]
    if replicated:
        await revisit(conn, replicated, now)
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

_EXPIRED = (
    select(Task.id, Task.job_id, Job.min_quorum, Task.uid, Job.uid.label("job_uid"), Job.owner_id)
    .join(Job, Job.id == Task.job_id)
    .where(hot.status_is(Task.status, RUNNING_TASK), Task.lease_expires_at < bindparam("now"))
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
        Job.min_quorum <= 1,
    )
    .values(status=JobStatus.PENDING.value, retry=Job.retry + 1, started_at=None, unsent=1)
)
_FAIL_JOBS = (
    update(Job)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        job_moves(JobStatus.ERROR, JobStatus.RUNNING),
        Job.min_quorum <= 1,
    )
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
    return q.with_for_update(skip_locked=True, of=Task) if skip_locked else q


async def reap(conn: Conn, now: float, *, batch: int, skip_locked: bool) -> tuple[int, int]:
    """Expired leases, at most ``batch``: (tasks lost, jobs rescheduled)."""
    rows = (await conn.execute(_expired(skip_locked), {"now": now, "batch": batch})).all()
    if not rows:
        return 0, 0
    task_ids = [r.id for r in rows]
    job_ids = [r.job_id for r in rows if r.min_quorum <= 1]
    await conn.execute(_LOSE_TASKS, {"ids": task_ids, "now": now})
    await events.record(
        conn,
        [
            events.event(
                "task",
                r.uid,
                "lost",
                owner_id=r.owner_id,
                job_uid=r.job_uid,
                detail="its lease expired: its worker stopped answering",
            )
            for r in rows
        ],
        now,
    )
    requeued = 0
    if job_ids:
        requeued = (await conn.execute(_RETRY_JOBS, {"ids": job_ids})).rowcount or 0  # type: ignore[attr-defined]
        await conn.execute(_FAIL_JOBS, {"ids": job_ids, "now": now})
    replicated = [r.job_id for r in rows if r.min_quorum > 1]
    if replicated:  # a lost copy counts as an error; another is sent if the quorum needs it
        after = await revisit(conn, replicated, now)
        requeued += sum(status is JobStatus.PENDING for status in after.values())
    return len(rows), requeued


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
        gone = (await conn.execute(select(Job.uid, Job.owner_id).where(Job.id.in_(chunk)))).all()
        await _keep_usage(conn, chunk)
        await events.record(conn, [events.event("job", r.uid, "removed", owner_id=r.owner_id) for r in gone])
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
        await conn.execute(delete(JobTag).where(JobTag.job_id.in_(chunk)))
        await conn.execute(delete(Job).where(Job.id.in_(chunk)))
        if results:  # a result another job takes as its input stays (that job needs it)
            await conn.execute(delete(Data).where(Data.id.in_(results), ~_in_use(Data.id)))
    return shas


HOUR = 3600.0
_USED = (
    select(Job.owner_id, Task.ended_at, Task.cpu_user_s, Task.cpu_system_s, Task.wall_s)
    .join(Job, Job.id == Task.job_id)
    .where(Task.job_id.in_(bindparam("ids", expanding=True)), Task.ended_at.is_not(None))
)
_CREATED = select(Job.owner_id, Job.created_at).where(Job.id.in_(bindparam("ids", expanding=True)))
_RESULTS_MADE = (
    select(Job.owner_id, Data.created_at, Data.size)
    .join(Task, Task.job_id == Job.id)
    .join(Data, Data.task_id == Task.id)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
)
_INSERT_LEDGER = insert(UsageLedger)


async def _keep_usage(conn: Conn, job_ids: Sequence[int]) -> None:
    """Before jobs go, what they used goes to the usage ledger, summed per owner and hour
    (usage reports read it beside the jobs still on record)."""
    sums: dict[tuple[int, float], dict[str, Any]] = {}

    def row(owner: int, at: float) -> dict[str, Any]:
        key = (owner, at - at % HOUR)
        return sums.setdefault(
            key,
            {
                "owner_id": owner,
                "at": key[1],
                "jobs": 0,
                "tasks": 0,
                "cpu_s": 0.0,
                "wall_s": 0.0,
                "bytes_down": 0,
            },
        )

    ids = {"ids": list(job_ids)}
    for owner, created in await conn.execute(_CREATED, ids):
        row(owner, created)["jobs"] += 1
    for owner, ended, user_s, system_s, wall_s in await conn.execute(_USED, ids):
        r = row(owner, float(ended or 0.0))
        r["tasks"] += 1
        r["cpu_s"] += (user_s or 0.0) + (system_s or 0.0)
        r["wall_s"] += wall_s or 0.0
    for owner, created, size in await conn.execute(_RESULTS_MADE, ids):
        row(owner, created)["bytes_down"] += int(size or 0)
    if sums:
        await conn.execute(_INSERT_LEDGER, list(sums.values()))


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
