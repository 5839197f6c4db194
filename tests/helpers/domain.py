"""The domain tier's actors: users, apps, hosts and their work, through the server's own
functions on a :class:`xwserver.state.Server` (the ``domain`` fixture), no HTTP.

Each helper calls what the route handler of xwserver/api calls, with the arguments it
passes, as its caller (:func:`acting`: whom the event history names), so a domain test
holds what the database decides for the same scenario as the HTTP test it mirrors. Unlike
the other helpers, this module imports the server: only the domain tests use it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import secrets
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select, update

from xwcommon.levels import UserLevel, parse_access_rights
from xwcommon.protocol.work import (
    Accounting,
    Activation,
    Assignment,
    Gpu,
    Heartbeat,
    HeartbeatAnswer,
    InlineResult,
    Registered,
    Registration,
    Release,
    Report,
    TaskReport,
    WorkAnswer,
    WorkRequest,
)
from xwcommon.uri import new_uid
from xwserver import apps, data, events, hosts, jobs, leases, scheduler, users
from xwserver.access import Caller
from xwserver.bootstrap import WORKER_LOGIN
from xwserver.db.models import Data, Job, Task, User, UserGroup
from xwserver.state import Server
from xwserver.users import create_user

#: an empty zip archive: the smallest result there is
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
#: what a copy's report accounts unless told: 2.5 CPU seconds (2.0 user + 0.5 system)
MEASURED = Accounting(cpu_user_s=2.0, cpu_system_s=0.5, wall_s=3.0)


# -- who calls ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def acting(who: Caller, address: str = "127.0.0.1") -> Iterator[None]:
    """Within: a request of ``who`` from ``address``, as the event history names its actor
    (what the API's authentication middleware sets around every handler)."""
    token = events.acting(who.id, address)
    try:
        yield
    finally:
        events.ACTOR.reset(token)


async def caller(srv: Server, login: str) -> Caller:
    """The caller a token of ``login`` resolves to (as ``users.resolve_token`` makes it)."""
    async with srv.sessions() as session:
        user = (await session.execute(select(User).where(User.login == login))).scalar_one()
    return Caller(
        id=user.id, uid=user.uid, login=user.login, rights=UserLevel(user.rights), group_id=user.group_id
    )


async def admin(srv: Server) -> Caller:
    return await caller(srv, "admin")


async def worker(srv: Server) -> Caller:
    """The bootstrap's public worker identity."""
    return await caller(srv, WORKER_LOGIN)


async def add_user(
    srv: Server,
    login: str,
    rights: str = "STANDARD",
    *,
    group: str | None = None,
    password: str | None = None,
) -> Caller:
    """A new user, made straight in the database as the HTTP harness's ``add_user`` does;
    ``group``: the label of the user group it joins (made if need be); ``password``: its
    password (a random one unless given)."""
    async with srv.sessions.begin() as session:
        await create_user(session, login, password or "pw-" + secrets.token_hex(8), UserLevel.parse(rights))
    if group is not None:
        await put_in_group(srv, login, group)
    return await caller(srv, login)


async def put_in_group(srv: Server, login: str, label: str) -> None:
    """Make ``login`` a member of the user group ``label`` (made if need be), in the database."""
    async with srv.sessions.begin() as session:
        found = (
            await session.execute(select(UserGroup).where(UserGroup.label == label))
        ).scalar_one_or_none()
        if found is None:
            found = UserGroup(uid=new_uid(), label=label, created_at=time.time())
            session.add(found)
            await session.flush()
        await session.execute(update(User).where(User.login == login).values(group_id=found.id))


async def login(srv: Server, login_name: str, password: str) -> str:
    """``POST /login``: a new token of ``login_name`` (resolve it with ``users.resolve_token``)."""
    return (await users.login(srv, login_name, password, "127.0.0.1")).token


# -- data and apps --------------------------------------------------------------------------------------
async def _one_chunk(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def upload(
    srv: Server, who: Caller, content: bytes, name: str = "blob", access_rights: str | None = None
) -> Data:
    """``POST /data``: the content stored and recorded as the caller's data (``access_rights``
    as the query parameter says them, e.g. ``0750``; public by default)."""
    who.require(UserLevel.STANDARD, "inserting data")
    with acting(who):
        return await data.store_upload(
            srv,
            who,
            _one_chunk(content),
            name=name,
            access_rights=parse_access_rights(access_rights) if access_rights else data.DATA_DEFAULT_RIGHTS,
            expected_sha256=hashlib.sha256(content).hexdigest(),
            expected_size=len(content),
        )


async def content(srv: Server, who: Caller, uid: str) -> bytes:
    """``GET /data/{uid}/content``: the bytes ``who`` may download."""
    found = await data.get_content(srv, who, uid)
    return srv.store.path_of(found.sha256).read_bytes()


async def insert_app(
    srv: Server, who: Caller, name: str, platforms: list[tuple[str, str]] | None = None, **fields: Any
) -> dict[str, Any]:
    """``POST /apps``: an app with one (tiny) binary per platform (default: one ``any/any``
    script), and the other fields of the body (``min_quorum``, ``tags``, ``volatile``...)."""
    binaries = []
    for os_name, cpu in platforms or [("any", "any")]:
        d = await upload(srv, who, f"#!/bin/sh\n# {name} {os_name} {cpu}\n".encode(), name=name)
        binaries.append({"os": os_name, "cpu": cpu, "data_uid": d.uid})
    with acting(who):
        return await apps.insert(srv, who, {"name": name, "binaries": binaries, **fields})


async def submit(srv: Server, who: Caller, app: str, **spec: Any) -> dict[str, Any]:
    """``POST /jobs``: one job, as its answer shows it."""
    [created] = await submit_many(srv, who, [{"app": app, **spec}])
    return created


async def submit_many(srv: Server, who: Caller, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /jobs/bulk``."""
    with acting(who):
        return await jobs.submit(srv, who, specs)


async def job(srv: Server, uid: str, who: Caller | None = None) -> dict[str, Any]:
    """``GET /jobs/{uid}`` (by default as admin)."""
    return await jobs.get(srv, who or await admin(srv), uid)


async def job_list(srv: Server, who: Caller, **query: Any) -> dict[str, dict[str, Any]]:
    """``GET /jobs``: the jobs listed to ``who``, by UID."""
    return {j["uid"]: j for j in await jobs.list_jobs(srv, who, **query)}


async def tasks(srv: Server, job_uid: str, who: Caller | None = None) -> list[dict[str, Any]]:
    """``GET /tasks?job=``: a job's tasks as shown (by default to admin), oldest first."""
    return await jobs.list_tasks(srv, who or await admin(srv), job=job_uid)


# -- hosts and their work -------------------------------------------------------------------------------
async def register(srv: Server, who: Caller | None = None, **fields: Any) -> str:
    """``POST /work/register`` (by default as the public worker); the host's UID. ``fields``:
    :func:`registered`'s (``name``, ``tags``, ``gpus``, ``activation``, ``host_uid``...)."""
    return (await registered(srv, who, **fields)).host_uid


async def registered(
    srv: Server,
    who: Caller | None = None,
    *,
    name: str = "host",
    os_name: str = "linux",
    cpu: str = "x86_64",
    cores: int = 4,
    tags: list[str] | None = None,
    gpus: list[str | Gpu] | None = None,
    **fields: Any,
) -> Registered:
    """:func:`register`'s whole answer: the host's UID, its name, its key when one is given."""
    msg = Registration(
        name=name,
        os=os_name,
        cpu=cpu,
        cores=cores,
        memory_bytes=8 << 30,
        disk_free_bytes=100 << 30,
        tags=tags or [],
        gpus=[g if isinstance(g, Gpu) else Gpu(name=g) for g in gpus or []],
        version="test",
        **fields,
    )
    who = who or await worker(srv)
    with acting(who):
        return await hosts.register(srv, who, msg)


async def volunteers(srv: Server, n: int) -> list[str]:
    """``n`` hosts of the public worker, named ``volunteer-<i>``."""
    return [await register(srv, name=f"volunteer-{i}") for i in range(n)]


async def work_request(
    srv: Server,
    host_uid: str,
    capacity: int = 1,
    reports: list[TaskReport] | None = None,
    who: Caller | None = None,
    *,
    wait_s: float = 0,
    **resources: Any,
) -> WorkAnswer:
    """``POST /work/request``, by default without waiting: the reports it carries applied, and
    what the host is given (``wait_s``: how long it may wait for work); ``resources``: the
    request's other fields, such as what it says it has free (``free_memory_bytes``,
    ``free_disk_bytes``, ``network``) or the tasks it still holds (``held``)."""
    msg = WorkRequest(host_uid=host_uid, capacity=capacity, wait_s=wait_s, reports=reports or [], **resources)
    who = who or await worker(srv)
    with acting(who):
        return await scheduler.request_work(srv, who, msg)


async def request_work(
    srv: Server,
    host_uid: str,
    capacity: int = 1,
    who: Caller | None = None,
    *,
    wait_s: float = 0,
    **resources: Any,
) -> list[Assignment]:
    """``POST /work/request`` without reports (by default without waiting): the assignments."""
    answer = await work_request(srv, host_uid, capacity, who=who, wait_s=wait_s, **resources)
    return list(answer.assignments)


def result_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def inline(content: bytes, sha256: str | None = None) -> InlineResult:
    """A result riding in its report (``sha256``: the content's unless given)."""
    return InlineResult(
        content_b64=base64.b64encode(content).decode(), sha256=sha256 or hashlib.sha256(content).hexdigest()
    )


def report_of(
    files: dict[str, bytes] | None = None,
    *,
    status: str = "COMPLETED",
    exit_code: int | None = None,
    message: str | None = None,
    result_uid: str | None = None,
    result_inline: InlineResult | None = None,
    accounting: Accounting | None = MEASURED,
) -> Report:
    """A copy's report: its status, exit code (0 or 1 by the status unless given), its
    accounting (:data:`MEASURED` unless given), and its result: ``files`` as an inline zip,
    or ``result_inline``, or ``result_uid``."""
    if files is not None:
        result_inline = inline(result_zip(files))
    return Report(
        status=status,  # type: ignore[arg-type]  # a Literal; tests pass the words
        exit_code=exit_code if exit_code is not None else (0 if status == "COMPLETED" else 1),
        message=message,
        result_uid=result_uid,
        result_inline=result_inline,
        accounting=accounting,
    )


def task_report(task_uid: str, files: dict[str, bytes] | None = None, **kw: Any) -> TaskReport:
    """A report riding on a work request (it names its task); ``kw`` as :func:`report_of`."""
    return TaskReport(**msgspec.structs.asdict(report_of(files, **kw)), task_uid=task_uid)


async def report(
    srv: Server,
    task_uid: str,
    files: dict[str, bytes] | None = None,
    *,
    who: Caller | None = None,
    **kw: Any,
) -> str:
    """``POST /work/tasks/{uid}/report``: a copy's report alone (``kw`` as :func:`report_of`);
    the job's status after it."""
    who = who or await worker(srv)
    with acting(who):
        return (await leases.report(srv, who, task_uid, report_of(files, **kw))).job_status


async def upload_result(srv: Server, task_uid: str, content: bytes, who: Caller | None = None) -> str:
    """``POST /work/tasks/{uid}/result``: a task's result archive stored; its data UID."""
    who = who or await worker(srv)
    with acting(who):
        stored = await leases.upload_result(
            srv,
            who,
            task_uid,
            _one_chunk(content),
            sha256=hashlib.sha256(content).hexdigest(),
            size=len(content),
        )
    return stored.result_uid


async def heartbeat(
    srv: Server,
    host_uid: str,
    task_uids: list[str],
    who: Caller | None = None,
    *,
    activation: Activation | None = None,
) -> HeartbeatAnswer:
    """``POST /work/heartbeat`` (``activation``: what the worker's policy says, if it says)."""
    who = who or await worker(srv)
    msg = Heartbeat(host_uid=host_uid, task_uids=task_uids, activation=activation)
    with acting(who):
        return await leases.heartbeat(srv, who, msg)


async def release(srv: Server, host_uid: str, task_uids: list[str], who: Caller | None = None) -> int:
    """``POST /work/release``: a stopping worker hands tasks back; how many were live."""
    who = who or await worker(srv)
    with acting(who):
        return (await leases.release(srv, who, Release(host_uid=host_uid, task_uids=task_uids))).released


def later(srv: Server) -> float:
    """A clock reading at which every lease given now has expired (for ``leases.reap``)."""
    return time.time() + srv.settings.lease_s + 1


# -- what the database holds ----------------------------------------------------------------------------
async def copies(srv: Server, job_uid: str) -> list[dict[str, Any]]:
    """A job's tasks in the order they were made: uid, status, validity, host_id."""
    async with srv.engine.connect() as conn:
        rows = await conn.execute(
            select(Task.uid, Task.status, Task.validity, Task.host_id)
            .join(Job, Job.id == Task.job_id)
            .where(Job.uid == job_uid)
            .order_by(Task.id)
        )
        return [dict(r._mapping) for r in rows]


def store_files(srv: Server) -> list[Path]:
    """Every file in the data store, the temporary folder included."""
    return sorted(p for p in srv.settings.data_dir.rglob("*") if p.is_file())
