"""The server dies mid-run (SIGKILL) and comes back on the same home and port.

Workers keep their finished results while it is away and deliver them when it is back;
no job is lost, none is completed twice, and nobody restarts a worker.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from helpers.deployment import MakeDeployment, python_program
from helpers.waiting import wait_until

#: real processes, many jobs or waits for leases: seconds each
pytestmark = pytest.mark.slow

N_JOBS = 12
#: how long the jobs running at the kill may take to end and wait in the workers' outboxes
HELD_WITHIN_S = 30.0

SQUARE_SLOWLY = python_program(
    """
import sys
import time

time.sleep(1)
print(int(sys.argv[1]) ** 2)
"""
)


def test_a_killed_and_restarted_server_loses_no_job_and_completes_none_twice(
    deployment: MakeDeployment,
) -> None:
    dep = deployment(lease_s=5, heartbeat_interval_s=0.5, reaper_interval_s=0.5)
    dep.send_app("square", SQUARE_SLOWLY)
    macro = dep.workdir / "jobs.macro"
    macro.write_text("".join(f"--xwsendwork square {n}\n" for n in range(N_JOBS)), encoding="utf-8")
    out = dep.client("--xwmacro", str(macro)).stdout
    uids = [line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("xw://")]
    assert len(uids) == N_JOBS, out
    inputs = dict(zip(uids, range(N_JOBS), strict=True))
    workers = [dep.start_worker(workpool_size=2), dep.start_worker(workpool_size=2)]
    worker_pids = [w.pid for w in workers]

    def mid_run() -> bool:
        statuses = Counter(j["status"] for j in dep.api.jobs())
        return statuses["COMPLETED"] >= 4 and statuses["RUNNING"] >= 1

    wait_until(mid_run, timeout_s=60, interval_s=0.1, what="the run to be under way", describe=dep.describe)
    old_pid = dep.kill_server()

    def results_held() -> bool:
        """Every job the workers had when the server died ended, its result kept to deliver."""
        phases = [p for w in workers for p in w.state().get("tasks", {}).values()]
        return bool(phases) and all(p == "reporting" for p in phases)

    # the server stays dead until the workers hold finished results it has not heard of
    wait_until(
        results_held,
        timeout_s=HELD_WITHIN_S,
        interval_s=0.05,
        what="finished results held",
        describe=dep.describe,
    )
    restarted_at = time.time()
    assert dep.start_server() != old_pid

    jobs = dep.wait_for_jobs(inputs, timeout_s=90)
    assert Counter(j["status"] for j in jobs.values()) == {"COMPLETED": N_JOBS}, jobs

    tasks = dep.api.tasks()
    completed = Counter(t["job_uid"] for t in tasks if t["status"] == "COMPLETED")
    assert completed == dict.fromkeys(inputs, 1), "every job has exactly one COMPLETED task"
    assert {t["host_uid"] for t in tasks} <= {w.host_uid for w in workers}

    # the same worker processes carried on: none died, none was restarted
    assert [w.pid for w in workers] == worker_pids
    assert all(w.alive for w in workers), dep.describe()
    finished_after = [j for j in jobs.values() if _epoch(j["completed_at"]) >= restarted_at]
    assert finished_after, "no job was completed after the restart"

    dep.client("--xwresults", *inputs)
    for uid, n in inputs.items():
        assert (dep.workdir / f"ResultsOf_{uid}" / "stdout.txt").read_text() == f"{n * n}\n"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
