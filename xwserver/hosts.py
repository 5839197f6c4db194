"""Volunteer hosts: registration and listing."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from xwcommon.errors import BadRequest, Forbidden, NotFound
from xwcommon.levels import UserLevel
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.uri import new_uid, parse_uid

from . import hot
from .access import Caller
from .data import check_name
from .db.models import Host
from .state import HostInfo, Server, uid_maps

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
    values = dict(
        name=name,
        os=os_name,
        cpu=cpu,
        cores=_int(body, "cores", MAX_CORES),
        memory_bytes=_int(body, "memory_bytes", MAX_BYTES),
        disk_free_bytes=_int(body, "disk_free_bytes", MAX_BYTES),
        tags=json.dumps(tags),
        version=version,
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
                uid=new_uid(), owner_id=caller.id, enabled=True, registered_at=now, last_seen_at=now, **values
            )
            session.add(host)
        else:
            for k, v in values.items():
                setattr(host, k, v)
            host.last_seen_at = now
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


async def list_hosts(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    q = select(Host).order_by(Host.id)
    if caller.rights < UserLevel.ADVANCED:
        q = q.where(Host.owner_id == caller.id)
    async with srv.sessions() as session:
        hosts = list((await session.execute(q)).scalars())
        users = (await uid_maps(session, {"user": [h.owner_id for h in hosts]}))["user"]
    return [srv.wire.host(h, users.get(h.owner_id, "")) for h in hosts]
