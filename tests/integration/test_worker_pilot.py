"""A pilot worker (``xwworker console --pilot``), as a batch job's payload runs it: it exits
with 0 by itself once idle, and at its lifetime it hands its unfinished job back to the
server (PENDING again, no retry spent) and exits with 0, so the allocation ends cleanly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.deployment import Deployment, MakeDeployment, python_program, write_config
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow

SLEEPER = python_program("import time\ntime.sleep(120)\n")


def _pilot(dep: Deployment, name: str, *options: str) -> tuple[subprocess.Popen[bytes], Path]:
    tmpdir = dep.root / name
    conf = write_config(
        dep.root / f"{name}.conf",
        dep.worker_conf,
        {"path.tmpdir": tmpdir, "worker.name": name, "work_request_wait_s": 1, "kill_grace_s": 1},
    )
    log = dep.root / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xwworker", "console", "--xwconfig", str(conf), "--pilot", *options],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dep._env(),
        )
    return proc, log


def _ended(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise


def test_a_pilot_exits_when_idle_and_hands_its_job_back_at_its_lifetime(deployment: MakeDeployment) -> None:
    dep = deployment()
    idle, idle_log = _pilot(dep, "idle-pilot", "--max-idle-s", "1")
    started = time.monotonic()
    assert _ended(idle, 60) == 0, idle_log.read_text(errors="replace")
    assert time.monotonic() - started < 45
    assert "pilot: idle for" in idle_log.read_text(errors="replace")

    dep.send_app("sleeper", SLEEPER)
    uid = dep.submit("sleeper")
    pilot, log = _pilot(dep, "short-pilot", "--max-idle-s", "60", "--max-lifetime-s", "4")
    try:
        dep.wait_for_status(uid, "RUNNING", timeout_s=30)
        assert _ended(pilot, 60) == 0, log.read_text(errors="replace")
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "pilot: lifetime of 4 s reached; handing back 1 unfinished task(s)" in text, text

    def queued() -> dict[str, object] | None:
        job = dep.api.job(uid)
        return job if job["status"] == "PENDING" else None

    job = wait_until(queued, timeout_s=20, what="the job back in the queue")
    assert job["retry"] == 0, job  # handed back, not lost: no retry spent


def test_pilot_options_go_with_console_and_pilot() -> None:
    for argv in (
        ["start", "--pilot"],
        ["console", "--max-idle-s", "5"],
        ["console", "--pilot", "--max-idle-s", "0"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "xwworker", *argv], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2 and "--pilot" in done.stderr or "greater than 0" in done.stderr, (
            done.stderr
        )
