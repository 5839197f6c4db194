"""Volunteer hosts: registration, listing, disabling, enabling, removing, pruning the lost.

A host is ``active``, ``suspended`` (its owner's activation policy), ``lost`` (silent for
``host_lost_heartbeats`` heartbeat intervals) or ``disabled`` (by an administrator). Hosts
lost longer than ``host_prune_after_s`` are pruned by the collector, unless tasks they ran
are still on record.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from xwcommon.errors import AuthenticationError, Conflict, Forbidden, HostDisabled, HostUnknown, NotFound
from xwcommon.levels import PRIVATE, PUBLIC, UserLevel
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.protocol.work import MAX_HOST_NAME, Registered, Registration
from xwcommon.uri import new_uid, parse_uid

from . import credit, events, hot, lifecycle
from .access import READ, Caller, may_sql
from .db.engine import connection, is_integrity_error, transaction
from .db.models import Host, Job, Task, Token, User
from .passwords import host_key_digest, new_host_key
from .state import HostInfo, Server, uid_maps

log = logging.getLogger(__name__)


async def register(srv: Server, caller: Caller, msg: Registration) -> Registered:
    """Register a host, or resume one (``host_uid``): its tasks the worker does not name in
    ``held`` are released at once (a restarted worker holds none of its predecessor's).

    A new host gets a name no other host has (a clash gets a suffix: ``vm-2``), and is refused
    (403) when its identity already has ``max_hosts_per_identity`` hosts. A caller who logged
    in with the password gets a new host credential in the answer; one who logged in with the
    host's credential acts only as that host (401 for any other: the password may register
    another).
    """
    caller.require(UserLevel.WORKER, "registering a host")
    if caller.host_uid is not None and msg.host_uid != caller.host_uid:
        raise AuthenticationError(
            f"this login acts only as host {caller.host_uid}; log in with the password to register another"
        )
    for attempt in range(_NAME_ATTEMPTS):
        try:
            return await _register(srv, caller, msg, attempt)
        except Exception as exc:
            if not is_integrity_error(exc):
                raise
            # another host took the name meanwhile: look again (else a real conflict: say so)
            if attempt + 1 == _NAME_ATTEMPTS:
                raise Conflict(f"host name {msg.name!r} is being taken by others; try again") from None
    raise AssertionError("unreachable")


#: registrations tried again when a name chosen was taken by a concurrent one
_NAME_ATTEMPTS = 16


_HOST_TO_RESUME = select(
    Host.id,
    Host.uid,
    Host.owner_id,
    Host.enabled,
    Host.name,
    Host.key_hash,
    Host.key_issued_at,
    Host.activation_state,
    Host.activation_since,
    Host.activation_detail,
).where(Host.uid == bindparam("uid"))
_NEW_HOST = insert(Host)
_RESUME_HOST = (
    update(Host)
    .where(Host.id == bindparam("b_id"))
    .values(
        name=bindparam("name"),
        os=bindparam("os"),
        cpu=bindparam("cpu"),
        cores=bindparam("cores"),
        memory_bytes=bindparam("memory_bytes"),
        disk_free_bytes=bindparam("disk_free_bytes"),
        tags=bindparam("tags"),
        version=bindparam("version"),
        gpus=bindparam("gpus"),
        last_seen_at=bindparam("last_seen_at"),
        key_hash=bindparam("key_hash"),
        key_issued_at=bindparam("key_issued_at"),
        activation_state=bindparam("activation_state"),
        activation_since=bindparam("activation_since"),
        activation_detail=bindparam("activation_detail"),
    )
)
_LOCK_OWNER = select(User.id).where(User.id == bindparam("owner_id")).with_for_update()
_HOSTS_OF_OWNER = select(func.count()).select_from(Host).where(Host.owner_id == bindparam("owner_id"))
_NAME_TAKEN = select(Host.id).where(Host.name == bindparam("name")).limit(1)
_NAMES_LIKE = select(Host.name).where(Host.name.like(bindparam("like"), escape="\\"))


async def _register(srv: Server, caller: Caller, msg: Registration, attempt: int = 0) -> Registered:
    """One try, in one short transaction of prebuilt statements (a fleet registers by the
    thousand: no ORM session, which would hold SQLite's one connection across turns of the
    event loop)."""
    values: dict[str, Any] = dict(
        os=normalize_os(msg.os),
        cpu=normalize_cpu(msg.cpu),
        cores=msg.cores,
        memory_bytes=msg.memory_bytes,
        disk_free_bytes=msg.disk_free_bytes,
        tags=json.dumps(msg.tags),
        version=msg.version,
        gpus=json.dumps([g.to_wire() for g in msg.gpus]),
        last_seen_at=time.time(),
    )
    now = values["last_seen_at"]
    activation = msg.activation
    key = None if caller.host_uid is not None else new_host_key()
    if key is not None:
        values.update(key_hash=host_key_digest(key), key_issued_at=now)

    def activated(state: str | None, since: float | None, detail: str | None) -> dict[str, Any]:
        if activation is None:  # absent: the host keeps what it said before
            return dict(activation_state=state, activation_since=since, activation_detail=detail)
        return dict(
            activation_state=activation.state,
            activation_since=now if state != activation.state else since,
            activation_detail=activation.detail,
        )

    async def work(conn: Any) -> tuple[str, str, int]:
        host = None
        if msg.host_uid:
            host = (await conn.execute(_HOST_TO_RESUME, {"uid": msg.host_uid})).first()
            if host is not None and host.owner_id != caller.id:
                raise Forbidden(f"host {msg.host_uid} belongs to another identity")
            if host is not None and not host.enabled:
                raise HostDisabled(f"host {msg.host_uid} is disabled by an administrator")
        if host is None:
            await _within_cap(srv, conn, caller)
            uid, name = new_uid(), await _free_name(conn, msg.name, attempt)
            await conn.execute(
                _NEW_HOST,
                {
                    **values,
                    **activated(None, None, None),
                    "uid": uid,
                    "name": name,
                    "owner_id": caller.id,
                    "enabled": True,
                    "access_rights": default_host_rights(caller),
                    "registered_at": now,
                    "valid_streak": 0,
                },
            )
            await events.record(
                conn, [events.event("host", uid, "registered", owner_id=caller.id, detail=name)]
            )
            return uid, name, 0
        name = host.name if _named_after(host.name, msg.name) else await _free_name(conn, msg.name, attempt)
        await conn.execute(
            _RESUME_HOST,
            {
                "key_hash": host.key_hash,
                "key_issued_at": host.key_issued_at,
                **values,
                **activated(host.activation_state, host.activation_since, host.activation_detail),
                "b_id": host.id,
                "name": name,
            },
        )
        released = 0 if msg.held is None else await lifecycle.release_host(conn, host.id, keep=msg.held)
        return str(host.uid), name, released

    uid, name, released = await transaction(srv.engine, work)
    srv.hosts.drop(uid)
    srv.connected_hosts = srv.registered_hosts = None  # pending reasons read the hosts again
    if released:
        log.info("host %s registered again; %d task(s) it no longer holds handed back", uid, released)
        srv.notifier.notify(released)
    return Registered(
        host_uid=uid,
        lease_s=srv.settings.lease_s,
        heartbeat_interval_s=srv.settings.heartbeat_interval_s,
        released=released,
        host_key=key,
        name=name,
    )


async def _within_cap(srv: Server, conn: Any, caller: Caller) -> None:
    """403 when the identity has as many hosts as ``max_hosts_per_identity`` allows."""
    cap = srv.settings.max_hosts_per_identity
    if not cap:
        return
    # registrations of one identity queue on its row here, so none passes the cap by racing
    await conn.execute(_LOCK_OWNER, {"owner_id": caller.id})
    n = (await conn.execute(_HOSTS_OF_OWNER, {"owner_id": caller.id})).first()[0]
    if n >= cap:
        raise Forbidden(
            f"{caller.login} has registered {n} hosts, the most this server allows "
            f"(max_hosts_per_identity = {cap}); an ADVANCED user may remove hosts it no longer "
            "uses (xwrmhost), or the administrator raise the limit"
        )


def _named_after(name: str, wanted: str) -> bool:
    """Whether a host's name is ``wanted``, or ``wanted`` with the suffix a clash gave it."""
    m = _SUFFIX.search(name)
    return name == wanted or (m is not None and name == _suffixed(wanted, int(m.group(1))))


def _suffixed(wanted: str, n: int) -> str:
    """``wanted-n``, ``wanted`` cut so that the whole fits a host name."""
    suffix = f"-{n}"
    return wanted[: MAX_HOST_NAME - len(suffix)] + suffix


async def _free_name(conn: Any, wanted: str, attempt: int = 0) -> str:
    """``wanted`` if no host has it, else ``wanted-N`` with the smallest free N from 2. Tried
    again after a concurrent registration took that name (``attempt``), one of the first few
    free N at random, so that clones registering at once do not all race for the same one."""
    taken = (await conn.execute(_NAME_TAKEN, {"name": wanted})).first()
    if taken is None:
        return wanted
    # every wanted-N starts with this (the longest suffix cuts the most)
    prefix = wanted[: MAX_HOST_NAME - 10]
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%-%"
    names = (await conn.execute(_NAMES_LIKE, {"like": like})).scalars()
    used = {
        n for name in names if (m := _SUFFIX.search(name)) and name == _suffixed(wanted, n := int(m.group(1)))
    }
    free: list[int] = []
    n = 2
    while len(free) <= 4 * attempt:
        if n not in used and _suffixed(wanted, n) != wanted:
            free.append(n)
        n += 1
    return _suffixed(wanted, random.choice(free) if attempt else free[0])


_SUFFIX = re.compile(r"-(\d{1,9})$")


async def own_host(srv: Server, caller: Caller, uid: str) -> HostInfo:
    """The caller's enabled host (read once, then kept in memory), or a clear error:
    HostUnknown (404) makes the worker register again, HostDisabled (403) makes it wait."""
    now = time.time()
    host = srv.hosts.get(uid, now)
    if host is None:
        async with connection(srv.engine) as conn:
            row = (await conn.execute(hot.HOST_BY_UID, {"uid": uid})).first()
        if row is not None:
            host = HostInfo(
                id=row.id,
                uid=uid,
                owner_id=row.owner_id,
                os=row.os,
                cpu=row.cpu,
                enabled=row.enabled,
                valid_streak=row.valid_streak,
                cores=row.cores,
                gpus=len(_json_list(row.gpus)),
                tags=tuple(t for t in _json_list(row.tags) if isinstance(t, str)),
            )
            srv.hosts.put(host, now)
    if host is None or host.owner_id != caller.id:
        raise HostUnknown(f"no host {uid} for {caller.login}; register again")
    if caller.host_uid is not None and caller.host_uid != uid:
        raise Forbidden(f"this login acts only as host {caller.host_uid}, not {uid}")
    if not host.enabled:
        raise HostDisabled(f"host {uid} is disabled by an administrator")
    return host


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


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


async def render(
    srv: Server, session: AsyncSession, hosts: list[Host], *, now: float | None = None
) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    users = (await uid_maps(session, {"user": [h.owner_id for h in hosts]}))["user"]
    credits = await credit.of_hosts(session, [h.id for h in hosts])
    return [
        {
            **srv.wire.host(h, users.get(h.owner_id, ""), state_of(srv, h, now)),
            **credits.get(h.id, credit.Credit()).shown(),
            "valid_streak": h.valid_streak,
        }
        for h in hosts
    ]


def lost_after_s(srv: Server) -> float:
    """How long a host may stay silent before it shows as LOST."""
    return srv.settings.host_lost_heartbeats * srv.settings.heartbeat_interval_s


def state_of(srv: Server, host: Host, now: float) -> str:
    """``disabled`` (by an administrator), ``lost`` (silent for ``host_lost_heartbeats``
    heartbeat intervals), ``suspended`` (its activation policy says so) or ``active``."""
    if not host.enabled:
        return "disabled"
    if now - host.last_seen_at > lost_after_s(srv):
        return "lost"
    return "suspended" if host.activation_state == "suspended" else "active"


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
        await events.record(
            session, [events.event("host", uid, "enabled" if enabled else "disabled", owner_id=host.owner_id)]
        )
        released = 0 if enabled else await lifecycle.release_host(session, host.id)
    srv.hosts.drop(uid)
    srv.connected_hosts = srv.registered_hosts = None
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


async def remove(srv: Server, caller: Caller, uid_text: str) -> int:
    """Remove a host (ADVANCED and up manage workers); returns how many running tasks it held.

    The host is disabled first and its running tasks handed back (their jobs go back to
    PENDING, no retry spent); then its task records, its tokens and the host go. Jobs keep
    their status, exit code and result. A worker still running on that machine registers as
    a new host at its next call: to keep a machine out, disable it instead.
    """
    caller.require(UserLevel.ADVANCED, "removing a host")
    uid = parse_uid(uid_text)
    async with srv.sessions.begin() as session:
        host = (await session.execute(select(Host).where(Host.uid == uid))).scalar_one_or_none()
        if host is None:
            raise NotFound(f"no host {uid}; list them with xwworkers")
        host_id = host.id
        await lifecycle.set_host_enabled(session, host_id, False)
        await events.record(session, [events.event("host", uid, "removed", owner_id=host.owner_id)])
        released = await lifecycle.release_host(session, host_id)
    srv.hosts.drop(uid)
    async with srv.sessions.begin() as session:
        # a claim in flight when the host was disabled may have committed tasks since
        released += await lifecycle.release_host(session, host_id)
        await _delete_hosts(session, [host_id])
    srv.hosts.drop(uid)
    srv.connected_hosts = srv.registered_hosts = None
    srv.tokens.drop_host(uid)
    srv.notifier.notify_all()
    log.info("host %s removed by %s; %d running task(s) handed back", uid, caller.login, released)
    return released


async def _delete_hosts(session: AsyncSession, host_ids: list[int]) -> None:
    await lifecycle.remove_host_tasks(session, host_ids)
    await session.execute(delete(Token).where(Token.host_id.in_(host_ids)))
    await session.execute(delete(Host).where(Host.id.in_(host_ids)))


#: hosts pruned per transaction
_PRUNE_BATCH = 500


async def prune_lost(srv: Server, *, now: float | None = None) -> int:
    """Remove the hosts LOST for longer than ``host_prune_after_s`` (0: never), unless tasks
    they ran are still on record (those jobs' history names them) or a job waits for them
    (``expected_host``), and unless an administrator disabled them (removing one would let
    it come back as a new host). Returns how many went."""
    after_s = srv.settings.host_prune_after_s
    if after_s <= 0:
        return 0
    now = time.time() if now is None else now
    silent_since = now - lost_after_s(srv) - after_s
    prunable = (
        select(Host.id, Host.uid)
        .where(
            Host.last_seen_at < silent_since,
            Host.enabled.is_(True),
            ~exists().where(Task.host_id == Host.id),
            ~exists().where(Job.expected_host_id == Host.id),
        )
        .limit(_PRUNE_BATCH)
    )
    pruned = 0
    while True:
        async with srv.sessions.begin() as session:
            rows = (await session.execute(prunable)).all()
            if rows:
                await _delete_hosts(session, [r.id for r in rows])
        for r in rows:
            srv.hosts.drop(r.uid)
            srv.tokens.drop_host(r.uid)
        pruned += len(rows)
        if len(rows) < _PRUNE_BATCH:
            break
    if pruned:
        log.info("pruned %d host(s) lost for more than %gs with no task on record", pruned, after_s)
    return pruned
