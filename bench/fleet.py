"""Fleet benchmark: thousands of simulated workers on one server process.

How the client side keeps up: the simulated workers (``dispatch.SimWorker``, each with a
connection and a login of its own, as real volunteers have) are spread over ``--procs``
processes with one event loop each, so the bench's CPU is not one core's. The parent
starts the server (``dispatch.deployment``: the tests' harness, tests/helpers/deployment.py),
inserts the no-op app, starts the children, which
register every worker and wait; it then submits the jobs in bulk, the children work them,
and the parent watches the server's memory until every job is COMPLETED.

Printed: how long the fleet took to register, jobs/s, the server's peak RSS (its process
and any children), 5xx answers, leases lost, duplicates, and whether every job was
completed exactly once on the server. Targets (issue: a volunteer fleet): 10,000 workers,
20,000 jobs, 0 5xx, 0 leases lost, every job once, RSS <= 1 GB, registration <= 60 s.

    .venv/bin/python bench/fleet.py --workers 10000 --jobs 20000
    .venv/bin/python bench/fleet.py --workers 1000 --jobs 5000 --db postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import (  # noqa: E402  (a sibling script)
    APP_NAME,
    NOOP_SCRIPT,
    BenchError,
    SimWorker,
    Tally,
    count_listed,
    deployment,
    server_errors,
    server_settings,
    transport_from_conf,
)
from helpers.deployment import Deployment  # noqa: E402  (dispatch put tests/ on the path)

log = logging.getLogger("fleet")

#: logins and registrations of one child in flight at once
REGISTER_CONCURRENCY = 64
#: a run with no job reported for this long is stopped (and reported NOT CLEAN)
STALL_S = 60.0


# -- a child: a share of the fleet ----------------------------------------------------------------
async def child(conf: Path, first: int, count: int, wait_s: float, progress_file: Path) -> None:
    """Register ``count`` workers, say so, work when told, stop when told, print the tally."""
    tally = Tally()
    workers = [
        SimWorker(
            f"fleet-{first + i:05d}",
            transport_from_conf(conf, statuses=tally.statuses, connections=2),
            tally,
            wait_s,
        )
        for i in range(count)
    ]
    sem = asyncio.Semaphore(REGISTER_CONCURRENCY)
    failed = 0

    async def register(w: SimWorker) -> None:
        nonlocal failed
        async with sem:
            try:
                await w.register()
            except Exception as exc:  # counted and said; the run goes on with the others
                failed += 1
                log.warning("%s: registration failed: %s", w.name, exc)

    t0 = time.perf_counter()
    await asyncio.gather(*(register(w) for w in workers))
    print(json.dumps({"registered_s": time.perf_counter() - t0, "failed": failed}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # "go"
    live = [w for w in workers if w.host_uid]
    tasks = [asyncio.create_task(w.run()) for w in live]

    async def progress() -> None:
        while True:
            progress_file.write_text(str(tally.reported))
            await asyncio.sleep(0.5)

    telling = asyncio.create_task(progress())
    await reader.readline()  # "stop"
    telling.cancel()
    for w in live:
        w.stopping = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(w.t.close() for w in workers), return_exceptions=True)
    print(
        json.dumps(
            {
                "seen": sorted(tally.seen_jobs),
                "duplicates": tally.duplicates,
                "errors": tally.errors,
                "call_errors": dict(tally.call_errors),
                "call_error_examples": tally.call_error_examples,
                "report_errors": dict(tally.report_errors),
                "statuses": {str(k): v for k, v in tally.statuses.items()},
                "released": tally.released,
                "requests": tally.requests,
                "turned_away": tally.turned_away,
                "heartbeats": tally.heartbeats,
                "beats_skipped": tally.beats_skipped,
            }
        ),
        flush=True,
    )


# -- the parent -------------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        return int(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)))
    except psutil.Error:
        return 0


async def parent(args: argparse.Namespace) -> int:
    extra = [f"max_waiting_requests={args.workers + 100}"] if args.room else []
    try:
        settings = server_settings(extra + args.server_conf)
    except BenchError as exc:
        raise SystemExit(f"bench/fleet.py: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="xwbench-fleet-") as tmp:
        server = deployment(Path(tmp), args.db, settings)
        try:
            # xwserver init runs its own main: in a thread, as this event loop is running
            await asyncio.to_thread(server.init)
            await asyncio.to_thread(server.start_server)
            return await run(args, server)
        except Exception:
            print(server.describe(), file=sys.stderr)
            raise
        finally:
            await asyncio.to_thread(server.close)
            if args.keep_logs:
                import shutil

                shutil.copytree(server.home / "var" / "log", args.keep_logs, dirs_exist_ok=True)


async def run(args: argparse.Namespace, server: Deployment) -> int:
    submitter: Counter[int] = Counter()
    admin = transport_from_conf(server.admin_conf, statuses=submitter)
    children: list[subprocess.Popen[str]] = []
    try:
        await admin.request("GET", "/version", auth=False)
        binary = await admin.upload("/data", NOOP_SCRIPT, params={"name": "noop.sh"})
        await admin.request(
            "POST",
            "/apps",
            json={"name": APP_NAME, "binaries": [{"os": "any", "cpu": "any", "data_uid": binary["uid"]}]},
        )
        pid = server.server_pid()
        assert pid is not None
        rss0 = rss_bytes(pid)
        share = -(-args.workers // args.procs)
        progress_files: list[Path] = []
        t0 = time.perf_counter()
        for i in range(args.procs):
            first, count = i * share, min(share, args.workers - i * share)
            if count <= 0:
                break
            progress_files.append(server.root / f"child-{i}.progress")
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(server.worker_conf),
                        str(first),
                        str(count),
                        str(args.wait_s),
                        str(progress_files[-1]),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        peak = rss0
        registered = []
        for c in children:
            assert c.stdout is not None
            line = await asyncio.to_thread(c.stdout.readline)
            registered.append(json.loads(line))
        register_s = time.perf_counter() - t0
        await asyncio.sleep(2.0)  # the fleet connected, registered and idle
        connected = rss_bytes(pid)
        peak = max(peak, connected)
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        await asyncio.sleep(1.0)
        label = f"fleet-{os.getpid()}"
        t1 = time.perf_counter()
        for start in range(0, args.jobs, 5000):
            specs = [
                {"app": APP_NAME, "args": [str(i)], "label": label}
                for i in range(start, min(start + 5000, args.jobs))
            ]
            await admin.request("POST", "/jobs/bulk", json={"jobs": specs}, timeout_s=300)
        deadline = time.monotonic() + max(120.0, args.jobs / 20)
        done = 0
        last_progress, last_reported = time.monotonic(), -1
        while time.monotonic() < deadline:
            peak = max(peak, rss_bytes(pid))
            # progress from the children's files, not from the server: listing thousands of
            # jobs every second would load the server it measures
            reported = sum(int(f.read_text() or 0) for f in progress_files if f.exists())
            if reported >= args.jobs:
                break
            if reported != last_reported:
                last_progress, last_reported = time.monotonic(), reported
            elif time.monotonic() - last_progress > STALL_S:
                log.warning(
                    "no job reported for %.0f s (%d of %d): stopping the run", STALL_S, reported, args.jobs
                )
                break
            await asyncio.sleep(0.5)
        wall = time.perf_counter() - t1
        clients_cpu_s = sum(cpu_s(c.pid) for c in children)
        done = await count_listed(admin, "/jobs", "jobs", {"label": label, "status": "COMPLETED"})
        peak = max(peak, rss_bytes(pid))
        tallies = []
        for c in children:
            assert c.stdin is not None and c.stdout is not None
            c.stdin.write("stop\n")
            c.stdin.flush()
        for c in children:
            assert c.stdout is not None
            tallies.append(json.loads(await asyncio.to_thread(c.stdout.readline)))
            await asyncio.to_thread(c.wait, 60)
        lost = await count_listed(admin, "/tasks", "tasks", {"status": "LOST"})
        seen: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        for t in tallies:
            seen.update(t["seen"])
            statuses.update({int(k): v for k, v in t["statuses"].items()})
        duplicates = sum(t["duplicates"] for t in tallies) + sum(n - 1 for n in seen.values() if n > 1)
        fivexx = server_errors(statuses)
        failed = sum(r["failed"] for r in registered)
        print("XtremWeb-Py fleet benchmark")
        print(
            f"  workers            {args.workers} simulated, in {len(children)} processes (one event loop each)"
        )
        print(f"  db                 {args.db or 'embedded SQLite'}")
        print(
            f"  client side        {clients_cpu_s:.0f} s of CPU over {register_s + 3 + wall:.0f} s "
            f"({clients_cpu_s / (register_s + 3 + wall):.2f} of {psutil.cpu_count()} cores): "
            "the simulated workers are not the limit while below one core per process"
        )
        print(
            f"  registration       {register_s:.1f} s for the fleet (login + register each; target <= 60 s), {failed} failed"
        )
        print(
            f"  jobs               {done} of {args.jobs} COMPLETED in {wall:.1f} s ({done / wall:.0f} jobs/s)"
        )
        print(
            f"  server RSS         {rss0 / 2**20:.0f} MiB alone, {connected / 2**20:.0f} MiB with the fleet "
            f"registered ({(connected - rss0) / max(1, args.workers) / 1024:.0f} KiB per worker), "
            f"peak {peak / 2**20:.0f} MiB (target <= 1024 MiB)"
        )
        print(
            f"  5xx answers        workers {dict(fivexx) or 0}, submitter {dict(server_errors(submitter)) or 0}"
        )
        kinds: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for t in tallies:
            for k, text in t["call_error_examples"].items():
                examples.setdefault(k, text)
            kinds.update(t["call_errors"])
            kinds.update({f"report refused: {k}": v for k, v in t["report_errors"].items()})
        print(
            f"  leases lost        {lost}; duplicates {duplicates}; worker errors {sum(t['errors'] for t in tallies)}"
            + (f" ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})" if kinds else "")
        )
        for k, text in examples.items():
            print(f"    {k}, e.g.: {text}")
        print(
            f"  calls              {sum(t['requests'] for t in tallies)} work requests answered, "
            f"{sum(t['heartbeats'] for t in tallies)} heartbeats, "
            f"{sum(t['beats_skipped'] for t in tallies)} not sent (a work request was out)"
        )
        ok = (
            done == args.jobs
            and not fivexx
            and not server_errors(submitter)
            and lost == 0
            and duplicates == 0
            and failed == 0
        )
        print(f"  verdict            {'clean' if ok else 'NOT CLEAN'}")
        return 0 if ok else 1
    finally:
        await admin.close()
        for c in children:  # a run that failed half-way leaves no simulated worker behind
            if c.poll() is None:
                c.kill()
                await asyncio.to_thread(c.wait, 10)


def cpu_s(pid: int) -> float:
    """The CPU time (user + system) a process has used so far; 0 once it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        conf, first, count, wait_s = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        logging.basicConfig(level=logging.ERROR)
        asyncio.run(child(conf, first, count, wait_s, Path(sys.argv[6])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=10000, help="simulated workers (default 10000)")
    p.add_argument("--jobs", type=int, default=20000, help="jobs (default 20000)")
    p.add_argument("--procs", type=int, default=4, help="processes the workers are spread over (default 4)")
    p.add_argument("--db", help="SQLAlchemy URL of an empty database (default: embedded SQLite)")
    p.add_argument("--wait-s", type=float, default=20.0, help="the workers' long-poll (default 20 s)")
    p.add_argument(
        "--room",
        action="store_true",
        help="let every worker long-poll (max_waiting_requests above the fleet)",
    )
    p.add_argument(
        "--server-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a line for the server's xwserver.conf (repeatable), e.g. heartbeat_interval_s=30",
    )
    p.add_argument("--keep-logs", type=Path, help="copy the server's logs to this folder at the end")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(parent(args))


if __name__ == "__main__":
    sys.exit(main())
