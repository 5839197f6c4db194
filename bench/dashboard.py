"""Dashboard pages with 100,000 jobs in the database: does each page load in 200 ms or less?

A server home is made with ``xwserver init`` in a temporary folder, filled straight in its
database with ``--jobs`` jobs (half PENDING, 40 % COMPLETED, 10 % ERROR, under 20 labels,
all the admin's, so the admin's pages count and page through every one of them), one
registered host and tasks for one job; then the server runs as users run it (``xwserver
start``, its own process, real TLS, log level WARNING; started and stopped by the tests'
harness, tests/helpers/deployment.py, as every benchmark's server) and a client that keeps cookies logs in through the
form and times each page ``--rounds`` times: the first page of the jobs, a filter by status,
by label, a page deep in the list (keyset: it starts below a job 90 % down), a job's detail,
the submission form, the workers. Printed: the median and the 95th percentile per page, in
milliseconds, and whether the slowest median is within the 200 ms target; and what one
refresh of /metrics' counts from the database costs with as many jobs.

    .venv/bin/python bench/dashboard.py                 # 100,000 jobs, embedded SQLite
    .venv/bin/python bench/dashboard.py --jobs 1000     # the same pages with few jobs
    .venv/bin/python bench/dashboard.py --db postgresql+asyncpg://postgres@127.0.0.1/xwbench

``--db`` names an empty database (``xwserver init`` migrates it).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout where the package is not installed
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))  # bench/dispatch.py's deployment

from dispatch import deployment  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from xwcommon.uri import new_uid  # noqa: E402
from xwserver.db.engine import create_engine  # noqa: E402
from xwserver.db.models import App, AppBinary, Data, Host, Job, Task, User  # noqa: E402
from xwserver.settings import ServerSettings  # noqa: E402

TARGET_MS = 200.0
BATCH = 10_000
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def fill(settings: ServerSettings, n_jobs: int) -> tuple[str, str]:
    """``n_jobs`` jobs, a host and one job's tasks; (a job 90 % down the list, the job with tasks)."""
    engine = create_engine(settings.db_url)
    now = time.time()
    async with engine.begin() as conn:
        admin = (await conn.execute(select(User.id).where(User.login == "admin"))).scalar_one()
        worker = (await conn.execute(select(User.id).where(User.login == "worker"))).scalar_one()
        data_id = (
            await conn.execute(
                insert(Data).returning(Data.id),
                {
                    "uid": new_uid(),
                    "name": "bench",
                    "size": 1,
                    "sha256": "0" * 64,
                    "status": "AVAILABLE",
                    "owner_id": admin,
                    "access_rights": 0o755,
                    "created_at": now,
                },
            )
        ).scalar_one()
        app_id = (
            await conn.execute(
                insert(App).returning(App.id),
                {
                    "uid": new_uid(),
                    "name": "bench",
                    "owner_id": admin,
                    "access_rights": 0o755,
                    "created_at": now,
                },
            )
        ).scalar_one()
        await conn.execute(
            insert(AppBinary), {"app_id": app_id, "os": "any", "cpu": "any", "data_id": data_id}
        )
        host_id = (
            await conn.execute(
                insert(Host).returning(Host.id),
                {
                    "uid": new_uid(),
                    "name": "bench-host",
                    "os": "linux",
                    "cpu": "x86_64",
                    "cores": 4,
                    "memory_bytes": 8 << 30,
                    "disk_free_bytes": 100 << 30,
                    "owner_id": worker,
                    "registered_at": now,
                    "last_seen_at": now,
                },
            )
        ).scalar_one()
    uids = [new_uid() for _ in range(n_jobs)]
    for start in range(0, n_jobs, BATCH):
        rows = []
        for i in range(start, min(n_jobs, start + BATCH)):
            status = "PENDING" if i % 10 < 5 else "COMPLETED" if i % 10 < 9 else "ERROR"
            rows.append(
                {
                    "uid": uids[i],
                    "app_id": app_id,
                    "owner_id": admin,
                    "label": f"label{i % 20}",
                    "args": f'["{i}"]',
                    "status": status,
                    "retry": 0,
                    "max_retry": 3,
                    "exit_code": None if status == "PENDING" else (0 if status == "COMPLETED" else 1),
                    "access_rights": 0o755,
                    "created_at": now - (n_jobs - i),
                    "completed_at": None if status == "PENDING" else now,
                }
            )
        async with engine.begin() as conn:
            await conn.execute(insert(Job), rows)
    detailed = uids[-2]  # a COMPLETED job (i % 10 == 8)
    async with engine.begin() as conn:
        job_id = (await conn.execute(select(Job.id).where(Job.uid == detailed))).scalar_one()
        await conn.execute(
            insert(Task),
            [
                {
                    "uid": new_uid(),
                    "job_id": job_id,
                    "host_id": host_id,
                    "status": status,
                    "started_at": now - 60,
                    "ended_at": now,
                    "lease_expires_at": now,
                    "exit_code": 0,
                    "cpu_user_s": 1.0,
                    "cpu_system_s": 0.1,
                    "wall_s": 2.0,
                    "max_rss_bytes": 1 << 20,
                }
                for status in ("LOST", "COMPLETED")
            ],
        )
    await engine.dispose()
    return uids[n_jobs // 10], detailed


async def count_cost(settings: ServerSettings, rounds: int) -> list[float]:
    """What one refresh of /metrics' database counts costs (jobs, tasks, hosts by status,
    bytes stored), in milliseconds: done at most once per COUNTS_TTL_S whatever the scrapes."""
    from xwserver.metrics import DatabaseCounts
    from xwserver.state import Server
    from xwserver.store import DataStore

    srv = Server(settings, create_engine(settings.db_url), DataStore(settings.data_dir))
    try:
        counts = DatabaseCounts(srv, ttl_s=0.0)
        await counts.refresh()  # warm
        out = []
        for _ in range(rounds):
            started = time.perf_counter()
            await counts.refresh()
            out.append((time.perf_counter() - started) * 1000)
        return out
    finally:
        await srv.engine.dispose()


async def measure(
    url: str, ca_file: Path, password: str, pages: dict[str, str], rounds: int
) -> dict[str, list[float]]:
    context = ssl.create_default_context(cafile=str(ca_file))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), cookie_jar=jar) as s:
        async with s.get(f"{url}/login") as r:
            [token] = CSRF.findall(await r.text())
        form = {"csrf": token, "login": "admin", "password": password, "next": "/jobs"}
        async with s.post(f"{url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        times: dict[str, list[float]] = {name: [] for name in pages}
        for round_ in range(rounds + 1):
            for name, path in pages.items():
                started = time.perf_counter()
                async with s.get(url + path, allow_redirects=False) as r:
                    body = await r.read()
                elapsed_ms = (time.perf_counter() - started) * 1000
                assert r.status == 200, (path, r.status, body[:300])
                if round_:  # the first round warms connections, caches and compiled statements
                    times[name].append(elapsed_ms)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100_000, help="jobs in the database (default 100,000)")
    p.add_argument("--rounds", type=int, default=20, help="times each page is timed (default 20)")
    p.add_argument("--db", help="SQLAlchemy URL of an empty database (default: embedded SQLite)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="xwbench-dashboard-") as tmp:
        server = deployment(Path(tmp), args.db)
        try:
            server.init()
            settings = ServerSettings.load(server.home)
            started = time.perf_counter()
            deep, detailed = asyncio.run(fill(settings, args.jobs))
            print("XtremWeb-Py dashboard pages")
            print(f"  db                 {'embedded SQLite' if not args.db else args.db}")
            print(f"  jobs               {args.jobs:,} (filled in {time.perf_counter() - started:.1f} s)")
            server.start_server(log_level="WARNING")
            pages = {
                "jobs, first page": "/jobs",
                "jobs, status=COMPLETED": "/jobs?status=COMPLETED",
                "jobs, label=label7": "/jobs?label=label7",
                "jobs, 90 % down": f"/jobs?before={deep}",
                "a job's detail": f"/jobs/{detailed}",
                "submission form": "/submit",
                "workers": "/workers",
            }
            times = asyncio.run(
                measure(server.url, server.ca_file, server.admin_password, pages, args.rounds)
            )
        finally:
            server.close()
        counting = sorted(asyncio.run(count_cost(settings, args.rounds)))
    print(
        f"  /metrics counts          median {statistics.median(counting):7.1f} ms   "
        f"(one refresh of jobs, tasks, hosts by status; at most once per 10 s)"
    )
    medians = {}
    for name, values in times.items():
        values.sort()
        medians[name] = statistics.median(values)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(f"  {name:<24} median {medians[name]:7.1f} ms   p95 {p95:7.1f} ms   ({len(values)} loads)")
    worst = max(medians, key=lambda k: medians[k])
    verdict = "meets" if medians[worst] <= TARGET_MS else "MISSES"
    print(f"  slowest median     {medians[worst]:.1f} ms ({worst}; target <= {TARGET_MS:.0f} ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
