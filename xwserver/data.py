"""Data objects: streamed uploads into the content store, reads checked against access bits."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import UserLevel, format_access_rights
from xwcommon.status import DataStatus, TaskStatus
from xwcommon.uri import new_uid, parse_uid

from .access import DATA_DEFAULT_RIGHTS, READ, WRITE, Caller, may_on, may_sql
from .db.models import AppBinary, Data, Host, Job, Task, User
from .state import Server, uid_maps

MAX_NAME = 255


#: characters no name may hold, because names end up in file names (results, downloads) and
#: on terminals (listings, logs): control characters (C0, DEL, C1), the line and paragraph
#: separators, the bidirectional controls that make ``txt.exe`` show as ``exe.txt``
#: (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), and path separators
FORBIDDEN_IN_NAMES = frozenset(
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["/", "\\"]
)


def check_name(name: str, what: str = "name") -> str:
    """A name as it may be stored: 1 to 255 characters, not all blank, not ``.`` or ``..``,
    none of :data:`FORBIDDEN_IN_NAMES`; the error names the character."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME:
        raise BadRequest(f"{what} is longer than {MAX_NAME} characters")
    bad = next((c for c in name if c in FORBIDDEN_IN_NAMES), None)
    if bad is not None:
        kind = "a path separator" if bad in "/\\" else "a control or bidirectional character"
        raise BadRequest(f"{what} must not contain {kind} (U+{ord(bad):04X} in {name[:64]!r})")
    if name in (".", ".."):
        raise BadRequest(f"{what} must not be {name!r} (it would name a folder)")
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
    """Stream a body into the store, then record it as AVAILABLE data. Empty content is
    stored only when announced (``expected_size`` 0): an empty body with no size announced is
    a request that lost its content on the way, or never had any."""
    check_name(name)
    if expected_size is None:
        chunks = await _not_empty(chunks)
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


#: what a request with no content and no ``size`` is told
EMPTY_BODY = (
    "the body is empty and no size was given: send the content, or size=0 (with, if any, "
    f"sha256={hashlib.sha256(b'').hexdigest()}) to store empty data"
)


async def _not_empty(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` again, once its first bytes came; a 400 (:data:`EMPTY_BODY`) if none come."""
    it = aiter(chunks)
    async for first in it:
        if first:
            break
    else:
        raise BadRequest(EMPTY_BODY)

    async def again() -> AsyncIterator[bytes]:
        yield first
        async for chunk in it:
            yield chunk

    return again()


async def _held_inputs(session: AsyncSession, caller: Caller, data_id: int) -> list[tuple[int, bool]]:
    """Delegation: the live tasks of the caller's enabled hosts whose job refers to the data,
    as (job owner, whether the data is the job's app binary rather than its stdin or env)."""
    rows = await session.execute(
        select(Job.owner_id, Job.stdin_data_id, Job.env_data_id)
        .join(Task, Task.job_id == Job.id)
        .join(Host, Host.id == Task.host_id)
        .where(
            Host.owner_id == caller.id,
            Host.enabled.is_(True),
            Task.status == TaskStatus.RUNNING,
            or_(
                Job.stdin_data_id == data_id,
                Job.env_data_id == data_id,
                exists().where(and_(AppBinary.app_id == Job.app_id, AppBinary.data_id == data_id)),
            ),
        )
        .limit(100)
    )
    return [(owner_id, data_id not in (stdin_id, env_id)) for owner_id, stdin_id, env_id in rows]


async def worker_holds_input(session: AsyncSession, caller: Caller, data_id: int) -> bool:
    """Delegation: a worker may read a job's inputs while it holds that job's live task."""
    return bool(await _held_inputs(session, caller, data_id))


async def get_readable(
    srv: Server, caller: Caller, uid_text: str, *, session: AsyncSession | None = None
) -> Data:
    """The data if the caller may read it. Pass the caller's open ``session`` when there is
    one: a second connection would wait forever on SQLite's one-connection pool."""
    if session is None:
        async with srv.sessions() as own:
            return await _readable(own, caller, uid_text)
    return await _readable(session, caller, uid_text)


async def _find(session: AsyncSession, uid_text: str) -> Data:
    uid = parse_uid(uid_text)
    data = (await session.execute(select(Data).where(Data.uid == uid))).scalar_one_or_none()
    if data is None:
        raise NotFound(f"no data {uid}")
    return data


async def _readable(session: AsyncSession, caller: Caller, uid_text: str) -> Data:
    data = await _find(session, uid_text)
    if caller.rights >= UserLevel.STANDARD and await may_on(
        session, caller, READ, owner_id=data.owner_id, access_rights=data.access_rights
    ):
        return data
    raise NotFound(f"no data {data.uid}")


async def get_content(srv: Server, caller: Caller, uid_text: str) -> Data:
    """Data whose content the caller may download: data it may read (STANDARD and up), or an
    input of a task one of its hosts holds live (delegation, the only way for a WORKER).

    A held task's app binary may always be read (the worker was given the job because it
    may run that app). Its stdin and env only if the worker's own identity may read them
    by the access bits, as XWHEP's manual has it: a public worker reads public data, a
    group worker also its group's, a private worker also its owner's. Otherwise 403 with a
    message that says so; the worker then reports the task ERROR with it. (Reading them on
    the owner's behalf instead would hand an untrusted volunteer the owner's private data.)
    """
    async with srv.sessions() as session:
        data = await _find(session, uid_text)
        readable = await may_on(
            session, caller, READ, owner_id=data.owner_id, access_rights=data.access_rights
        )
        if caller.rights >= UserLevel.STANDARD and readable:
            return _stored(data)
        held = await _held_inputs(session, caller, data.id)
        if not held:
            raise NotFound(f"no data {data.uid}")
        if readable or any(binary for _owner, binary in held):
            return _stored(data)
    raise Forbidden(
        f"worker {caller.login} may not read input {data.uid} (access rights "
        f"{format_access_rights(data.access_rights)}): its job cannot run on this worker"
    )


def _stored(data: Data) -> Data:
    """``data`` if this server holds its content; data by URL is fetched from its URL."""
    if data.url:
        raise Conflict(f"data {data.uid} is not stored on this server: fetch it from {data.url}")
    return data


async def list_data(srv: Server, caller: Caller, *, owner: str | None = None) -> list[dict[str, Any]]:
    """The data the caller may read; ``owner`` ("me" or a user UID) keeps one owner's."""
    async with srv.sessions() as session:
        q = select(Data).where(may_sql(caller, READ, Data.owner_id, Data.access_rights)).order_by(Data.id)
        if owner:
            q = q.where(Data.owner_id == await owner_id_of(session, caller, owner))
        rows = list((await session.execute(q)).scalars())
        users = (await uid_maps(session, {"user": [d.owner_id for d in rows]}))["user"]
    return [srv.wire.data(d, users.get(d.owner_id, "")) for d in rows]


async def owner_id_of(session: AsyncSession, caller: Caller, ref: str) -> int:
    """The ``owner`` filter of a list: ``me`` or a user's UID/URI (-1, matching nothing, if unknown)."""
    if ref == "me":
        return caller.id
    uid = parse_uid(ref, "owner")
    found = (await session.execute(select(User.id).where(User.uid == uid))).scalar_one_or_none()
    return -1 if found is None else found


async def render(srv: Server, data: Data) -> dict[str, Any]:
    async with srv.sessions() as session:
        users = (await uid_maps(session, {"user": [data.owner_id]}))["user"]
    return srv.wire.data(data, users.get(data.owner_id, ""))


async def delete(srv: Server, caller: Caller, uid_text: str) -> None:
    async with srv.sessions.begin() as session:
        data = await _readable(session, caller, uid_text)
        uid = data.uid
        if not await may_on(session, caller, WRITE, owner_id=data.owner_id, access_rights=data.access_rights):
            raise Forbidden(f"data {uid} is not yours to delete (no write access)")
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
