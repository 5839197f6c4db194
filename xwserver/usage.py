"""Usage per user and per user group over a period: jobs, tasks, CPU and wall seconds, bytes.

Read from what is on record: jobs (``created_at``), their tasks' accounting (``ended_at``,
``cpu_user_s``, ``cpu_system_s``, ``wall_s``) and data (``created_at``; a result is data with
``task_id`` set). A job removed (as ``xwresults`` does once it fetched the result) takes its
tasks and result with it: what they used is kept first in the usage ledger, summed per owner
and hour (``lifecycle.remove_jobs``), and read here beside what is on record (so a period
boundary cuts removed jobs' usage to the hour).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from xwcommon.errors import BadRequest
from xwcommon.protocol.usage import MOMENT_PATTERN

from .access import Caller
from .db.models import Data, Job, Task, UsageLedger, User, UserGroup
from .state import Server
from .wire import iso

MOMENT_PATTERN_RE = re.compile(MOMENT_PATTERN)
#: fields of each row, summed per user then per group
_SUMS = ("jobs", "tasks", "cpu_s", "wall_s", "bytes_up", "bytes_down")


def parse_time(text: str | None, name: str) -> float | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as epoch seconds; exactly
    what :data:`MOMENT_PATTERN` (the OpenAPI document's pattern) matches."""
    if text is None or text == "":
        return None
    if not MOMENT_PATTERN_RE.match(text):
        raise BadRequest(
            f"{name}: {text[:40]!r} is not an ISO 8601 date or time of the years 1000 to 8999 "
            "(e.g. 2026-12-01, 2026-12-01T08:00:00Z or 2026-12-01T09:00+01:00)"
        )
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _within(column: Any, since: float | None, until: float) -> ColumnElement[bool]:
    clause = column < until
    return clause if since is None else (column >= since) & clause


async def usage(
    srv: Server,
    caller: Caller,
    *,
    since: str | None = None,
    until: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A SUPER user sees every user and every group; any other user itself only. A period
    with ``since`` not before ``until`` is empty: every count is 0."""
    start = parse_time(since, "since")
    end = parse_time(until, "until")
    if end is None:
        end = time.time() if now is None else now
    if start is not None and start >= end:
        end = start  # an empty period: nothing was used in it
    mine = None if caller.is_super else caller.id
    rows: dict[int, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(_SUMS, 0))

    def owned(column: Any) -> ColumnElement[bool]:
        return column == mine if mine is not None else column.isnot(None)

    async with srv.sessions() as session:
        q_jobs = (
            select(Job.owner_id, func.count())
            .where(_within(Job.created_at, start, end), owned(Job.owner_id))
            .group_by(Job.owner_id)
        )
        for owner, n in await session.execute(q_jobs):
            rows[owner]["jobs"] = int(n)
        q_tasks = (
            select(
                Job.owner_id,
                func.count(),
                func.coalesce(
                    func.sum(func.coalesce(Task.cpu_user_s, 0.0) + func.coalesce(Task.cpu_system_s, 0.0)), 0.0
                ),
                func.coalesce(func.sum(Task.wall_s), 0.0),
            )
            .join(Job, Job.id == Task.job_id)
            .where(Task.ended_at.isnot(None), _within(Task.ended_at, start, end), owned(Job.owner_id))
            .group_by(Job.owner_id)
        )
        for owner, n, cpu_s, wall_s in await session.execute(q_tasks):
            rows[owner].update(tasks=int(n), cpu_s=float(cpu_s or 0), wall_s=float(wall_s or 0))
        q_data = (
            select(Data.owner_id, Data.task_id.is_(None), func.coalesce(func.sum(Data.size), 0))
            .where(_within(Data.created_at, start, end), owned(Data.owner_id))
            .group_by(Data.owner_id, Data.task_id.is_(None))
        )
        for owner, uploaded, size in await session.execute(q_data):
            rows[owner]["bytes_up" if uploaded else "bytes_down"] += int(size)
        q_ledger = (  # what removed jobs had used (lifecycle.remove_jobs keeps it, per hour)
            select(
                UsageLedger.owner_id,
                func.sum(UsageLedger.jobs),
                func.sum(UsageLedger.tasks),
                func.sum(UsageLedger.cpu_s),
                func.sum(UsageLedger.wall_s),
                func.sum(UsageLedger.bytes_down),
            )
            .where(_within(UsageLedger.at, start, end), owned(UsageLedger.owner_id))
            .group_by(UsageLedger.owner_id)
        )
        for owner, n_jobs, n_tasks, cpu_s, wall_s, down in await session.execute(q_ledger):
            r = rows[owner]
            r["jobs"] += int(n_jobs or 0)
            r["tasks"] += int(n_tasks or 0)
            r["cpu_s"] += float(cpu_s or 0)
            r["wall_s"] += float(wall_s or 0)
            r["bytes_down"] += int(down or 0)
        ids = set(rows) | ({caller.id} if mine is not None else set())
        q_users = select(User.id, User.login, UserGroup.label).outerjoin(
            UserGroup, UserGroup.id == User.group_id
        )
        q_users = q_users.where(User.id.in_(ids)) if mine is not None else q_users
        people = {uid: (login, label or "") for uid, login, label in await session.execute(q_users)}

    out = []
    groups: dict[str, dict[str, Any]] = {}
    for user_id, (login, group) in sorted(people.items(), key=lambda item: item[1][0]):
        sums = rows.get(user_id, dict.fromkeys(_SUMS, 0))
        out.append({"scope": "user", "name": login, "group": group, "users": 1, **sums})
        if group:
            g = groups.setdefault(group, {"users": 0, **dict.fromkeys(_SUMS, 0)})
            g["users"] += 1
            for k in _SUMS:
                g[k] += sums[k]
    if mine is None:
        out += [{"scope": "group", "name": label, "group": label, **g} for label, g in sorted(groups.items())]
    for row in out:
        row["cpu_s"], row["wall_s"] = round(float(row["cpu_s"]), 6), round(float(row["wall_s"]), 6)
    return {"since": iso(start), "until": iso(end), "usage": out}
