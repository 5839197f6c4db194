"""The claim: hand PENDING jobs to a worker that may run them, in one short transaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, select, update

from xwcommon import defaults
from xwcommon.errors import BadRequest
from xwcommon.levels import UserLevel
from xwcommon.platforms import ANY
from xwcommon.status import JobStatus, TaskStatus
from xwcommon.uri import new_uid

from .access import Caller
from .db.models import App, AppBinary, Data, Host, Job, Task, User
from .hosts import own_host
from .leases import release_tasks
from .state import Server
from .wire import iso

MAX_CAPACITY = 256
MAX_WAIT_S = 60.0


def eligible(caller: Caller) -> ColumnElement[bool]:
    """Which jobs a worker identity may run (DESIGN: public, group and private workers)."""
    if caller.rights >= UserLevel.STANDARD:
        # a private worker runs its owner's jobs only
        return Job.owner_id == caller.id
    if caller.group_id is None:
        # a public worker runs public jobs (executable by others)
        return Job.access_rights.op("&")(0o001) != 0
    members = select(User.id).where(User.group_id == caller.group_id)
    return and_(Job.owner_id.in_(members), Job.access_rights.op("&")(0o011) != 0)


def _binary_rank(os_name: str, cpu: str) -> int:
    """Prefer the most specific binary: exact (os, cpu) over one 'any' over both."""
    return (os_name == ANY) + (cpu == ANY)


async def claim(srv: Server, caller: Caller, host: Host, capacity: int) -> list[dict[str, Any]]:
    now = time.time()
    lease_until = now + srv.settings.lease_s
    platforms = (AppBinary.os.in_([host.os, ANY]), AppBinary.cpu.in_([host.cpu, ANY]))
    async with srv.sessions.begin() as session:
        q = (
            select(Job.id, Job.uid, Job.app_id, Job.args, Job.stdin_data_id, Job.env_data_id)
            .where(
                Job.status == JobStatus.PENDING,
                Job.app_id.in_(select(AppBinary.app_id).where(*platforms)),
                eligible(caller),
            )
            .order_by(Job.id)
            .limit(capacity)
        )
        if srv.skip_locked:
            q = q.with_for_update(skip_locked=True, of=Job)
        jobs = (await session.execute(q)).all()
        if not jobs:
            return []
        await session.execute(
            update(Job)
            .where(Job.id.in_([j.id for j in jobs]), Job.status == JobStatus.PENDING)
            .values(status=JobStatus.RUNNING, started_at=now)
        )
        tasks = [
            {
                "uid": new_uid(),
                "job_id": j.id,
                "host_id": host.id,
                "status": TaskStatus.RUNNING.value,
                "started_at": now,
                "lease_expires_at": lease_until,
            }
            for j in jobs
        ]
        await session.execute(insert(Task), tasks)
        app_ids = {j.app_id for j in jobs}
        binaries: dict[int, tuple[int, dict[str, Any], str]] = {}
        rows = await session.execute(
            select(AppBinary.app_id, AppBinary.os, AppBinary.cpu, Data.uid, Data.sha256, Data.size, App.name)
            .join(Data, Data.id == AppBinary.data_id)
            .join(App, App.id == AppBinary.app_id)
            .where(AppBinary.app_id.in_(app_ids), *platforms)
        )
        for app_id, os_name, cpu, d_uid, sha, size, app_name in rows:
            rank = _binary_rank(os_name, cpu)
            if app_id not in binaries or rank < binaries[app_id][0]:
                binaries[app_id] = (rank, {"data_uid": d_uid, "sha256": sha, "size": size}, app_name)
        input_ids = {i for j in jobs for i in (j.stdin_data_id, j.env_data_id) if i is not None}
        inputs: dict[int, dict[str, Any]] = {}
        if input_ids:
            for d_id, d_uid, sha, size in await session.execute(
                select(Data.id, Data.uid, Data.sha256, Data.size).where(Data.id.in_(input_ids))
            ):
                inputs[d_id] = {"data_uid": d_uid, "sha256": sha, "size": size}
    return [
        {
            "task_uid": t["uid"],
            "job_uid": j.uid,
            "app_name": binaries[j.app_id][2],
            "args": json.loads(j.args),
            "lease_expires_at": iso(lease_until),
            "binary": binaries[j.app_id][1],
            "stdin": inputs.get(j.stdin_data_id) if j.stdin_data_id else None,
            "env": inputs.get(j.env_data_id) if j.env_data_id else None,
        }
        for j, t in zip(jobs, tasks, strict=True)
    ]


def _always() -> bool:
    return True


async def request_work(
    srv: Server, caller: Caller, body: Any, *, connected: Callable[[], bool] = _always
) -> list[dict[str, Any]]:
    """Long-poll: claim at once, else wait for a submission (or the re-check timer).

    ``connected`` tells whether the worker is still there: jobs claimed for a request
    whose worker went away meanwhile are handed back at once instead of waiting for
    their lease to expire (which would also spend a retry).
    """
    caller.require(UserLevel.WORKER, "requesting work")
    if not isinstance(body, dict):
        raise BadRequest('expected {"host_uid": ..., "capacity": k, "wait_s": s}')
    capacity = body.get("capacity", 1)
    if not isinstance(capacity, int) or isinstance(capacity, bool) or not 1 <= capacity <= MAX_CAPACITY:
        raise BadRequest(f'"capacity" must be an integer from 1 to {MAX_CAPACITY}')
    wait_s = body.get("wait_s", defaults.WORK_REQUEST_WAIT_S)
    if not isinstance(wait_s, int | float) or isinstance(wait_s, bool) or not 0 <= wait_s <= MAX_WAIT_S:
        raise BadRequest(f'"wait_s" must be a number of seconds from 0 to {MAX_WAIT_S:g}')
    host = await own_host(srv, caller, body.get("host_uid"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        if not connected():
            srv.notifier.notify(1)  # pass a wake-up this request may have taken to a live one
            return []
        got = await claim(srv, caller, host, capacity)
        if got and not connected():
            await release_tasks(srv, host.id, [a["task_uid"] for a in got])
            return []
        remaining = deadline - loop.time()
        if got or remaining <= 0 or srv.notifier.closing:
            return got
        await srv.notifier.wait(min(srv.settings.work_request_recheck_s, remaining))
