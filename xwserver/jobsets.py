"""Sessions and groups of jobs (XWHEP's sessions and groups).

Both are named sets of jobs that a user submits into (``session_uid``, ``group_uid`` in a
job spec), lists by (``GET /jobs?session=…&group=…``) and removes in one go, jobs included.
They have one shape, so one implementation serves both; :data:`SESSIONS` and
:data:`GROUPS` tell them apart. Groups of *users* are another thing: see ``groups.py``.

Access bits as on apps and data (private ``0700`` by default): reading a set lets one see
it and its job counts; writing it lets one submit jobs into it; only its owner (or SUPER)
removes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import PRIVATE, UserLevel, format_access_rights, parse_access_rights
from xwcommon.uri import new_uid, parse_uid

from . import lifecycle
from .access import READ, WRITE, Caller, may_on, may_sql
from .data import check_name
from .db.models import Job, JobGroup, JobSession
from .state import Server, uid_maps
from .wire import iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSetKind:
    """One of the two kinds of job sets."""

    #: the kind's name in messages and in ``GET /objects/{uid}``
    name: str
    model: Any  # JobSession or JobGroup, one shape
    #: where the routes live, below /api/v1
    path: str
    #: the column of a job that names its set of this kind
    job_column: Any


SESSIONS = JobSetKind("session", JobSession, "/sessions", Job.session_id)
GROUPS = JobSetKind("group", JobGroup, "/groups", Job.group_id)
KINDS = {k.name: k for k in (SESSIONS, GROUPS)}


async def create(srv: Server, caller: Caller, kind: JobSetKind, body: Any) -> dict[str, Any]:
    caller.require(UserLevel.STANDARD, f"creating a {kind.name}")
    if not isinstance(body, dict):
        raise BadRequest(f'expected {{"name": "...", "access_rights"?: "0700"}} for a {kind.name}')
    unknown = set(body) - {"name", "access_rights"}
    if unknown:
        raise BadRequest(f"unknown {kind.name} fields: {', '.join(sorted(unknown))[:200]}")
    name = check_name(body.get("name"), f'"name" of the {kind.name}')  # type: ignore[arg-type]
    asked = body.get("access_rights")
    try:
        rights = PRIVATE if asked is None else parse_access_rights(asked)
    except BadRequest as exc:
        raise BadRequest(f'"access_rights": {exc.message}') from None
    row = kind.model(
        uid=new_uid(), name=name, owner_id=caller.id, access_rights=rights, created_at=time.time()
    )
    async with srv.sessions.begin() as session:
        session.add(row)
        await session.flush()
        [shown] = await render(srv, session, kind, [row])
    log.info("%s %s created by %s", kind.name, row.uid, caller.login)
    return shown


async def render(
    srv: Server, session: AsyncSession, kind: JobSetKind, rows: list[Any]
) -> list[dict[str, Any]]:
    """``{"uid","uri","name","owner_uid","access_rights","created_at","job_counts"}``."""
    ids = [r.id for r in rows]
    counts: dict[int, dict[str, int]] = {}
    column = kind.job_column
    for start in range(0, len(ids), 900):
        found = await session.execute(
            select(column, Job.status, func.count())
            .where(column.in_(ids[start : start + 900]))
            .group_by(column, Job.status)
        )
        for set_id, status, n in found:
            counts.setdefault(set_id, {})[status] = n
    owners = (await uid_maps(session, {"user": [r.owner_id for r in rows]}))["user"]
    return [
        {
            "uid": r.uid,
            "uri": srv.wire.uri(r.uid),
            "name": r.name,
            "owner_uid": owners.get(r.owner_id, ""),
            "access_rights": format_access_rights(r.access_rights),
            "created_at": iso(r.created_at),
            "job_counts": counts.get(r.id, {}),
        }
        for r in rows
    ]


async def find(
    session: AsyncSession, caller: Caller, kind: JobSetKind, uid_text: str, bit: int = READ, what: str = ""
) -> Any:
    """A set by UID or URI: 404 unless the caller may read it, 403 unless it may ``bit`` it.

    ``what`` names the request field the reference came from, so errors say which.
    """
    prefix = f"{what}: " if what else ""
    uid = parse_uid(uid_text, what or kind.name)
    row = (await session.execute(select(kind.model).where(kind.model.uid == uid))).scalar_one_or_none()
    if row is None or not await may_on(
        session, caller, READ, owner_id=row.owner_id, access_rights=row.access_rights
    ):
        raise NotFound(f"{prefix}no {kind.name} {uid} visible to you; list them with GET {kind.path}")
    if bit != READ and not await may_on(
        session, caller, bit, owner_id=row.owner_id, access_rights=row.access_rights
    ):
        doing = "add jobs to" if bit == WRITE else "use"
        raise Forbidden(
            f"{prefix}you may not {doing} {kind.name} {uid}: its access rights are "
            f"{format_access_rights(row.access_rights)}"
        )
    return row


async def list_sets(srv: Server, caller: Caller, kind: JobSetKind) -> list[dict[str, Any]]:
    """The sets of that kind the caller may read, oldest first (filtered in SQL)."""
    model = kind.model
    q = select(model).where(may_sql(caller, READ, model.owner_id, model.access_rights)).order_by(model.id)
    async with srv.sessions() as session:
        rows = list((await session.execute(q)).scalars())
        return await render(srv, session, kind, rows)


async def get(srv: Server, caller: Caller, kind: JobSetKind, uid_text: str) -> dict[str, Any]:
    async with srv.sessions() as session:
        row = await find(session, caller, kind, uid_text)
        return (await render(srv, session, kind, [row]))[0]


async def delete(srv: Server, caller: Caller, kind: JobSetKind, uid_text: str) -> int:
    """Remove a set and every job in it, in one transaction; returns how many jobs went.

    Each job goes as ``DELETE /jobs/{uid}`` would take it (a running one is aborted, its
    worker told to stop at its next heartbeat); result files are left to the collector.
    Jobs other users put into a set they could write go with it: the set is its owner's.
    """

    caller.require(UserLevel.STANDARD, f"removing a {kind.name}")
    try:
        async with srv.sessions.begin() as session:
            row = await find(session, caller, kind, uid_text)
            if not caller.is_super and row.owner_id != caller.id:
                raise Forbidden(f"only the owner of {kind.name} {row.uid} or a SUPER user may remove it")
            job_ids = list((await session.execute(select(Job.id).where(kind.job_column == row.id))).scalars())
            await lifecycle.remove_jobs(session, job_ids)
            await session.delete(row)
    except DBIntegrityError:  # a job was submitted into it meanwhile: its foreign key refuses
        raise Conflict(
            f"jobs were just submitted into {kind.name} {uid_text[:64]}; remove it again"
        ) from None
    log.info("%s %s removed by %s with its %d jobs", kind.name, row.uid, caller.login, len(job_ids))
    return len(job_ids)
