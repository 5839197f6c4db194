"""Results compared by a program: for applications whose outputs agree without being equal
(floating point), a comparison program decides.

The application names the program (``comparator_uid``, a data object). A replicated job's
copy of such an application reports with no digest; the validator (:func:`validator_loop`)
then runs the program on the copy's result and on one result of each class of results the
job already has, as ``PROGRAM a b`` in a scratch folder holding both results expanded:
exit code 0 means they agree. A copy that agrees with a class takes that class's digest,
else it opens a class of its own; then the job is decided again (:func:`lifecycle.revisit`)
as for digests compared by equality.

The program is the application owner's code running on the server: it runs as a job
does on a worker (:mod:`xwworker.sandbox`): under bubblewrap with no network, its scratch
folder the only writable place, under a uid of its own when the server runs as root, within
CPU, memory, file, process and wall-clock limits. A server where bubblewrap cannot run does
not run comparison programs: the jobs that need one end in ERROR saying so.

Copies to compare are queued by the process that took their report; a sweep at start and
every few minutes finds those a stopped process left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from xwcommon.status import JobStatus, TaskStatus
from xwworker.archive import UnsafeArchive, safe_extract
from xwworker.sandbox import (
    JobUser,
    JobUsers,
    ResourceLimits,
    Runner,
    RunSpec,
    choose_runner,
    kill_user,
    signal_tree,
)

from . import hot, lifecycle, validation
from .db.engine import transaction
from .db.models import App, Data, Job, Task
from .state import Server

log = logging.getLogger(__name__)

#: what a comparison may use (a comparison reads two results; it is no job)
LIMITS = ResourceLimits(
    cpu_s=60, memory_bytes=2 * 1024**3, file_bytes=256 * 1024**2, processes=64, wall_s=120.0
)
#: results are expanded within these bounds (a volunteer's bytes)
MAX_RESULT_BYTES = 4 * 1024**3
SWEEP_S = 300.0
BATCH = 50

_PENDING_COPIES = (
    select(Task.id, Task.job_id)
    .join(Job, Job.id == Task.job_id)
    .join(App, App.id == Job.app_id)
    .where(
        hot.status_is(Task.status, TaskStatus.COMPLETED.value),
        Task.digest.is_(None),
        Job.min_quorum > 1,
        App.comparator_data_id.is_not(None),
        hot.status_is(Job.status, JobStatus.WAITING.value, JobStatus.PENDING.value, JobStatus.RUNNING.value),
    )
    .limit(bindparam("batch"))
)
_COPY = (
    select(
        Task.id, Task.job_id, Task.digest, Task.status, Job.status.label("job_status"), App.comparator_data_id
    )
    .join(Job, Job.id == Task.job_id)
    .join(App, App.id == Job.app_id)
    .where(Task.id == bindparam("task_id"))
)
_CLASSES = (
    select(Task.id, Task.digest)
    .where(
        Task.job_id == bindparam("job_id"),
        hot.status_is(Task.status, TaskStatus.COMPLETED.value),
        Task.digest.is_not(None),
        Task.validity.is_(None) | (Task.validity != "invalid"),
    )
    .order_by(Task.id)
)
_RESULT_OF = select(Data.sha256).where(Data.task_id == bindparam("task_id"))
_DATA_SHA = select(Data.sha256).where(Data.id == bindparam("data_id"))
_SET_DIGEST = (
    update(Task)
    .where(Task.id == bindparam("task_id"), Task.digest.is_(None))
    .values(digest=bindparam("b_digest"))
)


def class_of(task_id: int) -> str:
    """The digest of a class of results opened by this copy."""
    return hashlib.sha256(f"compared-class-{task_id}".encode()).hexdigest()


@dataclass
class Comparator:
    """Runs comparison programs in the job sandbox."""

    work_dir: Path
    runner: Runner | None = None
    #: why comparisons cannot run here (no sandbox), once known
    refusal: str | None = None
    users: JobUsers | None = None

    def __post_init__(self) -> None:
        choice = choose_runner(enable=True, network=False)
        if choice.warning:
            self.refusal = (
                f"the server cannot run comparison programs in a sandbox ({choice.warning.split(':')[0]})"
            )
            log.warning(
                "%s: replicated jobs of applications with a comparison program will fail", self.refusal
            )
        else:
            self.runner = choice.runner
        self.users = JobUsers.for_this_process()

    async def agree(self, program: Path, a: Path | None, b: Path | None) -> bool:
        """Whether results ``a`` and ``b`` agree (None: a copy that sent no result)."""
        if a is None or b is None:
            return a is None and b is None
        assert self.runner is not None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="compare-", dir=self.work_dir))
        user: JobUser | None = None
        try:
            try:
                for name, archive in (("a", a), ("b", b)):
                    await asyncio.to_thread(
                        safe_extract,
                        archive,
                        scratch / name,
                        max_total_bytes=MAX_RESULT_BYTES,
                        max_member_bytes=MAX_RESULT_BYTES,
                    )
            except (UnsafeArchive, OSError) as exc:
                log.info("comparison: a result cannot be expanded (%s): they do not agree", exc)
                return False
            shutil.copyfile(program, scratch / "compare")
            os.chmod(scratch / "compare", 0o755)
            if self.users is not None:
                user = await asyncio.to_thread(self.users.acquire)
                await asyncio.to_thread(_give_to, scratch, user)
            spec = RunSpec(
                argv=[str(scratch / "compare"), "a", "b"],
                cwd=scratch,
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8"},
                stdin=None,
                stdout=scratch / "stdout.txt",
                stderr=scratch / "stderr.txt",
                limits=LIMITS,
                user=user,
            )
            proc = await self.runner.start(spec)
            try:
                code = await asyncio.wait_for(proc.wait(), LIMITS.wall_s)
            except TimeoutError:
                signal_tree(proc.pid, signal.SIGKILL)
                await proc.wait()
                log.info("comparison: the program ran past %.0f s: the results do not agree", LIMITS.wall_s)
                return False
            return code == 0
        finally:
            if user is not None and self.users is not None and kill_user(user) == 0:
                self.users.release(user)
            await asyncio.to_thread(shutil.rmtree, scratch, True)


def _give_to(scratch: Path, user: JobUser) -> None:
    for dirpath, _dirnames, filenames in os.walk(scratch):
        os.chown(dirpath, user.uid, user.gid)
        for name in filenames:
            os.lchown(os.path.join(dirpath, name), user.uid, user.gid)
    for name in ("stdout.txt", "stderr.txt"):
        fd = os.open(scratch / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.fchown(fd, user.uid, user.gid)
        finally:
            os.close(fd)


async def _path_of(srv: Server, conn: AsyncConnection, task_id: int) -> Path | None:
    sha = (await conn.execute(_RESULT_OF, {"task_id": task_id})).scalar_one_or_none()
    return srv.store.path_of(sha) if sha else None


async def judge(srv: Server, comparator: Comparator, task_id: int) -> None:
    """Put one copy in its class of results (running the program as needed), then decide its job."""
    async with srv.engine.connect() as conn:
        row = (await conn.execute(_COPY, {"task_id": task_id})).first()
        if row is None or row.digest is not None or row.job_status not in validation.LIVE:
            return
        if row.status != TaskStatus.COMPLETED.value:
            return  # its report did not commit (the sweep finds it if it does later)
        mine = await _path_of(srv, conn, task_id)
        classes: dict[str, int] = {}
        for other_id, digest in await conn.execute(_CLASSES, {"job_id": row.job_id}):
            if digest is not None:
                classes.setdefault(digest, other_id)
        program_sha = (
            await conn.execute(_DATA_SHA, {"data_id": row.comparator_data_id})
        ).scalar_one_or_none()
        others = {digest: await _path_of(srv, conn, other) for digest, other in classes.items()}
    now = time.time()
    if comparator.refusal is not None or program_sha is None:
        why = comparator.refusal or "its application's comparison program was removed"

        async def fail(conn: AsyncConnection) -> None:
            await lifecycle.fail_live_jobs(conn, [row.job_id], now, f"its results cannot be compared: {why}")

        await transaction(srv.engine, fail)
        return
    program = srv.store.path_of(program_sha)
    digest = class_of(task_id)
    for class_digest, path in others.items():
        if await comparator.agree(program, mine, path):
            digest = class_digest
            break

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(_SET_DIGEST, {"task_id": task_id, "b_digest": digest})
        await lifecycle.revisit(conn, [row.job_id], now)

    await transaction(srv.engine, write)
    srv.notifier.notify(1)


async def validator_loop(srv: Server) -> None:
    """Compares what :data:`Server.to_compare` queues, and sweeps for what was left."""
    comparator: Comparator | None = None
    next_sweep = 0.0
    while True:
        try:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_S
                if await srv.leader.held():
                    async with srv.engine.connect() as conn:
                        for task_id, _job in await conn.execute(_PENDING_COPIES, {"batch": BATCH}):
                            srv.to_compare.put_nowait(task_id)
            try:
                task_id = await asyncio.wait_for(srv.to_compare.get(), timeout=SWEEP_S)
            except TimeoutError:
                continue
            if comparator is None:
                comparator = await asyncio.to_thread(Comparator, srv.settings.home / "var" / "compare")
            await judge(srv, comparator, task_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("validator failed; going on")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1.0)
