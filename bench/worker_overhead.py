"""Worker overhead benchmark: what the worker itself costs per job, and what it costs idle.

It starts a real server (``xwserver init`` + ``xwserver start`` in a temporary home on a
free loopback port, by the tests' harness tests/helpers/deployment.py, as bench/dispatch.py
does), inserts an app whose binary is a
two-line shell script that exits 0, and measures:

1. Per job, with the real worker (``xwworker.loop.Worker``) run in this process against
   that server, one job at a time (``workpool.size`` 1 unless ``--slots``), once with the
   bubblewrap sandbox (when bwrap runs here) and once without:

   - *before start*: from the assignment's arrival at the worker to the app's start
     (binary from the download cache, scratch folder, sandbox start);
   - *after exit*: from the app's exit to the server's acknowledgement of the report
     (result zipped and uploaded, report sent);
   - *both*: their sum, all the worker adds to one job.

   The server runs on the same machine and shares its cores: on a small machine its share
   of the work is in these figures too.

   N jobs are submitted (``POST /jobs/bulk``) before the worker starts; the first job of a
   run also downloads the binary (a cold cache), so it is in the max, not in the p50.
2. Idle: a real ``xwworker console`` process (started by the same harness, with the
   public worker config's settings), registered and with no job to run, for
   ``--idle-s`` seconds; the CPU time of it and its helper processes (user + system,
   psutil) over that time, as a percentage of one core. It long-polls and heartbeats with
   its default timings.

Figures only: nothing is asserted. Targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# bench/ is on the path when this file runs as a script; dispatch.py puts the checkout there
from dispatch import (
    BULK_MAX_JOBS,
    BenchError,
    chunks,
    cpu_model,
    deployment,
    percentile,
    transport_from_conf,
    with_server,
)
from helpers.deployment import Deployment

from xwcommon.config import load_properties
from xwworker.executor import Outcome
from xwworker.loop import TaskRun, Worker
from xwworker.sandbox import LocalRunner, Runner, choose_runner
from xwworker.settings import WorkerSettings

log = logging.getLogger("bench.worker_overhead")

APP_NAME = "bench-true"
TRUE_SCRIPT = b"#!/bin/sh\nexit 0\n"
#: issue 9's target: before start + after exit, p50, with the sandbox
TARGET_PER_JOB_MS = 10.0
TARGET_IDLE_PERCENT = 1.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Run:
    """One in-process worker run: its samples in milliseconds."""

    label: str
    runner: str
    before_ms: list[float] = field(default_factory=list)
    after_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)
    #: before start + after exit: all the worker adds to one job
    total_ms: list[float] = field(default_factory=list)
    failed: int = 0
    wall_s: float = math.nan
    skipped: str = ""


@dataclass
class Idle:
    seconds: float = math.nan
    cpu_s: float = math.nan
    skipped: str = ""

    @property
    def percent(self) -> float:
        return 100 * self.cpu_s / self.seconds if self.seconds > 0 else math.nan


# -- per job, in process ------------------------------------------------------------------------------
async def insert_app(server: Deployment) -> None:
    admin = transport_from_conf(server.admin_conf)
    try:
        await admin.request("GET", "/version", auth=False)
        binary = await admin.upload("/data", TRUE_SCRIPT, params={"name": "true.sh"})
        await admin.request(
            "POST",
            "/apps",
            json={"name": APP_NAME, "binaries": [{"os": "any", "cpu": "any", "data_uid": binary["uid"]}]},
        )
    finally:
        await admin.close()


async def submit(server: Deployment, n: int, label: str) -> None:
    admin = transport_from_conf(server.admin_conf)
    try:
        for part in chunks(n, BULK_MAX_JOBS):
            specs = [{"app": APP_NAME, "args": [str(i)], "label": label} for i in part]
            body = await admin.request("POST", "/jobs/bulk", json={"jobs": specs}, timeout_s=120)
            if len(body.get("jobs", [])) != len(specs):
                raise BenchError(f"POST /jobs/bulk of {len(specs)} jobs answered {len(body.get('jobs', []))}")
    finally:
        await admin.close()


def worker_settings(server: Deployment, tmpdir: Path, name: str, slots: int) -> WorkerSettings:
    props = load_properties(server.worker_conf)
    props.update({"path.tmpdir": str(tmpdir), "worker.name": name, "workpool.size": str(slots)})
    return WorkerSettings.from_properties(props, base=server.worker_conf.parent)


async def run_jobs(
    server: Deployment, run: Run, runner: Runner, args: argparse.Namespace, tmpdir: Path
) -> None:
    """Submit ``--jobs`` jobs, then let a real worker run them all; fill ``run``'s samples."""
    await submit(server, args.jobs, f"bench-{run.label}")
    done = asyncio.Event()
    ended = 0

    def on_task_end(task: TaskRun, outcome: Outcome) -> None:
        nonlocal ended
        ended += 1
        if not outcome.ok or outcome.app_started_at is None or outcome.app_exited_at is None:
            run.failed += 1
        else:
            assert task.reported_at is not None
            run.before_ms.append((outcome.app_started_at - task.assigned_at) * 1000)
            run.after_ms.append((task.reported_at - outcome.app_exited_at) * 1000)
            run.app_ms.append((outcome.app_exited_at - outcome.app_started_at) * 1000)
            run.total_ms.append(run.before_ms[-1] + run.after_ms[-1])
        if ended >= args.jobs:
            done.set()

    settings = worker_settings(server, tmpdir, f"bench-{run.label}", args.slots)
    worker = Worker(settings, runner=runner, on_task_end=on_task_end)
    t0 = time.perf_counter()
    working = asyncio.create_task(worker.run())
    finished = asyncio.create_task(done.wait())
    timeout_s = max(120.0, args.jobs * 1.0)
    await asyncio.wait({working, finished}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    run.wall_s = time.perf_counter() - t0
    worker.stop()
    try:
        await asyncio.wait_for(working, STOP_TIMEOUT_S)
    finally:
        finished.cancel()
    if ended < args.jobs:
        raise BenchError(f"{run.label}: only {ended} of {args.jobs} jobs ended within {timeout_s:.0f} s")


# -- idle, a real process -------------------------------------------------------------------------------
def measure_idle(server: Deployment, workdir: Path, idle_s: float) -> Idle:
    # the public worker config as it is, but for its name, folder and pool: the worker's
    # own timings (long-poll, grace periods), not the harness's short ones
    worker = server.start_worker(
        name="bench-idle",
        tmpdir=workdir / "worker-idle",
        workpool_size=1,
        shutdown_grace_s=None,
        kill_grace_s=None,
        work_request_wait_s=None,
    )
    try:
        time.sleep(1.0)  # past its start-up: the first work request and heartbeat are out
        ps = psutil.Process(worker.pid)
        before, t0 = tree_cpu_s(ps), time.monotonic()
        time.sleep(idle_s)
        after, t1 = tree_cpu_s(ps), time.monotonic()
        if not worker.alive:
            raise BenchError(f"the idle worker exited {worker.proc.returncode} while measured")
        return Idle(seconds=t1 - t0, cpu_s=after - before)
    finally:
        worker.stop(STOP_TIMEOUT_S)


def tree_cpu_s(ps: psutil.Process) -> float:
    """CPU seconds of a process and its live descendants (the worker's helper processes), each
    with its reaped children's: what the worker costs, not only its main process."""
    total = 0.0
    for p in [ps, *ps.children(recursive=True)]:
        try:
            total += sum(p.cpu_times()[:4])  # user, system, children's user and system
        except psutil.NoSuchProcess:
            pass
    return total


# -- the whole benchmark ----------------------------------------------------------------------------------
async def per_job(server: Deployment, args: argparse.Namespace, workdir: Path) -> list[Run]:
    await insert_app(server)
    runs: list[Run] = []
    choice = choose_runner(enable=True)
    sandboxed = Run("sandbox", "bubblewrap")
    if choice.warning:
        sandboxed.skipped = choice.warning.split(":")[0]
    else:
        await run_jobs(server, sandboxed, choice.runner, args, workdir / "worker-sandbox")
    runs.append(sandboxed)
    plain = Run("plain", "no sandbox (resource limits only)")
    await run_jobs(server, plain, LocalRunner(), args, workdir / "worker-plain")
    runs.append(plain)
    return runs


def machine() -> str:
    return f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, {platform.system()}"


def print_figures(args: argparse.Namespace, runs: list[Run], idle: Idle) -> None:
    if args.json:
        out: dict[str, Any] = {"jobs": args.jobs, "slots": args.slots, "machine": machine()}
        for r in runs:
            if r.skipped:
                out[r.label] = {"skipped": r.skipped}
                continue
            out[r.label] = {
                f"{what}_{q}_ms": round(fn(values), 3)
                for what, values in (
                    ("before_start", r.before_ms),
                    ("after_exit", r.after_ms),
                    ("both", r.total_ms),
                    ("app", r.app_ms),
                )
                for q, fn in (
                    ("p50", lambda v: percentile(v, 50)),
                    ("p95", lambda v: percentile(v, 95)),
                    ("max", lambda v: max(v) if v else math.nan),
                )
            } | {"failed": r.failed, "jobs_per_s": round(len(r.before_ms) / r.wall_s, 1)}
        out["idle"] = (
            {"skipped": idle.skipped}
            if idle.skipped
            else {
                "seconds": round(idle.seconds, 1),
                "cpu_s": round(idle.cpu_s, 3),
                "percent": round(idle.percent, 3),
            }
        )
        print(json.dumps(out))
        return

    def stats(values: list[float]) -> str:
        top = max(values) if values else math.nan
        return f"{percentile(values, 50):6.1f} / {percentile(values, 95):6.1f} / {top:7.1f} ms"

    print("XtremWeb-Py worker overhead benchmark")
    print(f"  jobs          {args.jobs} per run, {args.slots} at a time; app: /bin/sh script, exit 0")
    print(
        f"  target        p50 ≤ {TARGET_PER_JOB_MS:.0f} ms per job (both: before start + after exit), sandboxed"
    )
    for r in runs:
        print(f"  {r.label:<12}  {r.runner}")
        if r.skipped:
            print(f"    skipped     {r.skipped}")
            continue
        for name, values in (
            ("before start", r.before_ms),
            ("after exit", r.after_ms),
            ("both", r.total_ms),
        ):
            goal = ""
            if name == "both":
                verdict = "meets" if percentile(values, 50) <= TARGET_PER_JOB_MS else "MISSES"
                goal = f"  ({verdict} ≤ {TARGET_PER_JOB_MS:.0f} ms)"
            print(f"    {name:<12}  p50 / p95 / max {stats(values)}{goal}")
        print(f"    app itself    p50 / p95 / max {stats(r.app_ms)}  (for scale, not overhead)")
        rate = len(r.before_ms) / r.wall_s if r.wall_s > 0 else math.nan
        print(f"    throughput    {rate:.1f} jobs/s, {r.failed} failed")
    if idle.skipped:
        print(f"  idle          skipped: {idle.skipped}")
    else:
        verdict = "meets" if idle.percent < TARGET_IDLE_PERCENT else "MISSES"
        print(
            f"  idle          {idle.percent:.3f}% of one core ({idle.cpu_s:.3f} CPU s in {idle.seconds:.0f} s; "
            f"{verdict} target < {TARGET_IDLE_PERCENT:.0f}%)"
        )
    print(f"  machine       {machine()}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=200, help="jobs per run, sandbox on and off (default 200)")
    p.add_argument("--slots", type=int, default=1, help="workpool.size of the worker (default 1)")
    p.add_argument(
        "--idle-s", type=float, default=30.0, help="seconds the idle worker is measured (default 30; 0 skips)"
    )
    p.add_argument("--db", default=None, help="SQLAlchemy URL for the server (default: embedded SQLite)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.slots < 1 or args.idle_s < 0:
        p.error("--jobs and --slots must be at least 1, --idle-s at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(asctime)s %(name)s %(message)s"
    )
    workdir = Path(tempfile.mkdtemp(prefix="xwbench-worker-"))
    server = deployment(workdir, args.db)
    runs: list[Run] = []
    idle = Idle(skipped="--idle-s 0")

    def body(server: Deployment) -> None:
        nonlocal runs, idle
        runs = asyncio.run(per_job(server, args, workdir))
        if args.idle_s > 0:
            idle = measure_idle(server, workdir, args.idle_s)

    if not with_server("bench/worker_overhead.py", workdir, server, args.keep, body):
        return 1
    print_figures(args, runs, idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
