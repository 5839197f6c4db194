"""Macro benchmark: how long the client takes to submit a macro file of N ``xwsendwork`` lines.

It starts a real server as bench/dispatch.py does (``xwserver init`` + ``xwserver start`` in a
temporary home on a free loopback port, embedded SQLite unless ``--db``, by the tests' harness
tests/helpers/deployment.py), inserts an app with
the client (``xwclient --xwsendapp bench-macro any any noop.sh``), writes a macro file of N
lines ``--xwsendwork bench-macro <i> --xwlabel "run <r>"`` with a comment and a blank line
every 100 lines, and runs ``python -m xwclient --xwmacro FILE`` as a user would, its standard
output to a file. No worker runs: the jobs stay PENDING, so what is measured is the client's
reading of the file and its bulk submission (``POST /jobs/bulk``), and the server's insertion.

Printed: the wall time of each run of the whole client process (Python start-up and login
included, as a user waits for it), their best and median, and for reference the wall time of
``python -m xwclient --xwversion`` against the same server (start-up and one request).
Checks: the client printed N URIs, in the lines' order, and the server holds N jobs with that
run's label.

Then removal, as a user cleans up: ``xwrm --xwlabel "macro run 1"`` (a selection, as
``condor_rm -constraint``: one listing, then bulk removals) and, with two runs or more,
``xwrm URI…`` of the N URIs the second run printed (bulk removals of named jobs). Printed:
the wall time of each (client process included); checked: no job of that label is left.
Figures only: nothing is asserted.

    .venv/bin/python bench/macro.py                  # 10,000 lines, 3 runs
    .venv/bin/python bench/macro.py --jobs 50000 --runs 1 --db postgresql+asyncpg://…
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench/dispatch.py's deployment helpers

from dispatch import BenchError, cpu_model, deployment, describe_db, with_server  # noqa: E402
from helpers.deployment import Deployment  # noqa: E402  (dispatch put tests/ on the path)

APP_NAME = "bench-macro"
NOOP_SCRIPT = "#!/bin/sh\nexit 0\n"


def client(
    server: Deployment, *args: str, stdout: TextIO | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m xwclient ARGS`` as the admin, in the benchmark's folder."""
    proc = server.client(*args, cwd=server.root, check=False, timeout_s=timeout_s, stdout=stdout)
    if proc.returncode != 0:
        raise BenchError(f"xwclient {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def write_macro(path: Path, jobs: int, label: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(jobs):
            if i % 100 == 0:
                fh.write(f"# jobs {i} to {i + 99}\n\n")
            fh.write(f'--xwsendwork {APP_NAME} {i} --xwlabel "{label}"\n')


def count_jobs(server: Deployment, label: str) -> int:
    proc = client(server, "--xwworks", "--xwlabel", label, "--xwformat", "csv")
    return max(0, len(proc.stdout.splitlines()) - 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=10_000, help="xwsendwork lines in the macro (default 10000)")
    p.add_argument("--runs", type=int, default=3, help="macro runs, each with its own label (default 3)")
    p.add_argument("--db", default=None, help="SQLAlchemy URL for the server (default: embedded SQLite)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--keep", action="store_true", help="keep the server home folder (its path is printed)")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.runs < 1:
        p.error("--jobs and --runs must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="xwbench-macro-"))
    server = deployment(workdir, args.db)
    walls: list[float] = []
    checks: list[str] = []
    startup_s = 0.0
    removals: dict[str, float] = {}

    def body(server: Deployment) -> None:
        nonlocal startup_s
        script = workdir / "noop.sh"
        script.write_text(NOOP_SCRIPT)
        client(server, "--xwsendapp", APP_NAME, "any", "any", str(script))
        started = time.perf_counter()
        client(server, "--xwversion")
        startup_s = time.perf_counter() - started
        for run in range(args.runs):
            label = f"macro run {run + 1}"
            macro = workdir / f"run{run + 1}.macro"
            write_macro(macro, args.jobs, label)
            out_path = workdir / f"run{run + 1}.out"
            with open(out_path, "w", encoding="utf-8") as out:
                started = time.perf_counter()
                client(server, "--xwmacro", str(macro), stdout=out)
                walls.append(time.perf_counter() - started)
            uris = out_path.read_text(encoding="utf-8").splitlines()
            on_server = count_jobs(server, label)
            if len(uris) != args.jobs or on_server != args.jobs:
                checks.append(f"run {run + 1}: {len(uris)} URIs printed, {on_server} jobs on the server")
        started = time.perf_counter()
        client(server, "--xwrm", "--xwlabel", "macro run 1")
        removals["xwrm_label_s"] = time.perf_counter() - started
        if (left := count_jobs(server, "macro run 1")) != 0:
            checks.append(f"xwrm --xwlabel left {left} jobs")
        if args.runs >= 2:
            uris = (workdir / "run2.out").read_text(encoding="utf-8").split()
            started = time.perf_counter()
            client(server, "--xwrm", *uris)
            removals["xwrm_uris_s"] = time.perf_counter() - started
            if (left := count_jobs(server, "macro run 2")) != 0:
                checks.append(f"xwrm URI... left {left} jobs")

    if not with_server("bench/macro.py", workdir, server, args.keep, body):
        return 1
    figures = {
        "jobs": args.jobs,
        "runs": args.runs,
        "db": describe_db(args.db),
        "wall_s": [round(w, 3) for w in walls],
        "wall_best_s": round(min(walls), 3),
        "wall_median_s": round(statistics.median(walls), 3),
        "client_startup_s": round(startup_s, 3),
        "jobs_per_s": round(args.jobs / statistics.median(walls)),
        **{key: round(value, 3) for key, value in removals.items()},
        "checks": checks or "ok",
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print("XtremWeb-Py macro benchmark: xwclient --xwmacro FILE of N xwsendwork lines")
    for key, value in figures.items():
        print(f"  {key:<18}  {value}")
    return 0 if not checks else 1


if __name__ == "__main__":
    sys.exit(main())
