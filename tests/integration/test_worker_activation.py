"""Real worker processes follow their activation policy: a job stops while the machine may not
compute and goes on after; one suspended too long is completed by another worker; a worker
whose date policy excludes now takes nothing.

Jobs run in the bubblewrap sandbox where it runs (it does in CI), so suspending reaches
through bubblewrap's own pid namespace.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from typing import Any

import psutil
from helpers.deployment import Deployment, MakeDeployment, WorkerProcess, python_program
from helpers.waiting import wait_until

# burns CPU until it has used argv[1] seconds of it, then says how much
BURN = python_program(
    """
import sys, time

while time.process_time() < float(sys.argv[1]):
    pass
print("burned", round(time.process_time(), 2))
"""
)


# runs forever on worker1 (to be suspended there), ends at once anywhere else
FOREVER_ON_FIRST = python_program(
    """
import os

if "/worker1/" in os.environ["XWSCRATCHPATH"]:
    while True:
        pass
print("done")
"""
)


def _xwworker(worker: WorkerProcess, verb: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "xwworker", verb, "--xwconfig", str(worker.conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _job_processes(worker: WorkerProcess) -> list[psutil.Process]:
    """The worker's descendants running the app (through bubblewrap, if it is used)."""
    found = []
    for child in psutil.Process(worker.pid).children(recursive=True):
        try:
            if any("burn" in part for part in child.cmdline()) and "bwrap" not in child.name():
                found.append(child)
        except psutil.Error:
            continue
    return found


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _host(dep: Deployment, host_uid: str) -> dict[str, Any]:
    hosts = {h["uid"]: h for h in dep.api.hosts()}
    return hosts[host_uid]


def test_a_paused_workers_job_stops_using_cpu_and_completes_after_resume(deployment: MakeDeployment) -> None:
    dep = deployment()
    worker = dep.start_worker()
    dep.send_app("burn", BURN)
    uid = dep.submit("burn", "4.0")  # long enough to be caught running by a slow `pause`
    procs = wait_until(
        lambda: (p := _job_processes(worker)) and _cpu_s(p) > 0.3 and p,
        timeout_s=30,
        what="the job to burn some CPU",
        describe=dep.describe,
    )

    assert "paused" in _xwworker(worker, "pause")
    wait_until(
        lambda: all(p.status() == psutil.STATUS_STOPPED for p in procs),
        timeout_s=10,
        what="the job to be stopped",
        describe=dep.describe,
    )
    before = _cpu_s(procs)
    time.sleep(1.5)
    assert _cpu_s(procs) - before < 0.05, "a suspended job's CPU time must stop advancing"
    assert dep.api.job(uid)["status"] == "RUNNING"
    assert worker.state()["activation"]["state"] == "suspended"
    activation = wait_until(
        lambda: (a := _host(dep, worker.host_uid).get("activation")) and a["state"] == "suspended" and a,
        timeout_s=15,
        what="the heartbeat to tell the server",
        describe=dep.describe,
    )
    assert "paused" in str(activation["detail"])

    _xwworker(worker, "resume")
    job = dep.wait_for_jobs([uid], timeout_s=60)[uid]
    assert job["status"] == "COMPLETED", dep.describe()
    (task,) = dep.api.tasks(uid)
    accounting = task["accounting"]
    # the job burned 4 s of CPU in all, before and after its suspension
    assert 3.6 <= accounting["cpu_user_s"] + accounting["cpu_system_s"] <= 4.8, accounting
    assert "suspended" in worker.log_text() and "resumed" in worker.log_text()


def test_a_job_suspended_past_max_suspend_s_is_completed_by_another_worker(
    deployment: MakeDeployment,
) -> None:
    dep = deployment()
    first = dep.start_worker(max_suspend_s=2)
    dep.send_app("burn", FOREVER_ON_FIRST)
    uid = dep.submit("burn")
    wait_until(lambda: _job_processes(first), timeout_s=30, what="the job to start", describe=dep.describe)
    _xwworker(first, "pause")
    wait_until(
        lambda: dep.api.job(uid)["status"] == "PENDING",
        timeout_s=20,
        what="the suspended job to be handed back",
        describe=dep.describe,
    )
    assert "handing it back" in first.log_text()

    second = dep.start_worker()
    job = dep.wait_for_jobs([uid], timeout_s=60)[uid]
    assert job["status"] == "COMPLETED", dep.describe()
    tasks = dep.api.tasks(uid)
    completed = [t for t in tasks if t["status"] == "COMPLETED"]
    assert [t["host_uid"] for t in completed] == [second.host_uid]
    assert any(t["host_uid"] == first.host_uid and t["status"] != "COMPLETED" for t in tasks)


def test_a_worker_whose_date_policy_excludes_now_takes_no_job(deployment: MakeDeployment) -> None:
    dep = deployment()
    # two days from now: a whole day that cannot be today, whatever the hour
    other_day = (dt.datetime.now() + dt.timedelta(days=2)).strftime("%a")
    worker = dep.start_worker(
        **{"activator.class": "xtremweb.worker.DateActivator", "activator.date": f"{other_day} *"}
    )
    dep.send_app("burn", BURN)
    uid = dep.submit("burn", "0.1")
    activation = wait_until(
        lambda: (a := _host(dep, worker.host_uid).get("activation")) and a,
        timeout_s=15,
        what="the worker's activation state on the server",
        describe=dep.describe,
    )
    assert activation["state"] == "suspended"
    time.sleep(3)
    assert dep.api.job(uid)["status"] == "PENDING"
    assert dep.api.tasks(uid) == []
    assert "not computing" in worker.log_text()

    # a worker whose policy allows now takes it at once
    dep.start_worker(**{"activator.class": "date", "activator.date": "* *"})
    assert dep.wait_for_jobs([uid], timeout_s=60)[uid]["status"] == "COMPLETED"


def test_a_cpu_policy_worker_steps_aside_while_the_owner_keeps_the_cpu_busy(
    deployment: MakeDeployment,
) -> None:
    """Going back to work once the owner stops needs the rest of the machine quiet for a
    window, which a shared test machine cannot promise: the unit tests of the cpu policy
    cover that direction with injected loads."""
    dep = deployment()
    # the owner's program: one core of this machine busy, outside the worker, above a
    # threshold of 70% of a core (other load on the machine only adds to it)
    owner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        worker = dep.start_worker(
            **{"activator.class": "cpu", "cpuload": 0.7 * 100 / (psutil.cpu_count() or 1), "cpu.window_s": 1}
        )
        wait_until(
            lambda: worker.state().get("activation", {}).get("state") == "suspended",
            timeout_s=20,
            what="the worker to see the owner's load",
            describe=dep.describe,
        )
        dep.send_app("burn", BURN)
        uid = dep.submit("burn", "0.1")
        time.sleep(2)
        assert dep.api.job(uid)["status"] == "PENDING", dep.describe()
        # a work request sent before the policy said no may have brought the job: then it
        # was handed back at once, never run
        assert all(t["status"] not in ("RUNNING", "COMPLETED") for t in dep.api.tasks(uid)), dep.describe()
        assert "owner load" in worker.state()["activation"]["detail"]
    finally:
        owner.kill()
        owner.wait(timeout=10)
