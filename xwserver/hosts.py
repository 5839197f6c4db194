"""Volunteer hosts: registration, listing, disabling and enabling."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from xwcommon.errors import BadRequest, Forbidden, NotFound
from xwcommon.levels import PRIVATE, PUBLIC, UserLevel
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.status import JobStatus, TaskStatus
from xwcommon.uri import new_uid, parse_uid

from . import hot
from .access import READ, Caller, may_sql
from .data import check_name
from .db.models import Host, Job, Task
from .state import HostInfo, Server, uid_maps

log = logging.getLogger(__name__)

MAX_TAGS = 64
MAX_CORES = 2**20
MAX_BYTES = 2**62  # within a signed 64-bit column on every database


def _int(body: dict[str, Any], key: str, maximum: int) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise BadRequest(f'"{key}" must be an integer from 0 to {maximum}')
    return value


def _printable(value: Any, key: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len or any(ord(c) < 32 for c in value):
        raise BadRequest(f'"{key}" must be a string of at most {max_len} printable characters')
    return value


ACTIVATION_STATES = ("active", "suspended")
MAX_ACTIVATION_DETAIL = 200
MAX_GPUS = 16
MAX_GPU_NAME = 128


@dataclass(frozen=True)
class Activation:
    """What a worker's activation policy says: may it run jobs now, and why."""

    state: str
    detail: str


def parse_activation(value: Any) -> Activation | None:
    """``{"state": "active"|"suspended", "detail": str}`` (detail optional), or None if absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest('"activation" must be an object {"state": "active"|"suspended", "detail": str}')
    unknown = set(value) - {"state", "detail"}
    if unknown:
        raise BadRequest(f"unknown activation keys: {', '.join(sorted(unknown))[:200]}; known: state, detail")
    state = value.get("state")
    if state not in ACTIVATION_STATES:
        raise BadRequest('"activation.state" must be "active" or "suspended"')
    detail = value.get("detail", "")
    if detail is None:
        detail = ""
    if not isinstance(detail, str) or len(detail) > MAX_ACTIVATION_DETAIL or not detail.isprintable():
        raise BadRequest(
            f'"activation.detail" must be a string of at most {MAX_ACTIVATION_DETAIL} printable characters'
        )
    return Activation(state, detail)


def parse_gpus(value: Any) -> list[dict[str, Any]]:
    """A list of at most MAX_GPUS ``{"name": str, "memory_bytes": int}``; none when absent."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_GPUS:
        raise BadRequest(f'"gpus" must be a list of at most {MAX_GPUS} {{"name", "memory_bytes"}} objects')
    gpus = []
    for i, gpu in enumerate(value):
        if not isinstance(gpu, dict):
            raise BadRequest(f'"gpus[{i}]" must be an object {{"name": str, "memory_bytes": int}}')
        unknown = set(gpu) - {"name", "memory_bytes"}
        if unknown:
            raise BadRequest(
                f"unknown keys in gpus[{i}]: {', '.join(sorted(unknown))[:200]}; known: name, memory_bytes"
            )
        name = gpu.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_GPU_NAME or not name.isprintable():
            raise BadRequest(
                f'"gpus[{i}].name" must be a non-empty string of at most {MAX_GPU_NAME} printable characters'
            )
        memory = gpu.get("memory_bytes")
        if not isinstance(memory, int) or isinstance(memory, bool) or not 0 <= memory <= MAX_BYTES:
            raise BadRequest(f'"gpus[{i}].memory_bytes" must be an integer from 0 to {MAX_BYTES}')
        gpus.append({"name": name, "memory_bytes": memory})
    return gpus


async def register(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    caller.require(UserLevel.WORKER, "registering a host")
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object describing the host")
    name = check_name(body.get("name"), "host name")  # type: ignore[arg-type]
    os_name = normalize_os(str(body.get("os", "")))
    cpu = normalize_cpu(str(body.get("cpu", "")))
    tags = body.get("tags", [])
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(isinstance(t, str) and len(t) < 128 and all(ord(c) >= 32 for c in t) for t in tags)
    ):
        raise BadRequest(f'"tags" must be a list of at most {MAX_TAGS} short strings')
    version = _printable(body.get("version", ""), "version", 64)
    activation = parse_activation(body.get("activation"))
    values = dict(
        name=name,
        os=os_name,
        cpu=cpu,
        cores=_int(body, "cores", MAX_CORES),
        memory_bytes=_int(body, "memory_bytes", MAX_BYTES),
        disk_free_bytes=_int(body, "disk_free_bytes", MAX_BYTES),
        tags=json.dumps(tags),
        version=version,
        gpus=json.dumps(parse_gpus(body.get("gpus"))),
    )
    now = time.time()
    async with srv.sessions.begin() as session:
        host = None
        if body.get("host_uid"):
            uid = parse_uid(str(body["host_uid"]), "host_uid")
            host = (await session.execute(select(Host).where(Host.uid == uid))).scalar_one_or_none()
            if host is not None and host.owner_id != caller.id:
                raise Forbidden(f"host {uid} belongs to another identity")
        if host is None:
            host = Host(
                uid=new_uid(),
                owner_id=caller.id,
                enabled=True,
                access_rights=default_host_rights(caller),
                registered_at=now,
                last_seen_at=now,
                **values,
            )
            session.add(host)
        else:
            for k, v in values.items():
                setattr(host, k, v)
            host.last_seen_at = now
        if activation is not None:  # absent: the host keeps what it said before
            if host.activation_state != activation.state:
                host.activation_since = now
            host.activation_state = activation.state
            host.activation_detail = activation.detail
    srv.hosts.drop(host.uid)
    return {
        "host_uid": host.uid,
        "lease_s": srv.settings.lease_s,
        "heartbeat_interval_s": srv.settings.heartbeat_interval_s,
    }


async def own_host(srv: Server, caller: Caller, uid_text: Any) -> HostInfo:
    """The caller's enabled host, or a clear error (404 makes the worker register again)."""
    if not isinstance(uid_text, str):
        raise BadRequest('"host_uid" must be the UID given at registration')
    uid = parse_uid(uid_text, "host_uid")
    now = time.time()
    host = srv.hosts.get(uid, now)
    if host is None:
        async with srv.engine.connect() as conn:
            row = (await conn.execute(hot.HOST_BY_UID, {"uid": uid})).first()
        if row is not None:
            host = HostInfo(
                id=row.id, uid=uid, owner_id=row.owner_id, os=row.os, cpu=row.cpu, enabled=row.enabled
            )
            srv.hosts.put(host, now)
    if host is None or host.owner_id != caller.id:
        raise NotFound(f"no host {uid} for {caller.login}; register again")
    if not host.enabled:
        raise Forbidden(f"host {uid} is disabled by an administrator")
    return host


def default_host_rights(caller: Caller) -> int:
    """A private worker's host (a STANDARD or higher identity) is private; a public or group
    worker's (a WORKER identity) is public, as the pool it serves."""
    return PRIVATE if caller.rights >= UserLevel.STANDARD else PUBLIC


def _readable(caller: Caller) -> ColumnElement[bool]:
    """ADVANCED and up manage workers and see every host; others, the hosts they may read."""
    if caller.rights >= UserLevel.ADVANCED:
        return true()
    return may_sql(caller, READ, Host.owner_id, Host.access_rights)


async def list_hosts(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    q = select(Host).where(_readable(caller)).order_by(Host.id)
    async with srv.sessions() as session:
        hosts = list((await session.execute(q)).scalars())
        return await render(srv, session, hosts)


async def render(srv: Server, session: AsyncSession, hosts: list[Host]) -> list[dict[str, Any]]:
    users = (await uid_maps(session, {"user": [h.owner_id for h in hosts]}))["user"]
    return [srv.wire.host(h, users.get(h.owner_id, "")) for h in hosts]


async def set_enabled(srv: Server, caller: Caller, uid_text: str, enabled: bool) -> dict[str, Any]:
    """Disable or re-enable a host (ADVANCED and up manage workers).

    Disabling hands the host's running tasks back in the same transaction (their jobs go
    back to PENDING, no retry spent) and wakes the waiting work requests: other workers
    take the jobs, and the host's own long-poll, woken too, is refused (403). A claim
    already running for the host when the host is disabled may still commit tasks
    afterwards: a second hand-back once the host is seen disabled catches those.
    """
    caller.require(UserLevel.ADVANCED, "disabling or enabling a host")
    uid = parse_uid(uid_text)
    async with srv.sessions.begin() as session:
        host = (await session.execute(select(Host).where(Host.uid == uid))).scalar_one_or_none()
        if host is None:
            raise NotFound(f"no host {uid}; list them with xwhosts")
        host.enabled = enabled
        released = 0 if enabled else await release_host_tasks(session, host.id)
    srv.hosts.drop(uid)
    if not enabled:
        async with srv.sessions.begin() as session:
            released += await release_host_tasks(session, host.id)
        srv.hosts.drop(uid)
        srv.notifier.notify_all()
        log.info("host %s disabled by %s; %d running tasks handed back", uid, caller.login, released)
    else:
        log.info("host %s enabled by %s", uid, caller.login)
    async with srv.sessions() as session:
        return (await render(srv, session, [host]))[0]


async def release_host_tasks(session: AsyncSession, host_id: int, uids: list[str] | None = None) -> int:
    """Abort a host's live tasks (all, or those of ``uids``) and put their jobs back to
    PENDING without spending a retry, inside the caller's transaction."""
    q = select(Task.id, Task.job_id).where(Task.host_id == host_id, Task.status == TaskStatus.RUNNING)
    if uids is not None:
        q = q.where(Task.uid.in_(uids))
    rows = (await session.execute(q)).all()
    if not rows:
        return 0
    await session.execute(
        update(Task)
        .where(Task.id.in_([r.id for r in rows]), Task.status == TaskStatus.RUNNING)
        .values(status=TaskStatus.ABORTED, ended_at=time.time())
    )
    await session.execute(
        update(Job)
        .where(Job.id.in_([r.job_id for r in rows]), Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.PENDING, started_at=None)
    )
    return len(rows)
