"""``xwserver bridge slurm`` against a real single-node Slurm that the test starts itself
(helpers.slurm): the bridge keeps pilots (``xwworker console --pilot``) in Slurm allocations
while jobs are pending, 200 jobs complete on them, the pilots exit once idle, Slurm records
their jobs COMPLETED and lists them no more, and the bridge removes each pilot's identity.

Slurm's accounting goes to slurmdbd on a MariaDB database made for the test, so ``sacct``
shows the pilots' jobs COMPLETED (or CANCELLED); ``scontrol show job`` and the job completion
log are checked too. Without MariaDB the tests skip locally and fail in CI, as the database
tests do.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.databases import mariadb_database
from helpers.deployment import Deployment, MakeDeployment, read_properties
from helpers.slurm import SlurmCluster, require_slurm
from helpers.waiting import wait_until
from sqlalchemy.engine import make_url

from xwclient.sdk import XWClient

JOBS = 200
PILOTS = 2
#: a shell script: a Python one costs each job ~20 ms of CPU more to start
SQUARE = "#!/bin/sh\necho $(($1 * $1))\n"


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[SlurmCluster]:
    require_slurm()
    with mariadb_database() as accounting:  # slurmdbd's, for sacct
        cluster = SlurmCluster(tmp_path / "slurm", make_url(accounting))
        try:
            yield cluster.start()
        finally:
            cluster.close()


def _submit(dep: Deployment, count: int) -> list[str]:
    async def go() -> list[str]:
        async with XWClient.from_config(dep.admin_conf) as client:
            jobs = await client.submit_many([{"app": "square", "args": [str(i)]} for i in range(count)])
        return [j["uid"] for j in jobs]

    return asyncio.run(go())


def _users(dep: Deployment) -> list[str]:
    async def go() -> list[str]:
        async with XWClient.from_config(dep.admin_conf) as client:
            return [u["login"] for u in await client.list_users()]

    return asyncio.run(go())


def _accounted(slurm: SlurmCluster, job_id: str) -> dict[str, str]:
    """sacct's record of a job, once slurmctld has sent it to slurmdbd."""
    return wait_until(lambda: slurm.accounted(job_id), timeout_s=20, what=f"sacct's record of job {job_id}")


@pytest.mark.slow
def test_pilots_in_slurm_run_200_jobs_and_leave_when_idle(
    deployment: MakeDeployment, slurm: SlurmCluster
) -> None:
    dep = deployment()
    dep.send_app("square", SQUARE)
    uids = _submit(dep, JOBS)
    bridge_log = dep.root / "bridge.log"
    with open(bridge_log, "wb") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "xwserver", "bridge", "slurm", "--home", str(dep.home)]
            + ["--workers", str(PILOTS), "--max-idle-s", "3", "--watch", "--poll-s", "1", "--time", "10"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**dep._env(), "SLURM_CONF": str(slurm.conf)},
        )
    pilots_dir = dep.home / "var" / "bridge" / "slurm"

    def describe() -> str:
        outs = "\n".join(
            f"--- {p}:\n{p.read_text(errors='replace')[-1500:]}" for p in pilots_dir.glob("*/slurm-*.out")
        )
        return f"--- bridge:\n{bridge_log.read_text(errors='replace')[-3000:]}\n{outs}\n{slurm.describe()}"

    try:
        jobs = dep.wait_for_jobs(uids, timeout_s=90)
        assert {j["status"] for j in jobs.values()} == {"COMPLETED"}, describe()

        pilots = sorted(p for p in pilots_dir.iterdir() if p.name.startswith("xwpilot-"))
        assert len(pilots) >= PILOTS, describe()
        job_ids = {(p / "slurm-job-id").read_text().strip() for p in pilots}

        # idle pilots exit; Slurm lists them no more; the bridge then revokes their identities
        wait_until(
            lambda: all((p / "ended").exists() for p in pilots),
            timeout_s=30,
            what="the bridge to see every pilot gone from Slurm",
            describe=describe,
        )
        assert not job_ids & slurm.queued().keys()
        assert not [u for u in _users(dep) if u.startswith("xwpilot-")]
        assert not [p for p in pilots if (p / "worker.conf").exists()], "a revoked password stayed on disk"

        completions = slurm.completions()
        for job_id in job_ids:
            record = _accounted(slurm, job_id)
            assert record == {"State": "COMPLETED", "ExitCode": "0:0"}, record
            assert slurm.job(job_id).get("JobState") == "COMPLETED", slurm.job(job_id)
            assert completions[job_id]["JobState"] == "COMPLETED", completions[job_id]
            assert completions[job_id]["ExitCode"] == "0:0", completions[job_id]
        logs = [out.read_text(errors="replace") for p in pilots for out in p.glob("slurm-*.out")]
        assert len(logs) == len(pilots) and all("pilot: idle for" in text for text in logs), describe()
        # all the work ran in the allocations, each pilot under its own identity
        ran = [re.findall(r"worker stopped: (\d+) completed", text) for text in logs]
        assert sum(int(n) for found in ran for n in found) == JOBS, describe()
        for pilot, text in zip(pilots, logs, strict=True):
            assert f"login {pilot.name}, 1 slot(s)" in text, text[:500]  # the allocation's one CPU

        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0, describe()
        assert "bridge: stopped" in bridge_log.read_text(errors="replace")
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait(timeout=10)


@pytest.mark.slow
def test_a_bridge_run_without_watch_submits_pilots_and_the_next_run_reaps_them(
    deployment: MakeDeployment, slurm: SlurmCluster
) -> None:
    dep = deployment()
    dep.send_app("square", SQUARE)
    uids = _submit(dep, 5)
    env = {"SLURM_CONF": str(slurm.conf)}
    args = ["bridge", "slurm", "--home", str(dep.home), "--workers", "1", "--max-idle-s", "2"]
    first = dep.xwserver(*args, env=env).stdout
    assert re.fullmatch(r"xwpilot-[0-9a-f]{10}  Slurm job \d+  \(.*\)\n", first), first
    name, job_id = first.split()[0], first.split()[3]
    folder = dep.home / "var" / "bridge" / "slurm" / name
    conf = folder / "worker.conf"
    assert conf.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    values = read_properties(conf)
    public = read_properties(dep.worker_conf)
    assert values["login"] == name and values["password"] != public["password"]
    assert (
        values["ca.file"] == public["ca.file"]
        and values["dispatcher.servers"] == public["dispatcher.servers"]
    )
    assert "--partition" not in (folder / "pilot.sbatch").read_text()

    dep.wait_for_jobs(uids, timeout_s=60)
    wait_until(
        lambda: job_id not in slurm.queued(), timeout_s=30, what="the pilot to leave", describe=slurm.describe
    )
    assert name in _users(dep)  # nothing watched it: its identity stays until the next run

    second = dep.xwserver(*args, env=env).stdout
    assert name not in _users(dep) and (folder / "ended").exists() and not conf.exists()
    new_job = second.split()[3]
    assert new_job != job_id
    wait_until(lambda: new_job not in slurm.queued(), timeout_s=30, what="the idle pilot to leave")
    assert slurm.completions()[new_job]["JobState"] == "COMPLETED"


@pytest.mark.slow
def test_a_stopped_bridge_cancels_the_pilots_slurm_has_not_started(
    deployment: MakeDeployment, slurm: SlurmCluster
) -> None:
    dep = deployment()
    dep.send_app("square", SQUARE)
    _submit(dep, 5)
    bridge_log = dep.root / "bridge.log"
    # each pilot asks for every CPU of the node: one runs, the others wait in Slurm's queue
    argv = ["bridge", "slurm", "--home", str(dep.home), "--workers", "3"]
    argv += ["--cpus-per-task", str(slurm.cpus), "--max-idle-s", "60", "--watch", "--poll-s", "1"]
    with open(bridge_log, "wb") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "xwserver", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**dep._env(), "SLURM_CONF": str(slurm.conf)},
        )
    try:

        def one_running_two_waiting() -> dict[str, str] | None:
            queued = slurm.queued()
            return queued if sorted(queued.values()) == ["PENDING", "PENDING", "RUNNING"] else None

        states = wait_until(
            one_running_two_waiting,
            timeout_s=30,
            what="one pilot running and two waiting",
            describe=lambda: bridge_log.read_text(errors="replace") + slurm.describe(),
        )
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0, bridge_log.read_text(errors="replace")
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait(timeout=10)
    text = bridge_log.read_text(errors="replace")
    assert "bridge: cancelled 2 pilot(s) Slurm had not started" in text, text
    waiting = {i for i, state in states.items() if state == "PENDING"}
    running = set(states) - waiting
    assert slurm.queued().keys() == running
    for job_id in waiting:
        assert slurm.job(job_id).get("JobState") == "CANCELLED", slurm.job(job_id)
        record = _accounted(slurm, job_id)
        assert record["State"].startswith("CANCELLED"), record
    folders = {
        (p / "slurm-job-id").read_text().strip(): p for p in (dep.home / "var" / "bridge" / "slurm").iterdir()
    }
    pilots = [u for u in _users(dep) if u.startswith("xwpilot-")]
    # the cancelled pilots' identities are gone; the running one keeps its own until it ends
    assert pilots == [folders[j].name for j in running], (pilots, folders)
    assert all((folders[j] / "ended").exists() for j in waiting)


def test_bridge_refuses_bad_options_before_submitting(deployment: MakeDeployment) -> None:
    dep = deployment(start=False)
    for extra, said in (
        (["--workers", "0"], "--workers and --cpus-per-task must be 1 or more"),
        (["--workers", "1", "--cpus-per-task", "0"], "must be 1 or more"),
        (["--workers", "1", "--time", "soon"], "is not a Slurm time limit"),
        (["--workers", "1", "--max-idle-s", "-1"], "greater than 0"),
    ):
        done = dep.xwserver("bridge", "slurm", "--home", str(dep.home), *extra, check=False)
        assert done.returncode == 2, done
        assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (dep.home / "var" / "bridge").exists()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10", 600), ("1:30", 90), ("2:00:00", 7200), ("1-0", 86400), ("1-2:03", 93780), ("0-0:0:5", 5)],
)
def test_slurm_time_limits_are_read_as_sbatch_reads_them(text: str, seconds: float) -> None:
    from xwserver.bridge import slurm_time_s

    assert slurm_time_s(text) == seconds
