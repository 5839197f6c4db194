"""On SQLite a transaction holds the server's one connection for no turn of the event loop.

With thousands of connected workers a turn of the loop takes milliseconds (TLS handshakes,
other requests): a transaction that let the loop turn while holding the only connection
made every other request wait that long (bench/fleet.py measured 3.7 ms of hold per
transaction at 2,000 workers, for well under a millisecond of SQL).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text

from xwserver.db.engine import create_engine, transaction


async def test_a_sqlite_transaction_runs_within_one_turn_of_the_event_loop(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    try:
        await transaction(engine, lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        loop = asyncio.get_running_loop()
        turns = 0

        def tick() -> None:
            nonlocal turns
            turns += 1
            handle[0] = loop.call_soon(tick)

        handle = [loop.call_soon(tick)]

        async def insert(conn: Any) -> None:
            await conn.execute(text("INSERT INTO t VALUES (1)"))

        await asyncio.sleep(0)
        before = turns
        for _ in range(50):
            await transaction(engine, insert)
        handle[0].cancel()
        assert turns == before, f"50 transactions let the event loop turn {turns - before} times"

        async def count(conn: Any) -> int:
            return int((await conn.execute(text("SELECT count(*) FROM t"))).first()[0])

        assert await transaction(engine, count) == 50
    finally:
        await engine.dispose()
