"""A worker running as root runs each job under an unprivileged uid of its own.

The kernel does not enforce RLIMIT_NPROC for uid 0: a fork bomb of a job run as root was held
only by the executor's 0.1 s poll of its process tree, and its orphans escaped that tree. These
tests start real jobs from a real executor as root (they skip otherwise), inside a pids cgroup
of their own that caps everything at 1,500 tasks so that a broken limit cannot take the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwworker.executor import Executor, Outcome
from xwworker.sandbox import (
    JOB_UID_FIRST,
    JOB_UID_LAST,
    BubblewrapRunner,
    LocalRunner,
    ResourceLimits,
    Runner,
    live_task_count,
    probe_bwrap,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jobs switch to a uid of their own only under root")

SAFETY_MAX_TASKS = 1500
_PIDS = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def safety_cgroup() -> Iterator[None]:
    """This test process (and so every job it starts) in a pids cgroup capped at 1,500."""
    if not (_PIDS / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 pids controller to cap a fork bomb with")
    own = _PIDS / f"xwtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    own.mkdir()
    (own / "pids.max").write_text(str(SAFETY_MAX_TASKS))
    before = next(
        line.split(":", 2)[2]
        for line in Path("/proc/self/cgroup").read_text().splitlines()
        if ":pids:" in line
    )
    _move_threads(own)
    try:
        yield
    finally:
        _move_threads(_PIDS / before.lstrip("/"))
        deadline = time.monotonic() + 10
        while True:
            try:
                own.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _move_threads(cgroup: Path) -> None:
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            (cgroup / "tasks").write_text(tid)


@pytest.fixture(params=["local", "bubblewrap"])
def runner(request: pytest.FixtureRequest) -> Runner:
    if request.param == "local":
        return LocalRunner()
    path, why = probe_bwrap()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox must run in CI: {why}")
        pytest.skip(f"bubblewrap cannot run here: {why}")
    return BubblewrapRunner(path)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A worker folder other users may pass through (o+x), as /var/lib/xwworker would be.

    pytest's own tmp_path lies under a 0700 folder: there a job without bubblewrap could not
    reach its scratch directory under another uid (the executor then runs it as root)."""
    path = Path(tempfile.mkdtemp(prefix="xw-job-user-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def job_tasks() -> tuple[int, int]:
    """(all, live) tasks whose uid is a job uid: threads included, zombies only in the first."""
    total = live = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if not JOB_UID_FIRST <= entry.stat().st_uid <= JOB_UID_LAST:
                continue
            threads = len(os.listdir(f"/proc/{entry.name}/task"))
            state = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        total += threads
        live += threads if state not in (b"Z", b"X") else 0
    return total, live


class Sampler:
    """Counts the job uids' live tasks every few milliseconds from a thread of its own."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, job_tasks()[1])
            time.sleep(0.003)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def run_job(
    workdir: Path, runner: Runner, body: str, *, stdin: Path | None = None, **limits: float
) -> tuple[Outcome, Executor, str]:
    binary = workdir / "cache" / "app"
    binary.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    binary.write_text(body)
    binary.chmod(0o400)  # as in the cache: the worker's alone
    executor = Executor(workdir / "work", runner, kill_grace_s=1.0, limits=ResourceLimits(**limits))  # type: ignore[arg-type]
    a = Assignment(
        task_uid=str(uuid.uuid4()),
        job_uid=str(uuid.uuid4()),
        seq=1,
        app_name="app",
        args=[],
        lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid=str(uuid.uuid4()), sha256="0" * 64),
    )
    outcome = await asyncio.wait_for(executor.run(a, binary, stdin=stdin), timeout=60)
    return outcome, executor, a.task_uid


SHELL_FORK_BOMB = "#!/bin/sh\nb() { b | b & }\nb\nsleep 30\n"


async def test_a_shell_fork_bomb_stays_within_its_limit_and_is_gone_within_two_seconds(
    workdir: Path, runner: Runner, safety_cgroup: None
) -> None:
    # no job of another test runs now (a job uid's tasks would be counted as the bomb's)
    quiet_by = time.monotonic() + 20
    while job_tasks()[1] and time.monotonic() < quiet_by:
        await asyncio.sleep(0.1)
    assert job_tasks()[1] == 0
    started = time.monotonic()
    with Sampler() as sampler:
        outcome, _, _ = await run_job(workdir, runner, SHELL_FORK_BOMB, processes=64)
        gone_at = None
        while time.monotonic() - started < 10:
            if job_tasks()[1] == 0:
                gone_at = time.monotonic() - started
                break
            await asyncio.sleep(0.01)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.processes" in outcome.message, outcome.message
    # the kernel holds the job's uid to 64 (+1 for bubblewrap, +1 so the watch sees it go past)
    assert sampler.peak <= 64 + 4, sampler.peak
    assert gone_at is not None and gone_at < 2.0, gone_at
    after, _, _ = await run_job(workdir / "after", runner, "#!/bin/sh\necho still here\n")
    assert after.status is TaskStatus.COMPLETED, after.message


async def test_the_job_runs_under_its_own_uid_and_its_files_cross_both_ways(
    workdir: Path, runner: Runner, safety_cgroup: None
) -> None:
    stdin = workdir / "cache" / "stdin"
    stdin.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stdin.write_text("from the cache\n")
    stdin.chmod(0o400)
    body = (
        "#!/bin/sh\n"
        "id -u\n"
        "cat\n"  # stdin, from a file only root may read
        'echo made > "$XWSCRATCHPATH/made.txt"\n'
        "mkdir sub && echo deeper > sub/file.txt && chmod 000 sub/file.txt\n"
        f"cat {stdin} >/dev/null 2>&1 && echo CAN-READ-THE-CACHE || echo cannot-read-the-cache\n"
    )
    outcome, executor, task_uid = await run_job(workdir, runner, body, stdin=stdin)

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    assert outcome.result_zip is not None
    with zipfile.ZipFile(outcome.result_zip) as zf:
        out = zf.read("stdout.txt").decode().split("\n")
        # the worker (root) reads back even what the job made unreadable
        assert zf.read("sub/file.txt") == b"deeper\n"
        assert zf.read("made.txt") == b"made\n"
    uid = int(out[0])
    assert JOB_UID_FIRST <= uid <= JOB_UID_LAST
    assert out[1] == "from the cache"
    assert out[2] == "cannot-read-the-cache"
    scratch = executor.scratch_of(task_uid)
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700 and scratch.stat().st_uid == uid
    executor.cleanup(task_uid)
    assert not scratch.exists()
    # nothing of this job's uid is left (other tests' jobs may run meanwhile, under other uids)
    assert live_task_count(uid) == 0


async def test_a_memory_hog_is_stopped_by_its_cgroup_naming_the_limit(
    workdir: Path, runner: Runner, safety_cgroup: None
) -> None:
    # shell children, each under the address-space limit, together past the memory limit:
    # the cgroup (or the executor's watch) ends the job, and the message names the limit
    body = (
        "#!/bin/sh\n"
        "for i in 1 2 3 4 5 6; do\n"
        "  python3 -c 'import time; b = bytearray(60 * 1024 * 1024); time.sleep(20)' &\n"
        "done\n"
        "wait\n"
    )
    outcome, _, _ = await run_job(workdir, runner, body, memory_bytes=200 * 1024 * 1024)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.memory_bytes" in outcome.message, outcome.message
    assert outcome.wall_time_s < 15


_HOLD_A_UID = """
import sys
from pathlib import Path
from xwworker.sandbox import JobUsers
users = JobUsers()
users.lock_dir = Path(sys.argv[1])
print(users.acquire().uid, flush=True)
sys.stdin.read()
"""


def test_two_worker_processes_of_one_machine_never_give_their_jobs_the_same_uid(tmp_path: Path) -> None:
    """RLIMIT_NPROC and kill(-1) as the job's uid reach every process of that uid: two
    workers (two deployments, or a second worker of one) sharing a uid would count each
    other's processes and kill each other's jobs."""
    import subprocess
    import sys

    from xwworker.sandbox import JobUsers

    locks = tmp_path / "job-uids"
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_UID, str(locks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        theirs = int(other.stdout.readline())
        users = JobUsers()
        users.lock_dir = locks
        ours = users.acquire()
        try:
            assert ours.uid != theirs
        finally:
            users.release(ours)
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=10)
        if other.stdout is not None:
            other.stdout.close()
    # once the other process is gone its uid is free again
    again = JobUsers()
    again.lock_dir = locks
    freed = again.acquire()
    try:
        assert freed.uid == theirs
    finally:
        again.release(freed)
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700
