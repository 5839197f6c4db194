"""The server dies at an exact moment (a fault-injection point) and comes back on the same home.

``XW_FAULTS`` arms a point when the server starts (xwserver/faults.py): the process
SIGKILLs itself right after a commit and before the answer leaves, the one moment a
random kill rarely hits and a lease bookkeeping error would hurt. The restarted server has
no fault armed.

Leases are long here (60 s) and every bound is far below them, so a job that only comes
back when its lease expires fails the test: what is checked is that the server releases at
once what the worker says it does not hold, and that a report applied just before the
crash is neither lost nor applied twice. Each test runs on every database (the claim and
the release are written per database).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from helpers.deployment import Deployment, MakeDeployment, python_program

#: real processes, many jobs or waits for leases: seconds each
pytestmark = pytest.mark.slow

#: leases far longer than any bound below: a job that waits for its lease fails the test
LONG_LEASE: dict[str, object] = {"lease_s": 60, "heartbeat_interval_s": 1, "reaper_interval_s": 0.5}
#: from the restarted server answering to the job COMPLETED: the worker's back-off after the
#: crash (0.5, 1, 2, 4 s...) plus one short job, a third of the lease
RELEASE_BOUND_S = 20.0
#: how long the fault may take to fire once its work request can happen
FAULT_FIRES_WITHIN_S = 30.0

ECHO = "#!/bin/sh\necho $1\n"

#: a job that is certainly running when the second claim commits
SLEEP_THEN_ECHO = python_program(
    """
import sys
import time

time.sleep(float(sys.argv[1]))
print(sys.argv[2])
"""
)


def _tasks_in_db(dep: Deployment, job_uid: str) -> list[tuple[str, str]]:
    """(task uid, status) of a job, read from the database: works while the server is dead."""
    rows = dep.database().rows(
        "SELECT t.uid, t.status FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.uid = :uid ORDER BY t.id",
        uid=job_uid,
    )
    return [(str(uid), str(status)) for uid, status in rows]


def test_an_assignment_whose_answer_died_with_the_server_is_released_at_once_and_completed(
    deployment: MakeDeployment, database: str | None
) -> None:
    dep = deployment(database, start=False, **LONG_LEASE)
    dep.start_server(env={"XW_FAULTS": "after_claim_commit:1"})
    dep.send_app("echo", ECHO)
    uid = dep.submit("echo", "answered")
    worker = dep.start_worker()

    # the worker's first work request claims the job, commits, and the server dies unanswered
    dep.wait_server_gone(timeout_s=FAULT_FIRES_WITHIN_S)
    [(orphan_uid, status)] = _tasks_in_db(dep, uid)
    assert status == "RUNNING", "the claim committed its task before the server died"

    dep.start_server()
    restarted = time.monotonic()
    job = dep.wait_for_jobs([uid], timeout_s=RELEASE_BOUND_S)[uid]
    took_s = time.monotonic() - restarted
    print(f"job completed {took_s:.1f}s after the restart (lease 60s)")
    assert job["status"] == "COMPLETED", job

    tasks = {t["uid"]: t for t in dep.api.tasks(uid)}
    assert tasks[orphan_uid]["status"] in {"ABORTED", "LOST"}, tasks[orphan_uid]
    assert Counter(t["status"] for t in tasks.values())["COMPLETED"] == 1, tasks
    [done] = [t for t in tasks.values() if t["status"] == "COMPLETED"]
    assert done["host_uid"] == worker.host_uid
    if tasks[orphan_uid]["status"] == "ABORTED":
        assert job["retry"] == 0, "a released assignment spends no retry"

    assert worker.alive, dep.describe()
    assert (dep.results(uid) / "stdout.txt").read_text() == "answered\n"


def test_an_unanswered_assignment_is_released_while_the_worker_runs_its_other_job(
    deployment: MakeDeployment, database: str | None
) -> None:
    """The second claim of a worker that holds a running task dies unanswered: the worker
    names only the task it holds, so the one it never heard of comes back at once while
    the other goes on and completes once."""
    dep = deployment(database, start=False, **LONG_LEASE)
    dep.start_server(env={"XW_FAULTS": "after_claim_commit:2"})
    dep.send_app("sleepy", SLEEP_THEN_ECHO)
    worker = dep.start_worker(workpool_size=2)
    first = dep.submit("sleepy", "4", "first")
    dep.wait_for_status(first, "RUNNING", timeout_s=30)
    second = dep.submit("sleepy", "0", "second")  # its claim is the second: the server dies

    dep.wait_server_gone(timeout_s=FAULT_FIRES_WITHIN_S)
    [(orphan_uid, status)] = _tasks_in_db(dep, second)
    assert status == "RUNNING", "the claim committed its task before the server died"

    dep.start_server()
    restarted = time.monotonic()
    jobs = dep.wait_for_jobs([first, second], timeout_s=RELEASE_BOUND_S)
    print(f"jobs completed {time.monotonic() - restarted:.1f}s after the restart (lease 60s)")
    assert {u: j["status"] for u, j in jobs.items()} == {first: "COMPLETED", second: "COMPLETED"}

    first_tasks = dep.api.tasks(first)
    assert [t["status"] for t in first_tasks] == ["COMPLETED"], "the held task was never released"
    second_tasks = {t["uid"]: t for t in dep.api.tasks(second)}
    assert second_tasks[orphan_uid]["status"] in {"ABORTED", "LOST"}, second_tasks[orphan_uid]
    assert Counter(t["status"] for t in second_tasks.values())["COMPLETED"] == 1, second_tasks

    assert worker.alive, dep.describe()
    dep.client("--xwresults", first, second)
    assert (dep.workdir / f"ResultsOf_{first}" / "stdout.txt").read_text() == "first\n"
    assert (dep.workdir / f"ResultsOf_{second}" / "stdout.txt").read_text() == "second\n"


def test_a_report_applied_before_the_server_died_completes_the_job_exactly_once(
    deployment: MakeDeployment, database: str | None
) -> None:
    dep = deployment(database, start=False, **LONG_LEASE)
    dep.start_server(env={"XW_FAULTS": "after_report_commit:1"})
    dep.send_app("echo", ECHO)
    worker = dep.start_worker()
    uid = dep.submit("echo", "reported")

    # the report rides on the worker's next work request; the server applies and commits
    # it, then dies before answering: the worker cannot know it was applied
    dep.wait_server_gone(timeout_s=FAULT_FIRES_WITHIN_S)
    db = dep.database()
    status, completed_at = db.rows("SELECT status, completed_at FROM jobs WHERE uid = :uid", uid=uid)[0]
    assert status == "COMPLETED", "the report was committed before the server died"
    assert [s for _, s in _tasks_in_db(dep, uid)] == ["COMPLETED"]

    dep.start_server()
    restarted = time.monotonic()
    # the worker goes on: a new job is done, so its report of the old one was settled
    after = dep.submit("echo", "after")
    jobs = dep.wait_for_jobs([uid, after], timeout_s=RELEASE_BOUND_S)
    print(f"the next job completed {time.monotonic() - restarted:.1f}s after the restart")
    assert {u: j["status"] for u, j in jobs.items()} == {uid: "COMPLETED", after: "COMPLETED"}

    # exactly once: one task, never run again, the completion not written a second time
    assert [t["status"] for t in dep.api.tasks(uid)] == ["COMPLETED"]
    assert db.rows("SELECT status, completed_at FROM jobs WHERE uid = :uid", uid=uid) == [
        ("COMPLETED", completed_at)
    ]
    assert [t["status"] for t in dep.api.tasks(after)] == ["COMPLETED"]
    assert worker.alive, dep.describe()
    dep.client("--xwresults", uid, after)
    assert (dep.workdir / f"ResultsOf_{uid}" / "stdout.txt").read_text() == "reported\n"
    assert (dep.workdir / f"ResultsOf_{after}" / "stdout.txt").read_text() == "after\n"
