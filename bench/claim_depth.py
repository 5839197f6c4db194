"""Claim cost against the depth of the queue: does a claim cost the same with a million
PENDING jobs as with a thousand?

For each depth (default 1,000 and 1,000,000) a fresh database gets that many PENDING jobs
(inserted in bulk by SQL, then analyzed as the server's statistics loop would), and the
server's own claim (``scheduler.claim`` inside ``db.engine.transaction``, as a work request
runs it, one public worker asking for 4 jobs) runs ``--claims`` times in a row. Printed:
the mean time per claim at each depth (wall time: on PostgreSQL most of it is the
database's), and the ratio of the deepest to the shallowest. Target: <= 1.2x.

    .venv/bin/python bench/claim_depth.py                       # embedded SQLite
    .venv/bin/python bench/claim_depth.py --db postgresql+asyncpg://postgres@127.0.0.1/xwbench

``--db`` names a database that may be emptied: its tables are dropped between depths.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from xwcommon.levels import UserLevel
from xwcommon.uri import new_uid
from xwserver.access import Caller
from xwserver.bootstrap import bootstrap
from xwserver.db.engine import create_engine, transaction
from xwserver.db.models import App, AppBinary, Base, Data, Host
from xwserver.scheduler import claim
from xwserver.settings import ServerSettings
from xwserver.state import HostInfo, Server
from xwserver.store import DataStore

CAPACITY = 4


async def _drop_all(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await engine.dispose()


async def _fill(srv: Server, depth: int) -> tuple[Caller, HostInfo]:
    now = time.time()
    async with srv.sessions.begin() as session:
        worker = (await session.execute(text("SELECT id FROM users WHERE login = 'worker'"))).scalar_one()
        admin = (await session.execute(text("SELECT id FROM users WHERE login = 'admin'"))).scalar_one()
        data = Data(
            uid=new_uid(),
            name="noop",
            size=1,
            sha256="0" * 64,
            status="AVAILABLE",
            owner_id=admin,
            access_rights=0o755,
            created_at=now,
        )
        app = App(uid=new_uid(), name="noop", owner_id=admin, access_rights=0o755, created_at=now)
        session.add_all([data, app])
        await session.flush()
        session.add(AppBinary(app_id=app.id, os="any", cpu="any", data_id=data.id))
        host = Host(
            uid=new_uid(),
            name="bench",
            os="linux",
            cpu="x86_64",
            cores=4,
            memory_bytes=8 << 30,
            disk_free_bytes=100 << 30,
            owner_id=worker,
            registered_at=now,
            last_seen_at=now,
        )
        session.add(host)
        await session.flush()
        app_id, host_id, host_uid = app.id, host.id, host.uid
    # the jobs, in bulk: one statement per 100,000
    if srv.backend == "postgresql":
        rows = "SELECT gen_random_uuid()::text, :app, :owner, '[]', 'PENDING', 0, 3, 493, :now, 0, 0, false FROM generate_series(1, :n)"
    else:
        rows = (
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
            "SELECT lower(hex(randomblob(16))), :app, :owner, '[]', 'PENDING', 0, 3, 493, :now, 0, 0, 0 FROM s"
        )
    insert = (
        "INSERT INTO jobs (uid, app_id, owner_id, args, status, retry, max_retry, access_rights,"
        " created_at, min_memory_bytes, min_disk_bytes, needs_network) " + rows
    )
    left = depth
    while left > 0:
        n = min(left, 100_000)
        async with srv.engine.begin() as conn:
            await conn.execute(text(insert), {"app": app_id, "owner": admin, "now": now, "n": n})
        left -= n
    async with srv.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    caller = Caller(id=worker, uid="", login="worker", rights=UserLevel.WORKER, group_id=None)
    return caller, HostInfo(id=host_id, uid=host_uid, owner_id=worker, os="linux", cpu="x86_64", enabled=True)


async def measure(url: str | None, depth: int, claims: int) -> float:
    with tempfile.TemporaryDirectory(prefix="xwbench-depth-") as tmp:
        home = Path(tmp)
        db_url = url or f"sqlite+aiosqlite:///{home / 'xw.db'}"
        if url:
            await _drop_all(url)
        settings = ServerSettings(home=home, db_url=db_url)
        await bootstrap(settings, "admin", "bench-admin-password")
        srv = Server(settings, create_engine(db_url), DataStore(home / "data"))
        try:
            caller, host = await _fill(srv, depth)

            async def one(conn: Any) -> int:
                return len(await claim(srv, conn, caller, host, CAPACITY))

            for _ in range(20):  # warm: connections, compiled statements, the binary cache
                await transaction(srv.engine, one, durable=False)
            times = []
            for _ in range(claims):
                t = time.perf_counter()
                got = await transaction(srv.engine, one, durable=False)
                times.append(time.perf_counter() - t)
                assert got == CAPACITY, f"a claim took {got} jobs, not {CAPACITY}"
            return statistics.mean(times) * 1000
        finally:
            await srv.engine.dispose()


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", help="SQLAlchemy URL of a database that may be emptied (default: embedded SQLite)")
    p.add_argument(
        "--depths", default="1000,1000000", help="PENDING jobs before the claims (default 1000,1000000)"
    )
    p.add_argument(
        "--claims",
        type=int,
        default=200,
        help="claims timed at each depth (default 200; 4 jobs each, and the warm-up takes 80: the shallowest depth must hold them)",
    )
    args = p.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    print("XtremWeb-Py claim cost by queue depth")
    print(f"  db                 {args.db or 'embedded SQLite'}")
    results: dict[int, list[float]] = {}
    for depth in depths:
        ms = await measure(args.db, depth, args.claims)
        results.setdefault(depth, []).append(ms)
        print(f"  {depth:>10,} PENDING  {ms:.3f} ms per claim of {CAPACITY} ({args.claims} claims)")
    # a depth given twice (1000,1000000,1000: before and after) is taken as the mean of its runs
    low = statistics.mean(results[min(depths)])
    high = statistics.mean(results[max(depths)])
    verdict = "meets" if high / low <= 1.2 else "MISSES"
    print(
        f"  ratio              {high / low:.2f}x ({max(depths):,} over {min(depths):,}; target <= 1.2x: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
