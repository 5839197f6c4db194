"""The event history: who did what to which job, task, host, user, group or app, when, from
which address and why, appended in the transaction that made the change.

Requests set who acts (:data:`ACTOR`, by the authentication middleware: the caller's user
id and address); the background loops (the reaper, the validator) act as the server
(null). :func:`record` adds the rows with one ``INSERT`` for any number (executemany), so
the hot path pays one statement per transaction for its events, not one per job.

It appends them to ``events_new``, a table with no index but its primary key, and
:func:`settle` moves them to ``events``, indexed for a job's and a host's history, in
batches, as background work (:func:`settle_loop`, run by the one process that runs the
background loops: a batch a second while workers keep asking for work, the rest in the
next quiet second, and never more than a minute late). Why: maintaining the history's
indexes in every claim and report cost the full cycle about a quarter of its server CPU
on SQLite (``bench/dispatch.py``, events on and off), while an append to an unindexed
table is within the benchmark's noise. Readers read both tables: nothing recorded is out
of sight meanwhile, and a crash loses nothing, since each event was committed with its
change.

A user sees the events of the objects they may read (``GET /events``, ``xwevents``); they
are kept ``events.retention_s`` (90 days by default) and then removed by the collector.
``events.record=false`` turns the history off (for a measurement of its cost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, NotFound
from xwcommon.uri import parse_uid

from .access import READ, Caller, may_on
from .db.engine import connection, transaction
from .db.models import Event, Host, Job, NewEvent
from .state import Server, uid_maps

log = logging.getLogger(__name__)

#: who acts in this request: (user id, address); (None, None) for the server's own loops
ACTOR: ContextVar[tuple[int | None, str | None]] = ContextVar("xw_actor", default=(None, None))
#: events.record (set at the server's start)
ENABLED = True
_INSERT = insert(NewEvent)
MAX_DETAIL = 1000


def acting(user_id: int | None, address: str | None) -> Token[tuple[int | None, str | None]]:
    return ACTOR.set((user_id, (address or "")[:64] or None))


#: an event as :func:`event` makes it: these columns' values, in this order
Made = tuple[str, str, str, int | None, str | None, str | None, str | None]
_MADE = ("kind", "object_uid", "action", "owner_id", "job_uid", "host_uid", "detail")
_ROW = ("at", "actor_id", "address", *_MADE)


def event(
    kind: str,
    object_uid: str,
    action: str,
    *,
    owner_id: int | None = None,
    job_uid: str | None = None,
    host_uid: str | None = None,
    detail: str | None = None,
) -> Made:
    return (
        kind,
        object_uid,
        action,
        owner_id,
        # a job's (a host's) own events carry its uid here too: one index finds its history
        object_uid if kind == "job" else job_uid,
        object_uid if kind == "host" else host_uid,
        detail[:MAX_DETAIL] if detail else None,
    )


async def record(conn: Any, made: Iterable[Made], now: float | None = None) -> None:
    """Append events (made by :func:`event`) in the caller's transaction: one statement, a
    tuple a row (this runs in every claim and report)."""
    if not ENABLED:
        return
    actor, address = ACTOR.get()
    at = time.time() if now is None else now
    rows = [(at, actor, address, *e) for e in made]
    if not rows:
        return
    if hasattr(conn, "insert_rows"):  # the hot path's own connections (xwserver.db.direct)
        await conn.insert_rows(NewEvent.__tablename__, _ROW, rows)
    else:  # MariaDB's transactions, and sessions, go through SQLAlchemy
        await conn.execute(_INSERT, [dict(zip(_ROW, r, strict=True)) for r in rows])


# -- reading ---------------------------------------------------------------------------------------

MAX_LIST = 10_000


def _since(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"since={text[:40]!r}: give a date and time (ISO 8601, e.g. 2026-12-01T08:00:00Z) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def list_events(
    srv: Server,
    caller: Caller,
    *,
    job: str | None = None,
    host: str | None = None,
    since: str | None = None,
    limit: str | None = None,
) -> list[dict[str, Any]]:
    """The events the caller may see, oldest first: of one job (and its tasks) it may read,
    of one host it may read, or (no filter) of its own objects and its own acts; a SUPER
    user sees every event."""
    try:
        n = int(limit) if limit else 1000
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    if not 1 <= n <= MAX_LIST:
        raise BadRequest(f"limit must be 1..{MAX_LIST}")
    after = _since(since)
    async with srv.sessions() as session:
        where: list[Any] = []
        if job:
            uid = parse_uid(job, "job")
            row = (
                await session.execute(select(Job.owner_id, Job.access_rights).where(Job.uid == uid))
            ).first()
            if row is not None and not await may_on(
                session, caller, READ, owner_id=row.owner_id, access_rights=row.access_rights
            ):
                raise NotFound(f"no job {uid}; list yours with xwworks")
            if row is None and not caller.is_super:  # a removed job's history: its owner's
                where.append(lambda t: or_(t.owner_id == caller.id, t.actor_id == caller.id))
            where.append(lambda t: t.job_uid == uid)
        elif host:
            uid = parse_uid(host, "host")
            await _readable_host(session, caller, uid)
            where.append(lambda t: t.host_uid == uid)
        elif not caller.is_super:
            where.append(lambda t: or_(t.owner_id == caller.id, t.actor_id == caller.id))
        if after is not None:
            where.append(lambda t: t.at >= after)
        # the history first, then the newest (not settled yet): every settled event is
        # older than every one still waiting, as they are moved oldest first
        rows: list[Any] = []
        for table, moved in ((Event, ()), (NewEvent, (_NOT_MOVED,))):
            if len(rows) >= n:
                break
            q = (
                select(table)
                .where(*(w(table) for w in where), *moved)
                .order_by(table.id)
                .limit(n - len(rows))
            )
            rows += (await session.execute(q)).scalars()
        actors = (await uid_maps(session, {"user": [e.actor_id for e in rows]}))["user"]
    return [srv.wire.event(e, actors.get(e.actor_id) if e.actor_id else None) for e in rows]


async def _readable_host(session: AsyncSession, caller: Caller, uid: str) -> None:
    from xwcommon.levels import UserLevel

    row = (await session.execute(select(Host.owner_id, Host.access_rights).where(Host.uid == uid))).first()
    if caller.rights >= UserLevel.ADVANCED:
        return
    if row is None or not await may_on(
        session, caller, READ, owner_id=row.owner_id, access_rights=row.access_rights
    ):
        raise NotFound(f"no host {uid} visible to you; list them with xwworkers")


#: the oldest events, by the primary key (appended in time order)
_OLDEST = select(Event.id, Event.at).order_by(Event.id).limit(bindparam("batch"))
_DROP = delete(Event).where(Event.id.in_(bindparam("ids", expanding=True)))


async def prune(srv: Server, *, now: float | None = None, batch: int = 10_000) -> int:
    """Remove the events older than ``events.retention_s``, in batches; how many went.
    The newest are settled first, so that none escapes its retention."""
    while await settle(srv) == SETTLE_BATCH:
        pass
    before = (time.time() if now is None else now) - srv.settings.events_retention_s
    async with srv.engine.begin() as conn:  # the newest moved row, when it is that old
        await conn.execute(delete(NewEvent).where(NewEvent.at < before, ~_NOT_MOVED))
    gone = 0
    while True:
        async with srv.engine.begin() as conn:
            rows = (await conn.execute(_OLDEST, {"batch": batch})).all()
            ids = [event_id for event_id, at in rows if at < before]
            if ids:
                await conn.execute(_DROP, {"ids": ids})
        gone += len(ids)
        if len(ids) < batch:  # a newer event was reached, or none is left
            return gone


# -- settling: the newest events into the indexed history --------------------------------------------

#: events moved per transaction: on SQLite, a few milliseconds of the one connection
SETTLE_BATCH = 500
#: how often the newest events are moved
SETTLE_INTERVAL_S = 1.0
#: every column, the id included: an event keeps its id when it moves
_COLUMNS = [c.name for c in Event.__table__.columns]
#: the newest events not moved yet (the table's newest row stays once moved: see settle)
_NOT_MOVED = ~exists().where(Event.id == NewEvent.id)
_WAITING = select(NewEvent.id).where(_NOT_MOVED).order_by(NewEvent.id).limit(SETTLE_BATCH)
_MOVE = insert(Event).from_select(
    _COLUMNS,
    select(*(NewEvent.__table__.c[c] for c in _COLUMNS))
    .where(NewEvent.id.in_(bindparam("ids", expanding=True)))
    .order_by(NewEvent.id),
)
_NEWEST = select(func.max(NewEvent.id))
#: the row kept by a round before: rows below the first waiting one were all moved
_KEPT = select(NewEvent.id).where(NewEvent.id < bindparam("first"))
_MOVED = delete(NewEvent).where(
    NewEvent.id.in_(bindparam("ids", expanding=True)), NewEvent.id < bindparam("newest")
)


async def settle(srv: Server) -> int:
    """Move the oldest waiting events (at most :data:`SETTLE_BATCH`) to the history, in one
    transaction, in their order, keeping their ids; how many moved.

    The moved rows are deleted but the table's newest: SQLite numbers a new row one past
    the highest it holds, so an emptied table would number its next events from 1 again,
    ids the history already has. That row, moved, is left out by readers and by the next
    round (``_NOT_MOVED``), and deleted once a newer one is there. Rows are picked by id,
    not by a range: on PostgreSQL an event with a lower id may commit after a higher one
    was moved, and is moved on the next round."""

    async def move(conn: Any) -> int:
        ids = list((await conn.execute(_WAITING)).scalars())
        if ids:
            kept = list((await conn.execute(_KEPT, {"first": ids[0]})).scalars())
            await conn.execute(_MOVE, {"ids": ids})
            newest = (await conn.execute(_NEWEST)).scalar_one_or_none()
            # by their ids, not by a scan of what was moved: the table may hold a backlog
            await conn.execute(_MOVED, {"ids": ids + kept, "newest": newest})
        return len(ids)

    return await transaction(srv.engine, move)


async def settle_loop(srv: Server) -> None:
    """Runs for the server's life in the process that runs the background loops.

    The moves are background work, done in the server's quiet moments: while workers keep
    asking for work, one batch a round (so the waiting table stays small), all that waits
    once a round saw no work request, or once the oldest waiting event is
    :data:`SETTLE_MAX_DELAY_S` old. Readers see every event meanwhile."""
    seen = srv.work_requests
    while True:
        await asyncio.sleep(SETTLE_INTERVAL_S)
        try:
            if not await srv.leader.held():
                continue
            busy, seen = srv.work_requests != seen, srv.work_requests
            moved = await settle(srv)
            if busy and not await _overdue(srv):
                continue
            while moved == SETTLE_BATCH:
                await asyncio.sleep(0)
                moved = await settle(srv)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("moving the newest events to the history failed; trying again next round")


#: the longest an event waits to be moved while the server is busy (seconds)
SETTLE_MAX_DELAY_S = 60.0
_OLDEST_WAITING = select(NewEvent.at).where(_NOT_MOVED).order_by(NewEvent.id).limit(1)


async def _overdue(srv: Server) -> bool:
    async with connection(srv.engine) as conn:  # no shielded close: this runs while busy
        oldest = (await conn.execute(_OLDEST_WAITING)).scalar()
    return oldest is not None and time.time() - oldest > SETTLE_MAX_DELAY_S
