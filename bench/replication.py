#!/usr/bin/env python3
"""The cost of replication: the full dispatch cycle of bench/dispatch.py three times in one
run, on the same machine: jobs of one copy, jobs with a quorum of 2 out of 3 copies and
adaptive trust off (every job sent 3 times), and the same with adaptive trust on (the
server's default: hosts with a long record of valid results get jobs alone). Prints, for
each, jobs/s, copies per job, and jobs/s as a ratio to the unreplicated run.

The simulated workers return the same (empty) result for every copy, so every quorum is
reached with its first agreeing copies: what is measured is the middleware's cost of
sending, tracking and comparing copies, not the cost of disagreements.

    .venv/bin/python bench/replication.py [--jobs 3000] [--workers 30] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = (
    ("one copy", []),
    ("quorum 2 of 3, trust off", ["--quorum", "2", "--replicas", "3", "--server-conf", "trust_after=0"]),
    ("quorum 2 of 3, adaptive trust", ["--quorum", "2", "--replicas", "3"]),
)


def run(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    cmd = [
        sys.executable,
        str(HERE / "dispatch.py"),
        "--jobs",
        str(args.jobs),
        "--workers",
        str(args.workers),
    ]
    cmd += ["--latency-samples", "0", "--json", *extra]
    if args.db:
        cmd += ["--db", args.db]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"bench/replication.py: {' '.join(cmd[1:])} failed:\n{proc.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--workers", type=int, default=30)
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: embedded SQLite)")
    args = p.parse_args(argv)
    results = [(name, run(args, extra)) for name, extra in RUNS]
    base = float(results[0][1]["jobs_per_s"])  # type: ignore[arg-type]
    print("XtremWeb-Py replication benchmark")
    print(
        f"  {args.jobs} jobs, {args.workers} simulated workers, db {args.db or 'sqlite (embedded default)'}"
    )
    for name, r in results:
        rate = float(r["jobs_per_s"])  # type: ignore[arg-type]
        print(
            f"  {name:<30} {rate:8.1f} jobs/s  {r['copies_per_job']} copies/job  "
            f"{rate / base:.2f}x of one copy  ({r['completed_on_server']} COMPLETED, "
            f"5xx {r['http_5xx_workers']}, lost {r['leases_lost']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
