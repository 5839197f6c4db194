"""``make demo``: a whole desktop grid on this machine computes pi by Monte Carlo.

In a temporary folder it creates and starts a server (embedded SQLite, a free loopback
port), starts two volunteer workers, inserts the bundled ``pi.py`` as the app ``pi`` for
every platform, submits 50 jobs (one seed each), shows their progress, fetches every
result, combines them into one estimate of pi, and stops everything it started. The
deployment is started and stopped as the tests start theirs, by ``Deployment`` of
tests/helpers/deployment.py (``xwserver init`` and ``start``, ``xwworker console``
processes, the client CLI; every process ended by the pid it recorded).

Exit status 0 when the estimate was computed from all 50 results and every process
is gone; non-zero with a message saying what failed otherwise.

The temporary folder is removed after a run that went well, unless ``--keep`` is given
(``python demo/run_demo.py --keep``): then it stays, and the demo says where the results
are. After a failure it always stays, for its logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PI_APP = HERE / "pi.py"

try:
    from xwclient.sdk import XWClient
    from xwcommon.errors import XWError
except ImportError:  # run from a checkout where the package is not installed
    sys.path.insert(0, str(ROOT))
    from xwclient.sdk import XWClient
    from xwcommon.errors import XWError

# the deployment is started as the tests start theirs: tests/helpers/deployment.py
sys.path.insert(0, str(ROOT / "tests"))
from helpers.deployment import Deployment, tail  # noqa: E402

APP_NAME = "pi"
JOBS = 50
SAMPLES_PER_JOB = 400_000  # about 0.2 s of CPU for pi.py
WORKERS = 2
WORKPOOL_SIZE = 2  # jobs at once per worker
JOBS_TIMEOUT_S = 45.0  # the whole demo should stay within about a minute
COMMAND_TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.2
PROGRESS_LINE_EVERY_S = 2.0  # when stdout is not a terminal


class DemoError(Exception):
    """Raised when a step of the demo fails; the message says which and why."""


def checkout_env() -> dict[str, str]:
    """Our child programs import this checkout first, installed or not."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}


def client(d: Deployment, *args: str, what: str) -> str:
    """Run the client CLI (``python -m xwclient ARGS``) as the admin; return its stdout, or
    raise DemoError with its stderr."""
    try:
        proc = d.client(*args, cwd=d.root, check=False, timeout_s=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise DemoError(
            f"{what}: `xwclient {' '.join(args)}` did not finish within {COMMAND_TIMEOUT_S:.0f} s"
        ) from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()[-10:]
        raise DemoError(
            f"{what}: `xwclient {' '.join(args)}` exited with {proc.returncode}:\n  " + "\n  ".join(detail)
        )
    return proc.stdout


def start_workers(d: Deployment) -> None:
    """Each worker: a copy of the deployment's worker config with its own name, scratch
    folder and pool (tests/helpers/deployment.py's ``start_worker``)."""
    for i in range(1, WORKERS + 1):
        d.start_worker(
            name=f"demo-worker-{i}",
            workpool_size=WORKPOOL_SIZE,
            wait_registered=False,
            shutdown_grace_s=5,
            kill_grace_s=None,  # the worker's own
            # a stopping worker lets its pending long-poll return first: keep that short
            work_request_wait_s=2,
        )


def check_workers(d: Deployment) -> None:
    for w in d.workers:
        if not w.alive:
            raise DemoError(
                f"worker {w.name} exited with {w.proc.returncode}\n--- {w.log_path}\n{tail(w.log_path, 15)}"
            )


# -- the client side ----------------------------------------------------------------------------


class Progress:
    """``completed 23/50`` on one updating line on a terminal; a line now and then otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stdout) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self._last_text = ""
        self._last_line_at = 0.0

    def show(self, done: int, running: int, errors: int) -> None:
        text = f"      completed {done}/{self.total}  (running {running}" + (
            f", {errors} failed)" if errors else ")"
        )
        if self.tty:
            if text == self._last_text:
                return
            self.stream.write("\r" + text.ljust(len(self._last_text)))
            self.stream.flush()
        elif text != self._last_text and (
            done == self.total or time.monotonic() - self._last_line_at >= PROGRESS_LINE_EVERY_S
        ):
            print(text, file=self.stream, flush=True)
            self._last_line_at = time.monotonic()
        else:
            return
        self._last_text = text

    def end(self) -> None:
        if self.tty and self._last_text:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Outcome:
    estimate: float
    samples: int
    jobs: int
    wall_s: float
    per_worker: dict[str, int]


async def compute_pi(d: Deployment, workdir: Path, *, keep: bool = False) -> Outcome:
    """Submit the jobs, follow them, fetch and combine the results."""
    label = f"pi-demo-{os.getpid()}"
    seeds = list(range(1, JOBS + 1))
    async with XWClient.from_config(d.admin_conf) as xw:
        specs = [
            {"app": APP_NAME, "args": [str(SAMPLES_PER_JOB), str(seed)], "label": label} for seed in seeds
        ]
        t0 = time.monotonic()
        jobs = await xw.submit_many(specs)
        seed_of = {job["uid"]: seed for job, seed in zip(jobs, seeds, strict=True)}
        step(
            4,
            f"{len(jobs)} jobs submitted in one bulk request: pi.py {SAMPLES_PER_JOB} SEED, seeds 1..{JOBS}",
        )

        step(5, "waiting for the workers")
        progress = Progress(JOBS)
        try:
            final = await follow(xw, label, d, progress, t0)
        finally:
            progress.end()
        wall_s = time.monotonic() - t0
        failed = [j for j in final if j["status"] != "COMPLETED"]
        if failed:
            first = failed[0]
            raise DemoError(
                f"{len(failed)} job(s) did not complete; job {first['uid']} ended {first['status']} "
                f"(exit code {first.get('exit_code')}): {first.get('message') or 'no message'}"
            )
        per_worker = await jobs_per_worker(xw, seed_of)

        results_dir = workdir / "results"
        gate = asyncio.Semaphore(8)

        async def fetch(uid: str) -> dict[str, int]:
            async with gate:
                folder = await xw.fetch_result(uid, results_dir)
            return parse_pi_output(uid, folder / "stdout.txt", seed_of[uid])

        counts = await asyncio.gather(*(fetch(uid) for uid in seed_of))
        # the folder is named only if it outlives the demo (--keep)
        step(6, f"{len(counts)} results fetched" + (f" into {results_dir}" if keep else ""))
    inside = sum(c["inside"] for c in counts)
    samples = sum(c["samples"] for c in counts)
    return Outcome(4.0 * inside / samples, samples, len(counts), wall_s, per_worker)


async def follow(xw: XWClient, label: str, d: Deployment, progress: Progress, t0: float) -> list[dict]:
    """Poll the jobs of ``label`` until all are final; return them."""
    while True:
        jobs = await xw.list_jobs(label=label)
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
        final = sum(by_status.get(s, 0) for s in ("COMPLETED", "ERROR", "ABORTED"))
        progress.show(
            by_status.get("COMPLETED", 0), by_status.get("RUNNING", 0), final - by_status.get("COMPLETED", 0)
        )
        if len(jobs) >= JOBS and final == len(jobs):
            return jobs
        check_workers(d)
        if time.monotonic() - t0 > JOBS_TIMEOUT_S:
            raise DemoError(
                f"only {final} of {JOBS} jobs finished within {JOBS_TIMEOUT_S:.0f} s "
                f"({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))})"
            )
        await asyncio.sleep(PROGRESS_INTERVAL_S)


async def jobs_per_worker(xw: XWClient, seed_of: dict[str, int]) -> dict[str, int]:
    """How many of our jobs each host completed (from the tasks, one per attempt)."""
    names = {h["uid"]: h["name"] for h in await xw.list_hosts()}
    counts: dict[str, int] = {}
    for task in await xw.list_tasks(status="COMPLETED"):
        if task["job_uid"] in seed_of:
            name = names.get(task["host_uid"], task["host_uid"])
            counts[name] = counts.get(name, 0) + 1
    return counts


def parse_pi_output(uid: str, stdout: Path, seed: int) -> dict[str, int]:
    """Read one job's ``{"samples", "inside", "seed"}`` line and check it is the job's own."""
    try:
        lines = stdout.read_text().strip().splitlines()
        record = json.loads(lines[-1])
        samples, inside, got_seed = int(record["samples"]), int(record["inside"]), int(record["seed"])
    except (OSError, IndexError, ValueError, KeyError, TypeError) as exc:
        raise DemoError(f"job {uid}: cannot read a pi.py result from {stdout}: {exc}") from None
    if got_seed != seed or samples != SAMPLES_PER_JOB or not 0 <= inside <= samples:
        raise DemoError(f"job {uid}: result {record} does not match its arguments ({SAMPLES_PER_JOB} {seed})")
    return {"samples": samples, "inside": inside}


# -- the driver -----------------------------------------------------------------------------------


def step(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Estimate pi by Monte Carlo on a desktop grid of this machine."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's folder (server home, workers, fetched results) and say where it is",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    keep = parse_args(argv).keep
    workdir = Path(tempfile.mkdtemp(prefix="xwdemo-"))
    d = Deployment(workdir, home=workdir / "server", env=checkout_env())
    ok = False
    failure = ""
    print(f"XtremWeb-Py demo: estimating pi by Monte Carlo on a desktop grid of {WORKERS} workers")
    try:
        d.init()
        d.start_server()
        step(1, f"server started at {d.url} (embedded SQLite, home {d.home})")
        start_workers(d)
        step(2, "workers started: " + ", ".join(f"{w.name} (pid {w.pid})" for w in d.workers))
        out = client(d, "--xwsendapp", APP_NAME, "any", "any", str(PI_APP), what="inserting the app")
        shown = out.strip().splitlines()[-1] if out.strip() else "ok"
        step(3, f"app {APP_NAME!r} inserted for any OS and CPU (xwsendapp): {shown}")
        outcome = asyncio.run(compute_pi(d, workdir, keep=keep))
        report(outcome)
        ok = True
    except DemoError as exc:
        failure = str(exc)
    except XWError as exc:
        failure = f"the server answered {exc.code}: {exc.message}"
    except (AssertionError, subprocess.TimeoutExpired) as exc:  # the deployment could not start
        failure = str(exc)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        # a second Ctrl-C must not cut the cleanup short and leave processes running;
        # every step of it has its own time limit
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if failure:
            print(f"\ndemo failed: {failure}", file=sys.stderr)
            if failure != "interrupted":
                print(d.describe(), file=sys.stderr)  # the server's and the workers' log tails
        print("stopping the workers and the server…", flush=True)
        problems = shutdown(d)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for p in problems:
        print(f"cleanup: {p}", file=sys.stderr)
    if ok and not problems:
        if keep:
            print(f"the demo's files are kept in {workdir} (results in {workdir / 'results'})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"the demo's files are kept in {workdir}", file=sys.stderr)
    return 1


def shutdown(d: Deployment) -> list[str]:
    """Stop the workers, then the server (Deployment.close: by the pids it recorded); check
    that no process of ours is left."""
    problems: list[str] = []
    try:
        d.close()
    except Exception as exc:  # said, and the processes are checked below
        problems.append(f"stopping: {exc}")
    pids = len(d.workers) + len(d.server_pids)
    left = d.processes_left()
    if left:
        problems.append(f"processes still running: {', '.join(map(str, left))}")
    elif pids:
        print(f"stopped {len(d.workers)} workers and the server; no process left ({pids} pids checked)")
    return problems


def report(o: Outcome) -> None:
    error = o.estimate - math.pi
    print()
    print(f"  pi ~= {o.estimate:.6f}   (math.pi = {math.pi:.6f}, error {error:+.2e})")
    print(f"  samples: {o.samples:,} in {o.jobs} jobs")
    print(f"  {o.jobs / o.wall_s:.1f} jobs/s ({o.jobs} jobs in {o.wall_s:.1f} s, submit to last completion)")
    if o.per_worker:
        print("  jobs per worker: " + ", ".join(f"{name} {n}" for name, n in sorted(o.per_worker.items())))
    print()


if __name__ == "__main__":
    sys.exit(main())
