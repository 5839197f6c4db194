"""Data objects: streamed uploads into the content store, reads checked against access bits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import UserLevel
from xwcommon.status import DataStatus, TaskStatus
from xwcommon.uri import new_uid, parse_uid

from .access import DATA_DEFAULT_RIGHTS, READ, WRITE, Caller, may
from .db.models import AppBinary, Data, Host, Job, Task, User
from .state import Server, uid_maps

MAX_NAME = 255


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME:
        raise BadRequest(f"{what} is longer than {MAX_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise BadRequest(f"{what} must not contain control characters")
    return name


def check_sha256(text: str | None) -> str | None:
    if text is None:
        return None
    t = text.strip().lower()
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise BadRequest("sha256 must be 64 hexadecimal characters")
    return t


async def store_upload(
    srv: Server,
    caller: Caller,
    chunks: AsyncIterator[bytes],
    *,
    name: str,
    owner_id: int | None = None,
    access_rights: int = DATA_DEFAULT_RIGHTS,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    task_id: int | None = None,
) -> Data:
    """Stream a body into the store, then record it as AVAILABLE data."""
    check_name(name)
    sha, size = await srv.store.put(
        chunks,
        max_bytes=srv.settings.max_body_bytes,
        expected_sha256=check_sha256(expected_sha256),
        expected_size=expected_size,
    )
    data = Data(
        uid=new_uid(),
        name=name,
        size=size,
        sha256=sha,
        status=DataStatus.AVAILABLE,
        owner_id=owner_id if owner_id is not None else caller.id,
        access_rights=access_rights,
        created_at=time.time(),
        task_id=task_id,
    )
    async with srv.sessions.begin() as session:
        session.add(data)
    return data


async def _owner_group(session: AsyncSession, owner_id: int) -> int | None:
    return (await session.execute(select(User.group_id).where(User.id == owner_id))).scalar_one_or_none()


async def worker_holds_input(session: AsyncSession, caller: Caller, data_id: int) -> bool:
    """Delegation: a worker may read a job's inputs while it holds that job's live task."""
    live = (
        select(Task.id)
        .join(Host, Host.id == Task.host_id)
        .join(Job, Job.id == Task.job_id)
        .where(
            Host.owner_id == caller.id,
            Task.status == TaskStatus.RUNNING,
            or_(
                Job.stdin_data_id == data_id,
                Job.env_data_id == data_id,
                exists().where(and_(AppBinary.app_id == Job.app_id, AppBinary.data_id == data_id)),
            ),
        )
        .limit(1)
    )
    return (await session.execute(live)).first() is not None


async def get_readable(
    srv: Server, caller: Caller, uid_text: str, *, session: AsyncSession | None = None
) -> Data:
    """The data if the caller may read it. Pass the caller's open ``session`` when there is
    one: a second connection would wait forever on SQLite's one-connection pool."""
    if session is None:
        async with srv.sessions() as own:
            return await _readable(own, caller, uid_text)
    return await _readable(session, caller, uid_text)


async def _readable(session: AsyncSession, caller: Caller, uid_text: str) -> Data:
    uid = parse_uid(uid_text)
    data = (await session.execute(select(Data).where(Data.uid == uid))).scalar_one_or_none()
    if data is None:
        raise NotFound(f"no data {uid}")
    group = await _owner_group(session, data.owner_id)
    if may(caller, READ, owner_id=data.owner_id, owner_group_id=group, access_rights=data.access_rights):
        return data
    if (
        caller.rights == UserLevel.WORKER or caller.rights >= UserLevel.STANDARD
    ) and await worker_holds_input(session, caller, data.id):
        return data
    raise NotFound(f"no data {uid}")


async def list_data(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    async with srv.sessions() as session:
        q = select(Data).order_by(Data.id)
        if not caller.is_super:
            q = q.where(Data.owner_id == caller.id)
        rows = list((await session.execute(q)).scalars())
        users = (await uid_maps(session, {"user": [d.owner_id for d in rows]}))["user"]
    return [srv.wire.data(d, users.get(d.owner_id, "")) for d in rows]


async def render(srv: Server, data: Data) -> dict[str, Any]:
    async with srv.sessions() as session:
        users = (await uid_maps(session, {"user": [data.owner_id]}))["user"]
    return srv.wire.data(data, users.get(data.owner_id, ""))


async def delete(srv: Server, caller: Caller, uid_text: str) -> None:
    uid = parse_uid(uid_text)
    async with srv.sessions.begin() as session:
        data = (await session.execute(select(Data).where(Data.uid == uid))).scalar_one_or_none()
        if data is None:
            raise NotFound(f"no data {uid}")
        group = await _owner_group(session, data.owner_id)
        if not may(
            caller, READ, owner_id=data.owner_id, owner_group_id=group, access_rights=data.access_rights
        ):
            raise NotFound(f"no data {uid}")
        if not (caller.is_super or caller.id == data.owner_id) and not may(
            caller, WRITE, owner_id=data.owner_id, owner_group_id=group, access_rights=data.access_rights
        ):
            raise Forbidden(f"data {uid} is not yours to delete")
        used = await session.execute(
            select(func.count()).select_from(AppBinary).where(AppBinary.data_id == data.id)
        )
        if used.scalar_one():
            raise Conflict(f"data {uid} is an application's binary; remove the application first")
        pending = await session.execute(
            select(func.count())
            .select_from(Job)
            .where(
                or_(Job.stdin_data_id == data.id, Job.env_data_id == data.id, Job.result_data_id == data.id)
            )
        )
        if pending.scalar_one():
            raise Conflict(f"data {uid} is used by jobs; remove those jobs first")
        sha = data.sha256
        await session.delete(data)
    await collect_digest(srv, sha)


async def collect_digest(srv: Server, sha: str) -> None:
    """Remove a stored file once no data row references its digest."""
    async with srv.sessions() as session:
        left = (
            await session.execute(select(func.count()).select_from(Data).where(Data.sha256 == sha))
        ).scalar_one()
    if not left:
        srv.store.delete(sha)
