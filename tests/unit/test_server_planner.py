"""PostgreSQL keeps choosing the claim's index walk while the queue grows in bursts."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from xwserver import hot, jobs, lifecycle, planner
from xwserver.db.direct import PgConnection
from xwserver.users import resolve_token

if TYPE_CHECKING:
    from conftest import XW

ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def test_a_table_is_stale_after_many_changes_or_a_share_of_its_rows() -> None:
    assert not planner.stale(999, 0)
    assert planner.stale(1000, 0)
    assert not planner.stale(40_000, 1_000_000)
    assert planner.stale(50_000, 1_000_000)


@ON_POSTGRESQL
async def test_the_server_analyzes_jobs_after_a_burst_and_the_claim_walks_the_pending_index(xw: XW) -> None:
    await xw.insert_app(xw.admin, "burst")
    caller = await resolve_token(xw.srv, xw.admin)
    # the statistics first see an empty queue, then 3,000 jobs arrive at once
    async with xw.srv.engine.connect() as conn:
        await conn.execute(text("ANALYZE jobs"))
        await conn.commit()
    await jobs.submit(xw.srv, caller, [{"app": "burst", "args": [str(i)]} for i in range(3000)])

    claim = lifecycle._claim_update("public", True, False, False)
    # what scheduler.claim binds for a public worker's host (no tags: hot.NO_TAG)
    params = {
        "os": "linux",
        "cpu": "x86_64",
        "host_id": 1,
        "k": 4,
        "now": 0.0,
        "b_volunteer": -1,
        "b_cores": 4,
        "b_gpus": 0,
        "b_tags": [hot.NO_TAG],
    }
    deadline = time.monotonic() + 6 * planner.INTERVAL_S
    while True:
        async with xw.srv.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            compiled = PgConnection(raw, xw.srv.engine.dialect)._compiled(claim, ())
            rows = await raw.fetch("EXPLAIN " + compiled.sql, *compiled.args(params))
        plan = "\n".join(r[0] for r in rows)
        if "ix_jobs_pending" in plan and "Sort" not in plan and "Bitmap" not in plan:
            break
        # the server's statistics loop should notice the burst within an interval or two
        assert time.monotonic() < deadline, f"the claim still sorts the whole queue:\n{plan}"
        await asyncio.sleep(0.2)
