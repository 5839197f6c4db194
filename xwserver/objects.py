"""Any object by UID (XWHEP's generic actions): get it, change its access rights (chmod).

Apps, data, jobs, tasks, hosts, users, user groups, sessions and groups of jobs share one
UID space; a UID names at most one object of one kind. An object the caller may not read is
answered 404, as if it did not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import UserLevel, apply_access_rights, format_access_rights
from xwcommon.uri import parse_uid

from . import apps, hosts, jobs, jobsets
from .access import READ, Caller, may_on
from .db.models import App, Data, Host, Job, JobGroup, JobSession, Task, User, UserGroup
from .state import Server, uid_maps
from .wire import iso

log = logging.getLogger(__name__)

#: where a UID is looked for, most frequent kinds first
_KINDS: tuple[tuple[str, Any], ...] = (
    ("job", Job),
    ("data", Data),
    ("task", Task),
    ("app", App),
    ("host", Host),
    ("user", User),
    ("usergroup", UserGroup),
    ("session", JobSession),
    ("group", JobGroup),
)

#: why the rights of the other kinds cannot be changed
_FIXED = {
    "app": "an application's rights never change after insertion",
    "job": "a job's rights are its application's",
    "task": "a task has no rights of its own; its job's are its application's",
    "user": "a user has no access rights; SUPER changes its level with PATCH /users/{uid}",
    "usergroup": "a user group has no access rights",
}


@dataclass(frozen=True)
class Found:
    kind: str
    row: Any
    #: who may chmod it besides SUPER (None: nobody)
    owner_id: int | None


async def find_readable(session: AsyncSession, caller: Caller, uid_text: str) -> Found:
    """The object of that UID if the caller may read it; else NotFound."""
    uid = parse_uid(uid_text)
    for kind, model in _KINDS:
        row = (await session.execute(select(model).where(model.uid == uid))).scalar_one_or_none()
        if row is not None:
            found = await _readable(session, caller, kind, row)
            if found is not None:
                return found
            break
    raise NotFound(f"no object {uid}")


async def _readable(session: AsyncSession, caller: Caller, kind: str, row: Any) -> Found | None:
    if kind in ("app", "data", "job", "session", "group"):
        ok = await may_on(session, caller, READ, owner_id=row.owner_id, access_rights=row.access_rights)
        return Found(kind, row, row.owner_id) if ok else None
    if kind == "host":
        ok = caller.rights >= UserLevel.ADVANCED or await may_on(
            session, caller, READ, owner_id=row.owner_id, access_rights=row.access_rights
        )
        return Found(kind, row, row.owner_id) if ok else None
    if kind == "task":
        job = await session.get(Job, row.job_id)
        host = await session.get(Host, row.host_id)
        ok = (host is not None and host.owner_id == caller.id) or (
            job is not None
            and await may_on(session, caller, READ, owner_id=job.owner_id, access_rights=job.access_rights)
        )
        return Found(kind, row, None) if ok else None
    if kind == "user":
        return Found(kind, row, row.id) if caller.is_super or row.id == caller.id else None
    # usergroup: SUPER sees all, a member its own group
    return Found(kind, row, row.owner_id) if caller.is_super or row.id == caller.group_id else None


async def render(srv: Server, session: AsyncSession, found: Found) -> dict[str, Any]:
    """``{"kind", "object"}``, the object as its own endpoint shows it."""
    row = found.row
    obj: dict[str, Any]
    if found.kind == "app":
        obj = (await apps.render(srv, session, [row]))[0]
    elif found.kind == "job":
        obj = (await jobs.render_jobs(srv, session, [row]))[0]
    elif found.kind == "host":
        obj = (await hosts.render(srv, session, [row]))[0]
    elif found.kind == "data":
        owners = (await uid_maps(session, {"user": [row.owner_id]}))["user"]
        obj = srv.wire.data(row, owners.get(row.owner_id, ""))
    elif found.kind == "task":
        uids = await uid_maps(session, {"job": [row.job_id], "host": [row.host_id]})
        obj = srv.wire.task(row, uids["job"].get(row.job_id, ""), uids["host"].get(row.host_id, ""))
    elif found.kind in jobsets.KINDS:
        obj = (await jobsets.render(srv, session, jobsets.KINDS[found.kind], [row]))[0]
    elif found.kind == "user":
        group_uid = (
            (await session.execute(select(UserGroup.uid).where(UserGroup.id == row.group_id))).scalar_one()
            if row.group_id is not None
            else None
        )
        obj = srv.wire.user(row, group_uid)
    else:
        members = (
            await session.execute(select(func.count()).select_from(User).where(User.group_id == row.id))
        ).scalar_one()
        obj = {
            "uid": row.uid,
            "uri": srv.wire.uri(row.uid),
            "label": row.label,
            "created_at": iso(row.created_at),
            "members": members,
        }
    return {"kind": found.kind, "object": obj}


async def get(srv: Server, caller: Caller, uid_text: str) -> dict[str, Any]:
    async with srv.sessions() as session:
        return await render(srv, session, await find_readable(session, caller, uid_text))


async def chmod(srv: Server, caller: Caller, uid_text: str, body: Any) -> dict[str, Any]:
    """Change the access rights of data, a host, a session or a group of jobs: its owner or
    SUPER only.

    404 if the caller may not even read it, 403 if it is not the owner, 409 for the kinds
    whose rights never change (apps, jobs) or that have none (tasks, users, user groups).
    """
    if not isinstance(body, dict) or not isinstance(body.get("rights"), str | int):
        raise BadRequest('expected {"rights": "0750"} (also 750, 0x750, u+r,g-w,o+x,a+r)')
    async with srv.sessions.begin() as session:
        found = await find_readable(session, caller, uid_text)
        row = found.row
        if not caller.is_super and (found.owner_id is None or found.owner_id != caller.id):
            raise Forbidden(
                f"only the owner of {found.kind} {row.uid} or a SUPER user may change its access rights"
            )
        if found.kind in _FIXED:
            raise Conflict(_FIXED[found.kind])
        before = row.access_rights
        row.access_rights = apply_access_rights(body["rights"], before)
        await session.flush()
        answer = await render(srv, session, found)
    if found.kind == "host":
        srv.hosts.drop(row.uid)
    if row.access_rights & ~before:
        # rights widened: a PENDING job that no worker could take (its input unreadable,
        # say) may be claimable now; the waiting work requests claim again at once rather
        # than at their next re-check (at most once a re-check interval: any owner can
        # widen and narrow rights in a loop)
        from .scheduler import recheck_s

        srv.notifier.notify_all_at_most_every(recheck_s(srv))
    _log_change(caller, found, before)
    return answer


def _log_change(caller: Caller, found: Found, before: int) -> None:
    log.info(
        "%s changed the access rights of %s %s from %s to %s",
        caller.login,
        found.kind,
        found.row.uid,
        format_access_rights(before),
        format_access_rights(found.row.access_rights),
    )
