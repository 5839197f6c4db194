"""A worker killed outright (SIGKILL) leaves no job running, with or without the sandbox.

The worker here is a real process that starts a job as the worker does (state folder lock,
undertaker, executor) and is then SIGKILLed. The job is a shell script that runs one
program in the foreground and one in the background, as a wrapper script does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from xwcommon.errors import ConfigError
from xwworker.sandbox import probe_bwrap
from xwworker.statedir import StateLock, Undertaker, kill_leftover_jobs, leftover_jobs

WORKER = """import asyncio, sys
from pathlib import Path
from xwcommon.protocol.work import Assignment, DataRef
from xwworker.executor import Executor
from xwworker.sandbox import BubblewrapRunner, LocalRunner
from xwworker.statedir import StateLock, Undertaker

async def main() -> None:
    work, binary, bwrap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    runner = BubblewrapRunner(bwrap) if bwrap else LocalRunner()
    StateLock(work).acquire()
    if not runner.dies_with_parent:
        undertaker = Undertaker(work, work / "tasks")
        undertaker.start()
    a = Assignment(
        task_uid="0ad1e5f0-0000-4000-8000-000000000001", job_uid="0ad1e5f0-0000-4000-8000-000000000002",
        seq=1, app_name="job", args=[], lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid="0ad1e5f0-0000-4000-8000-000000000003", sha256="0" * 64),
    )
    await Executor(work, runner).run(a, binary)

asyncio.run(main())
"""

JOB = "#!/bin/sh\nsleep 600 &\nsleep 600\n"


def _wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _bwrap() -> str:
    path, why = probe_bwrap()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox must run in CI: {why}")
        pytest.skip(f"bubblewrap cannot run here: {why}")
    return path


@pytest.mark.parametrize("runner", ["local", "bubblewrap"])
def test_the_jobs_of_a_sigkilled_worker_do_not_outlive_it(tmp_path: Path, runner: str) -> None:
    bwrap = _bwrap() if runner == "bubblewrap" else ""
    work = tmp_path / "work"
    binary = tmp_path / "job.sh"
    binary.write_text(JOB)
    tasks = work / "tasks"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(work), str(binary), bwrap])
    jobs: list[int] = []
    try:
        # the job's shell and both its sleeps run
        _wait(lambda: len(leftover_jobs(tasks)) >= 3)
        jobs = leftover_jobs(tasks)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        _wait(lambda: not any(_alive(p) for p in jobs), timeout_s=10)
        assert leftover_jobs(tasks) == []
        # the folder is free for the next worker at once
        with StateLock(work):
            pass
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pid in jobs:  # whatever a failure left
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_next_worker_kills_what_jobs_of_its_folder_left(tmp_path: Path) -> None:
    tasks = tmp_path / "work" / "tasks"
    scratch = tasks / "some-task"
    scratch.mkdir(parents=True)
    other_scratch = tmp_path / "elsewhere" / "tasks" / "some-task"
    other_scratch.mkdir(parents=True)

    def job(scratch: Path) -> subprocess.Popen[bytes]:
        env = {"PATH": "/usr/bin:/bin", "XWSCRATCHPATH": str(scratch)}
        return subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)

    ours, theirs = job(scratch), job(other_scratch)
    try:
        _wait(lambda: ours.pid in leftover_jobs(tasks))
        assert kill_leftover_jobs(tasks) == 1
        assert ours.wait(10) == -signal.SIGKILL
        assert theirs.poll() is None  # another folder's job is left alone
    finally:
        for p in (ours, theirs):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_a_worker_that_stops_normally_sends_its_undertaker_away_without_a_kill(tmp_path: Path) -> None:
    """A normal stop tells the undertaker so (the worker ends its jobs itself): it exits at
    once, kills nothing and does not wait for the folder's lock, which the worker still holds."""
    work = tmp_path / "work"
    scratch = work / "tasks" / "some-task"
    scratch.mkdir(parents=True)
    job = subprocess.Popen(
        ["sleep", "600"], env={"PATH": "/usr/bin:/bin", "XWSCRATCHPATH": str(scratch)}, start_new_session=True
    )
    try:
        with StateLock(work):
            undertaker = Undertaker(work, work / "tasks")
            undertaker.start()
            proc = undertaker._proc
            assert proc is not None
            undertaker.stop()
        assert proc.returncode == 0, "the undertaker had to be killed: it waited for the lock"
        assert job.poll() is None, "the undertaker of a worker that stopped normally killed a job"
    finally:
        job.kill()
        job.wait()


#: a worker whose death closes the undertaker's pipe a moment before its lock goes (the
#: kernel closes a dying process's files one by one): the exact point of the race
DYING_WORKER = """import subprocess, sys, time
from pathlib import Path
from xwworker.statedir import StateLock, Undertaker

work, scratch = Path(sys.argv[1]), Path(sys.argv[2])
lock = StateLock(work)
lock.acquire()
undertaker = Undertaker(work, work / "tasks")
undertaker.start()
job = subprocess.Popen(["sleep", "600"], env={"PATH": "/usr/bin:/bin", "XWSCRATCHPATH": str(scratch)},
                       start_new_session=True)
print(job.pid, flush=True)
sys.stdin.readline()
undertaker._proc.stdin.close()  # the pipe ends first, no word of a normal stop...
time.sleep(0.5)  # ...and the lock goes half a second later, as the process exits
"""


def test_the_undertaker_of_a_dead_worker_waits_for_the_lock_its_death_has_not_released_yet(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    scratch = work / "tasks" / "some-task"
    scratch.mkdir(parents=True)
    # named as the worker program is: while it dies it still looks like a live worker
    program = tmp_path / "xwworker"
    program.write_text(DYING_WORKER)
    worker = subprocess.Popen(
        [sys.executable, str(program), str(work), str(scratch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    job = int(worker.stdout.readline())
    try:
        worker.stdin.write("die\n")
        worker.stdin.close()
        assert worker.wait(10) == 0
        _wait(lambda: not _alive(job), timeout_s=10)
    finally:
        if _alive(job):
            os.kill(job, signal.SIGKILL)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()


HOLDER = """import sys, time
from pathlib import Path
from xwworker.statedir import StateLock

StateLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("program", ["xwworker", "undertaker.py"])
def test_a_folder_a_live_worker_holds_is_refused_at_once_and_another_holder_is_waited_for(
    tmp_path: Path, program: str
) -> None:
    """Only an undertaker lets go of a folder soon: a worker program holding it is refused at
    once; another holder (an undertaker, a process that is not a worker) is waited for."""
    wait_s = 4.0
    script = tmp_path / program
    script.write_text(HOLDER)
    folder = tmp_path / "state"
    holder = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"in use by another worker process \\(pid {holder.pid}\\)"):
            StateLock(folder).acquire(wait_s=wait_s)
        took_s = time.monotonic() - started
        if program == "xwworker":
            assert took_s < wait_s / 2, f"a live worker's folder was refused only after {took_s:.1f}s"
        else:
            assert took_s >= wait_s
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
