"""One state folder, one worker: a second worker process started on it is refused.

The folder holds the host identity (``xwworker.host``), the state file and the scratch
folders of running jobs. Two processes on it would be one host twice: each would tell the
server that the other's tasks are not held (so the server would release them), and the
second would wipe the first's running jobs' folders as it prepares its own.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers.deployment import FAST_LEASES, MakeDeployment, python_program
from helpers.waiting import wait_until

#: real processes, many jobs or waits for leases: seconds each
pytestmark = pytest.mark.slow

#: how long the refused worker may take to start and give up
REFUSED_WITHIN_S = 30.0

#: the first worker's job: it must outlive the second worker (asserted), which is refused at once
JOB_S = 3

SLEEPER = python_program(
    """
import sys
import time

time.sleep(float(sys.argv[1]))
print("slept", sys.argv[1])
"""
)


@pytest.mark.parametrize("twin_config", ["same config", "own config and pid file"])
def test_a_second_worker_on_the_same_state_folder_is_refused_and_the_first_keeps_working(
    deployment: MakeDeployment, twin_config: str
) -> None:
    dep = deployment(**FAST_LEASES)
    dep.send_app("sleeper", SLEEPER)
    first = dep.start_worker()
    host_file = first.tmpdir / "xwworker.host"
    assert host_file.read_text(encoding="ascii").strip() == first.host_uid

    # the first worker is in the middle of a job when the second one starts
    running = dep.submit("sleeper", str(JOB_S))
    dep.wait_for_status(running, "RUNNING", timeout_s=30)
    [task] = dep.api.tasks(running)
    wait_until(
        lambda: first.state().get("tasks", {}).get(task["uid"]) == "running",
        timeout_s=15,
        what="the first worker to run the job",
        describe=dep.describe,
    )

    if twin_config == "same config":
        twin = dep.start_worker_with(
            first.conf, name="worker1-twin", tmpdir=first.tmpdir, wait_registered=False
        )
    else:
        # a copied config whose pid file differs: only the state folder itself can refuse it
        twin = dep.start_worker(
            tmpdir=first.tmpdir, wait_registered=False, **{"pid.file": dep.root / "twin.pid"}
        )
    try:
        code = twin.proc.wait(timeout=REFUSED_WITHIN_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"a second worker on {first.tmpdir} was still running after {REFUSED_WITHIN_S:.0f}s\n"
            + dep.describe()
        ) from None
    said = twin.log_text()
    # the job ran all the time the second worker lived: it could have wiped its folder
    assert first.state().get("tasks", {}).get(task["uid"]) == "running", (
        f"the job ended before the second worker was refused: raise JOB_S\n{dep.describe()}"
    )
    assert code != 0, f"the second worker exited {code}:\n{said}"
    assert str(first.tmpdir) in said or "path.tmpdir" in said, f"the refusal names no folder:\n{said}"
    assert "Traceback" not in said, said

    # the first worker is untouched: same process, same state, same identity, one host
    assert first.alive, dep.describe()
    assert first.state().get("pid") == first.pid, "the refused worker wrote the first one's state"
    assert host_file.read_text(encoding="ascii").strip() == first.host_uid
    assert [h["uid"] for h in dep.api.hosts()] == [first.host_uid]

    # its running job was not disturbed, and it takes new work
    later = dep.submit("sleeper", "0")
    jobs = dep.wait_for_jobs([running, later], timeout_s=30)
    assert {u: j["status"] for u, j in jobs.items()} == {running: "COMPLETED", later: "COMPLETED"}
    for uid in (running, later):
        [done] = dep.api.tasks(uid)
        assert done["status"] == "COMPLETED" and done["host_uid"] == first.host_uid, done
    dep.client("--xwresults", running, later)
    assert (dep.workdir / f"ResultsOf_{running}" / "stdout.txt").read_text() == f"slept {JOB_S}\n"
    assert (dep.workdir / f"ResultsOf_{later}" / "stdout.txt").read_text() == "slept 0\n"
