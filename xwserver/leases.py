"""Live tasks: heartbeats, results, final reports, hand-backs and the lease reaper.

Every transition is a guarded UPDATE (``… WHERE status = 'RUNNING'``), so a task is
completed at most once even when a lost worker reports after its job was rescheduled.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from xwcommon import defaults
from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound, XWError
from xwcommon.levels import PRIVATE, UserLevel
from xwcommon.status import JobStatus, TaskStatus
from xwcommon.uri import parse_uid

from . import hot
from .access import Caller
from .data import store_upload
from .db.models import Job, Task
from .hosts import own_host, parse_activation, release_host_tasks
from .state import Server

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096
MAX_TASKS_PER_CALL = 1024


def _task_uids(body: Any) -> list[str]:
    uids = body.get("task_uids", []) if isinstance(body, dict) else None
    if (
        not isinstance(uids, list)
        or len(uids) > MAX_TASKS_PER_CALL
        or not all(isinstance(u, str) for u in uids)
    ):
        raise BadRequest(f'"task_uids" must be a list of at most {MAX_TASKS_PER_CALL} task UIDs')
    return [parse_uid(u, "task_uids") for u in uids]


async def heartbeat(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    """One statement extends all of a host's leases; answers which tasks to stop."""
    caller.require(UserLevel.WORKER, "heartbeats")
    uids = _task_uids(body)
    activation = parse_activation(body.get("activation"))
    host = await own_host(srv, caller, body.get("host_uid"))
    now = time.time()
    async with srv.engine.begin() as conn:
        await conn.execute(hot.RENEW_LEASES, {"b_host_id": host.id, "until": now + srv.settings.lease_s})
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
        live: set[str] = set()
        if uids:
            live = set((await conn.execute(hot.LIVE_UIDS, {"host_id": host.id, "uids": uids})).scalars())
    return {"lease_s": srv.settings.lease_s, "cancel": [u for u in uids if u not in live]}


@dataclass(frozen=True)
class LiveTask:
    id: int
    uid: str
    job_id: int
    job_uid: str
    job_owner_id: int


async def _live_task(conn: AsyncConnection, caller: Caller, uid_text: str) -> LiveTask:
    """The caller's task if it is still live; 404 if it is not the caller's, 409 if it ended."""
    uid = parse_uid(uid_text, "task_uid")
    row = (await conn.execute(hot.TASK_OF, {"uid": uid})).first()
    if row is None or row[5] != caller.id:
        raise NotFound(f"no task {uid} held by {caller.login}")
    task_id, status, job_id, job_uid, job_owner_id, _host_owner, host_uid, host_enabled = row
    if not host_enabled:
        raise Forbidden(f"host {host_uid} is disabled by an administrator")
    if status != TaskStatus.RUNNING:
        raise Conflict(f"task {uid} is {status}, no longer live; its job went elsewhere")
    return LiveTask(task_id, uid, job_id, job_uid, job_owner_id)


async def upload_result(
    srv: Server,
    caller: Caller,
    task_uid: str,
    chunks: AsyncIterator[bytes],
    *,
    sha256: str | None,
    size: int | None,
) -> dict[str, Any]:
    """Store a task's result archive; it belongs to the job's owner (delegation)."""
    caller.require(UserLevel.WORKER, "uploading results")
    async with srv.engine.connect() as conn:
        task = await _live_task(conn, caller, task_uid)
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
    return {"result_uid": data.uid}


#: what a worker may account for a task, and whether the value is a whole number
ACCOUNTING_KEYS = {"cpu_user_s": False, "cpu_system_s": False, "wall_s": False, "max_rss_bytes": True}
MAX_ACCOUNTED = 2**62  # within a signed 64-bit column; a number of seconds far past any job


def parse_accounting(value: Any) -> dict[str, float | int | None]:
    """``{"cpu_user_s", "cpu_system_s", "wall_s", "max_rss_bytes"}``, each optional (None when
    absent); finite, non-negative numbers, ``max_rss_bytes`` an integer. Anything else is a
    400 naming the key."""
    out: dict[str, float | int | None] = dict.fromkeys(ACCOUNTING_KEYS)
    if value is None:
        return out
    if not isinstance(value, dict):
        raise BadRequest(
            '"accounting" must be an object {"cpu_user_s", "cpu_system_s", "wall_s", "max_rss_bytes"}'
        )
    unknown = set(value) - set(ACCOUNTING_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown accounting keys: {', '.join(sorted(unknown))[:200]}; "
            f"known: {', '.join(ACCOUNTING_KEYS)}"
        )
    for key, whole in ACCOUNTING_KEYS.items():
        v = value.get(key)
        if v is None:
            continue
        if whole:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_ACCOUNTED:
                raise BadRequest(f'"accounting.{key}" must be an integer from 0 to {MAX_ACCOUNTED}')
        elif (
            not isinstance(v, int | float)
            or isinstance(v, bool)
            or not math.isfinite(v)
            or not 0 <= v <= MAX_ACCOUNTED
        ):
            raise BadRequest(f'"accounting.{key}" must be a finite number of seconds, 0 or more')
        out[key] = v if whole else float(v)
    return out


@dataclass(frozen=True)
class Report:
    """A validated final report of one task."""

    status: TaskStatus
    exit_code: int | None
    message: str | None
    result_uid: str | None
    #: ACCOUNTING_KEYS, each None when not reported
    accounting: dict[str, float | int | None] = field(default_factory=lambda: dict.fromkeys(ACCOUNTING_KEYS))

    @property
    def job_status(self) -> JobStatus:
        return JobStatus.COMPLETED if self.status == TaskStatus.COMPLETED else JobStatus.ERROR


def parse_report(body: Any) -> Report:
    if not isinstance(body, dict):
        raise BadRequest('expected {"status": "COMPLETED"|"ERROR", "exit_code": int, ...}')
    try:
        status: TaskStatus | None = TaskStatus(str(body.get("status", "")).upper())
    except ValueError:
        status = None
    if status not in (TaskStatus.COMPLETED, TaskStatus.ERROR):
        raise BadRequest('"status" must be COMPLETED or ERROR')
    exit_code = body.get("exit_code")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise BadRequest('"exit_code" must be an integer or null')
    if exit_code is not None and not -(2**31) <= exit_code < 2**31:
        raise BadRequest('"exit_code" is out of range')
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        raise BadRequest('"message" must be a string or null')
    if message:
        # a worker's message may quote a job's output; NUL is the one character no database stores
        message = message.replace("\0", "\ufffd")
    result_uid = body.get("result_uid")
    if result_uid is not None and not isinstance(result_uid, str):
        raise BadRequest('"result_uid" must be the UID the result upload answered, or null')
    return Report(
        status=status,
        exit_code=exit_code,
        message=message[:MAX_MESSAGE] if message else None,
        result_uid=parse_uid(result_uid, "result_uid") if result_uid else None,
        accounting=parse_accounting(body.get("accounting")),
    )


async def _apply_report(
    conn: AsyncConnection, caller: Caller, task_uid: str, rep: Report, now: float
) -> None:
    """Finish one live task and its job, inside the caller's transaction (guarded updates)."""
    task = await _live_task(conn, caller, task_uid)
    result_id = None
    if rep.result_uid:
        result = (await conn.execute(hot.RESULT_OF, {"uid": rep.result_uid})).first()
        if result is None or result.task_id != task.id:
            raise BadRequest("result_uid does not name a result uploaded for this task")
        result_id = result.id
    done = await conn.execute(
        hot.FINISH_TASK,
        {
            "task_id": task.id,
            "b_status": rep.status.value,
            "now": now,
            "b_exit_code": rep.exit_code,
            **{f"b_{k}": v for k, v in rep.accounting.items()},
        },
    )
    if done.rowcount != 1:
        raise Conflict(f"task {task.uid} is no longer live")
    await conn.execute(
        hot.FINISH_JOB,
        {
            "job_id": task.job_id,
            "b_status": rep.job_status.value,
            "b_exit_code": rep.exit_code,
            "b_message": rep.message,
            "result_id": result_id,
            "now": now,
        },
    )


def parse_inline_result(body: Any) -> tuple[bytes, str] | None:
    """A report's ``result_inline`` ``{"content_b64", "sha256"}``: the archive and its sha256,
    or None. At most ``INLINE_RESULT_MAX_BYTES``; bigger results go through the upload."""
    value = body.get("result_inline") if isinstance(body, dict) else None
    if value is None:
        return None
    limit = defaults.INLINE_RESULT_MAX_BYTES
    if (
        not isinstance(value, dict)
        or set(value) != {"content_b64", "sha256"}
        or not all(isinstance(v, str) for v in value.values())
    ):
        raise BadRequest('"result_inline" must be {"content_b64": base64 text, "sha256": hex digest}')
    if len(value["content_b64"]) > (limit + 2) // 3 * 4:
        raise BadRequest(f'"result_inline" holds at most {limit} bytes; upload bigger results first')
    try:
        content = base64.b64decode(value["content_b64"], validate=True)
    except ValueError:
        raise BadRequest('"result_inline.content_b64" is not valid base64') from None
    if len(content) > limit:
        raise BadRequest(f'"result_inline" holds at most {limit} bytes; upload bigger results first')
    return content, value["sha256"]


async def _one_chunk(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def report(srv: Server, caller: Caller, task_uid: str, body: Any) -> dict[str, Any]:
    caller.require(UserLevel.WORKER, "reporting results")
    rep = parse_report(body)
    inline = parse_inline_result(body)
    if inline is not None:
        if rep.result_uid:
            raise BadRequest('give "result_uid" or "result_inline", not both')
        content, sha256 = inline
        # stored like any uploaded result (sha256 checked, owned by the job's owner)
        stored = await upload_result(
            srv, caller, task_uid, _one_chunk(content), sha256=sha256, size=len(content)
        )
        rep = dataclasses.replace(rep, result_uid=stored["result_uid"])
    async with srv.engine.begin() as conn:
        await _apply_report(conn, caller, task_uid, rep, time.time())
    return {"job_status": rep.job_status.value}


async def report_many(srv: Server, caller: Caller, items: Any) -> list[dict[str, Any]]:
    """Reports carried by a work request, in one transaction; each answered on its own.

    A worker that finishes a task and wants the next one says both in one call (as
    BOINC's scheduler RPC does): half the requests of the main path.
    """
    caller.require(UserLevel.WORKER, "reporting results")
    if not isinstance(items, list) or len(items) > MAX_TASKS_PER_CALL:
        raise BadRequest(f'"reports" must be a list of at most {MAX_TASKS_PER_CALL} reports')
    parsed: list[tuple[str, Report]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("task_uid"), str):
            raise BadRequest(f'reports[{i}] must be an object with a "task_uid"')
        try:
            parsed.append((parse_uid(item["task_uid"], "task_uid"), parse_report(item)))
        except BadRequest as exc:
            raise BadRequest(f"reports[{i}]: {exc.message}") from None
    outcomes: list[dict[str, Any]] = []
    now = time.time()
    async with srv.engine.begin() as conn:
        for task_uid, rep in parsed:
            try:
                await _apply_report(conn, caller, task_uid, rep, now)
            except XWError as exc:
                outcomes.append({"task_uid": task_uid, "error": exc.code, "message": exc.message})
            else:
                outcomes.append({"task_uid": task_uid, "job_status": rep.job_status.value})
    return outcomes


async def release(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    """A stopping worker hands tasks back: their jobs return to PENDING, no retry spent."""
    caller.require(UserLevel.WORKER, "handing tasks back")
    uids = _task_uids(body)
    host = await own_host(srv, caller, body.get("host_uid"))
    return {"released": await release_tasks(srv, host.id, uids)}


async def release_tasks(srv: Server, host_id: int, uids: list[str]) -> int:
    """Abort a host's live tasks and put their jobs back to PENDING without spending a retry."""
    if not uids:
        return 0
    async with srv.sessions.begin() as session:
        released = await release_host_tasks(session, host_id, uids)
    srv.notifier.notify(released)
    return released


async def reap(srv: Server, *, now: float | None = None, batch: int = 1000) -> int:
    """Expired leases: task LOST; job back to PENDING (retry+1) or ERROR once retries are spent."""
    now = time.time() if now is None else now
    async with srv.sessions.begin() as session:
        q = (
            select(Task.id, Task.job_id)
            .where(Task.status == TaskStatus.RUNNING, Task.lease_expires_at < now)
            .limit(batch)
        )
        if srv.skip_locked:
            q = q.with_for_update(skip_locked=True)
        rows = (await session.execute(q)).all()
        if not rows:
            return 0
        await session.execute(
            update(Task)
            .where(Task.id.in_([r.id for r in rows]), Task.status == TaskStatus.RUNNING)
            .values(status=TaskStatus.LOST, ended_at=now)
        )
        job_ids = [r.job_id for r in rows]
        requeued = await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.RUNNING, Job.retry < Job.max_retry)
            .values(status=JobStatus.PENDING, retry=Job.retry + 1, started_at=None)
        )
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.ERROR,
                completed_at=now,
                message="its worker stopped answering and its retries are spent (max_retry reached)",
            )
        )
    n = requeued.rowcount or 0  # type: ignore[attr-defined]
    log.info("reaped %d lost tasks, %d jobs rescheduled", len(rows), n)
    srv.notifier.notify(n)
    return len(rows)


async def grant_restart_grace(srv: Server, *, now: float | None = None) -> int:
    """At start, give every live task a fresh lease: its worker could not heartbeat while we were down."""
    now = time.time() if now is None else now
    async with srv.sessions.begin() as session:
        result = await session.execute(
            update(Task)
            .where(Task.status == TaskStatus.RUNNING, Task.lease_expires_at < now + srv.settings.lease_s)
            .values(lease_expires_at=now + srv.settings.lease_s)
        )
    return result.rowcount or 0  # type: ignore[attr-defined]


async def reaper_loop(srv: Server) -> None:
    """Runs for the server's life; one error never stops it."""
    delay = srv.settings.reaper_interval_s
    while True:
        await asyncio.sleep(delay)
        try:
            await reap(srv)
            delay = srv.settings.reaper_interval_s
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lease reaper failed; retrying")
            delay = min(delay * 2, 60.0)
