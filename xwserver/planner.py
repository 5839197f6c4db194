"""Fresh planner statistics for the hot tables on PostgreSQL.

The claim walks the partial index of PENDING jobs in submission order. PostgreSQL picks
that plan only while its statistics say PENDING jobs are many: a burst of submissions
into a table the statistics saw empty (or all COMPLETED) makes it estimate a handful,
and choose a bitmap of every PENDING job and a sort, whose cost grows with the queue
(measured: 11 ms and 2,000 buffers per claim with 5,000 queued, 0.7 ms and 130 with
fresh statistics). Autovacuum analyzes a table once a minute at best; this loop does it
within seconds of the table changing a lot, at the cost of one ``ANALYZE`` (a sample of
at most 30,000 rows) per table and interval.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text

from .state import Server

log = logging.getLogger(__name__)

#: tables whose plans depend on how many rows have a status
TABLES = ("jobs", "tasks")
INTERVAL_S = 2.0
#: a table is analyzed once this many rows changed since its last analysis, or this share
MIN_CHANGES = 1000
SHARE = 0.05

_CHANGED = text(
    "SELECT s.relname, n_mod_since_analyze, GREATEST(c.reltuples, 0)"
    " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.relname = ANY(:tables) AND s.schemaname = current_schema()"
)


def stale(changed: int, rows: float) -> bool:
    return changed >= max(MIN_CHANGES, SHARE * rows)


async def refresh(srv: Server) -> list[str]:
    """Analyze the hot tables whose statistics lag behind; returns their names. Among
    several server processes only the leader calls it (:class:`processes.Leader`)."""
    analyzed: list[str] = []
    async with srv.engine.connect() as conn:
        rows = (await conn.execute(_CHANGED, {"tables": list(TABLES)})).all()
        await conn.commit()
        for name, changed, count in rows:
            if stale(changed, count):
                # ANALYZE takes no lock that claims or reports wait for
                await conn.execute(text(f"ANALYZE {name}"))
                await conn.commit()
                analyzed.append(name)
    return analyzed


async def statistics_loop(srv: Server) -> None:
    """Runs for the server's life on PostgreSQL; one error never stops it."""
    while True:
        await asyncio.sleep(INTERVAL_S)
        try:
            analyzed = await refresh(srv) if await srv.leader.held() else []
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing the planner's statistics failed; trying again next round")
        else:
            if analyzed:
                log.debug("analyzed %s", ", ".join(analyzed))
