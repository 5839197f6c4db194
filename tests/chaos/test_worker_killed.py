"""A volunteer vanishes mid-job (SIGKILL): its lease expires and another worker does the job, once."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers.deployment import FAST_LEASES, MakeDeployment, python_program
from helpers.waiting import wait_until

#: real processes, many jobs or waits for leases: seconds each
pytestmark = pytest.mark.slow

#: long enough to be killed in the middle of, short enough for a fast test
SLEEPER = python_program(
    """
import sys
import time

time.sleep(float(sys.argv[1]))
print("slept", sys.argv[1])
"""
)


def test_a_job_whose_worker_is_killed_is_rescheduled_and_completed_once_by_another_worker(
    deployment: MakeDeployment,
) -> None:
    dep = deployment(**FAST_LEASES)  # lease 3 s, heartbeats every 0.5 s, reaper every 0.5 s
    dep.send_app("sleeper", SLEEPER)
    doomed = dep.start_worker()
    uid = dep.submit("sleeper", "4")

    dep.wait_for_status(uid, "RUNNING", timeout_s=30)
    [first] = dep.api.tasks(uid)
    assert first["host_uid"] == doomed.host_uid and first["status"] == "RUNNING", first
    # let the job's process start, so the worker dies with work in hand
    wait_until(
        lambda: doomed.state().get("tasks", {}).get(first["uid"]) == "running",
        timeout_s=15,
        what="the first worker to run the job",
        describe=dep.describe,
    )

    rescuer = dep.start_worker()  # only now: the job is already the first worker's
    doomed.kill()

    job = dep.wait_for_jobs([uid], timeout_s=45)[uid]
    assert job["status"] == "COMPLETED", job
    assert job["retry"] == 1, job

    tasks = dep.api.tasks(uid)
    assert Counter(t["status"] for t in tasks) == {"COMPLETED": 1, "LOST": 1}, tasks
    by_status = {t["status"]: t for t in tasks}
    assert by_status["LOST"]["uid"] == first["uid"]
    assert by_status["LOST"]["host_uid"] == doomed.host_uid
    assert by_status["COMPLETED"]["host_uid"] == rescuer.host_uid
    assert (dep.results(uid) / "stdout.txt").read_text() == "slept 4\n"
    assert rescuer.alive, "the rescuing worker must carry on"
