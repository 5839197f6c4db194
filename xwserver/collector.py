"""The collector: what nothing references any more goes away.

Two kinds of leftovers: result archives uploaded by a task that was then lost (its job
ran again elsewhere, so no job names that result), and stored files no data object names
(their last data object was removed, or an upload died between storing and recording).
Only what is older than ``gc_grace_s`` is taken, so work in flight is never touched.
Each round also prunes the hosts lost longer than ``host_prune_after_s``
(:func:`xwserver.hosts.prune_lost`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import and_, delete, exists, select

from xwcommon.status import TaskStatus

from . import events, hosts
from .db.models import Data, Job, Task
from .state import Server

log = logging.getLogger(__name__)


async def collect_garbage(srv: Server, *, now: float | None = None) -> tuple[int, int]:
    """Returns (orphan results removed, stored files removed)."""
    now = time.time() if now is None else now
    before = now - srv.settings.gc_grace_s
    async with srv.sessions.begin() as session:
        orphans = list(
            (
                await session.execute(
                    select(Data.id).where(
                        Data.task_id.is_not(None),
                        Data.created_at < before,
                        ~exists().where(Job.result_data_id == Data.id),
                        ~exists().where(and_(Task.id == Data.task_id, Task.status == TaskStatus.RUNNING)),
                    )
                )
            ).scalars()
        )
        if orphans:
            await session.execute(delete(Data).where(Data.id.in_(orphans)))
        referenced = set((await session.execute(select(Data.sha256).distinct())).scalars())
    files = await asyncio.to_thread(srv.store.collect, referenced, older_than=before)
    if orphans or files:
        log.info("collected %d orphan results and %d unreferenced files", len(orphans), files)
    return len(orphans), files


async def collector_loop(srv: Server) -> None:
    """Runs for the server's life; one error never stops it."""
    while True:
        await asyncio.sleep(srv.settings.gc_interval_s)
        try:
            if await srv.leader.held():  # one process of several collects
                await collect_garbage(srv)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("collector failed; trying again next round")
        try:
            if await srv.leader.held():  # one process of several prunes
                await hosts.prune_lost(srv)
                await events.prune(srv)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pruning lost hosts failed; trying again next round")
