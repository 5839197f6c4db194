"""Volunteer hosts: registration, listing, disabling and enabling."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from xwcommon.errors import Forbidden, HostDisabled, HostUnknown, NotFound
from xwcommon.levels import PRIVATE, PUBLIC, UserLevel
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.protocol.work import Registered, Registration
from xwcommon.uri import new_uid, parse_uid

from . import hot, lifecycle
from .access import READ, Caller, may_sql
from .db.models import Host
from .state import HostInfo, Server, uid_maps

log = logging.getLogger(__name__)


async def register(srv: Server, caller: Caller, msg: Registration) -> Registered:
    """Register a host, or resume one (``host_uid``): its tasks the worker does not name in
    ``held`` are released at once (a restarted worker holds none of its predecessor's)."""
    caller.require(UserLevel.WORKER, "registering a host")
    values = dict(
        name=msg.name,
        os=normalize_os(msg.os),
        cpu=normalize_cpu(msg.cpu),
        cores=msg.cores,
        memory_bytes=msg.memory_bytes,
        disk_free_bytes=msg.disk_free_bytes,
        tags=json.dumps(msg.tags),
        version=msg.version,
        gpus=json.dumps([g.to_wire() for g in msg.gpus]),
    )
    activation = msg.activation
    now = time.time()
    released = 0
    async with srv.sessions.begin() as session:
        host = None
        if msg.host_uid:
            host = (await session.execute(select(Host).where(Host.uid == msg.host_uid))).scalar_one_or_none()
            if host is not None and host.owner_id != caller.id:
                raise Forbidden(f"host {msg.host_uid} belongs to another identity")
            if host is not None and not host.enabled:
                raise HostDisabled(f"host {msg.host_uid} is disabled by an administrator")
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
            if msg.held is not None:
                released = await lifecycle.release_host(session, host.id, keep=msg.held)
        if activation is not None:  # absent: the host keeps what it said before
            if host.activation_state != activation.state:
                host.activation_since = now
            host.activation_state = activation.state
            host.activation_detail = activation.detail
    srv.hosts.drop(host.uid)
    if released:
        log.info("host %s registered again; %d task(s) it no longer holds handed back", host.uid, released)
        srv.notifier.notify(released)
    return Registered(
        host_uid=host.uid,
        lease_s=srv.settings.lease_s,
        heartbeat_interval_s=srv.settings.heartbeat_interval_s,
        released=released,
    )


async def own_host(srv: Server, caller: Caller, uid: str) -> HostInfo:
    """The caller's enabled host (read once, then kept in memory), or a clear error:
    HostUnknown (404) makes the worker register again, HostDisabled (403) makes it wait."""
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
        raise HostUnknown(f"no host {uid} for {caller.login}; register again")
    if not host.enabled:
        raise HostDisabled(f"host {uid} is disabled by an administrator")
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
            raise NotFound(f"no host {uid}; list them with xwworkers")
        await lifecycle.set_host_enabled(session, host.id, enabled)
        released = 0 if enabled else await lifecycle.release_host(session, host.id)
    srv.hosts.drop(uid)
    if not enabled:
        async with srv.sessions.begin() as session:
            released += await lifecycle.release_host(session, host.id)
        srv.hosts.drop(uid)
        srv.notifier.notify_all()
        log.info("host %s disabled by %s; %d running tasks handed back", uid, caller.login, released)
    else:
        log.info("host %s enabled by %s", uid, caller.login)
    async with srv.sessions() as session:
        host = (await session.execute(select(Host).where(Host.uid == uid))).scalar_one()
        return (await render(srv, session, [host]))[0]
