"""Run one assignment: scratch directory, the app's process, its result archive.

The executor prepares ``tasks/<task_uid>/`` (env archive expanded, the app binary copied
in as the app's name), asks a :class:`Runner` to start the process, waits for it and packs
the scratch directory into ``results/<task_uid>.zip``. How the process is started is the
runner's business (:mod:`xwworker.sandbox`): :class:`LocalRunner` starts it directly in its
own session, :class:`~xwworker.sandbox.BubblewrapRunner` in a sandbox; both under the
job's resource limits. While the job runs the executor watches its process tree (size,
memory, wall-clock time) and kills it past a limit; when it ends, the kernel's account of
its CPU time and peak memory goes on the :class:`Outcome`. What it runs is the protocol's
:class:`~xwcommon.protocol.work.Assignment`, exactly as the server sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from xwcommon import defaults, signing
from xwcommon.errors import BadRequest
from xwcommon.protocol.work import Assignment
from xwcommon.status import TaskStatus

from .archive import UnsafeArchive, safe_extract, zip_directory
from .host import disk_free_bytes
from .sandbox import (
    Cgroups,
    JobCgroup,
    JobProcess,
    JobUser,
    JobUsers,
    LocalRunner,
    ResourceLimits,
    Runner,
    RunSpec,
    kill_user,
    process_tree,
    user_task_count,
)

__all__ = [
    "Assignment",
    "Executor",
    "JobProcess",
    "LocalRunner",
    "Outcome",
    "ResourceLimits",
    "RunSpec",
    "Runner",
    "job_path",
]

log = logging.getLogger(__name__)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


STDOUT_NAME = "stdout.txt"
STDERR_NAME = "stderr.txt"


@dataclass
class Outcome:
    """How a task ended, as reported to the server (``status`` COMPLETED or ERROR)."""

    status: TaskStatus
    exit_code: int | None
    message: str | None
    result_zip: Path | None = None
    wall_time_s: float = 0.0
    #: what the job's process used, when it ran: ``cpu_user_s``, ``cpu_system_s``, ``wall_s``
    #: (from its start to its end) and ``max_rss_bytes`` (the largest process's peak)
    accounting: dict[str, float] | None = None
    #: monotonic times of the app's start and exit (None when it never started): with
    #: :class:`xwworker.loop.TaskRun`'s they give the worker's own overhead per task
    app_started_at: float | None = None
    app_exited_at: float | None = None
    #: the result archive's bytes when it is small enough to ride in the report
    #: (``inline_max_bytes``), read in the same hop to a thread that wrote it
    result_content: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.COMPLETED


@functools.cache
def job_path() -> str:
    """PATH for jobs: the system folders, then the folder of the interpreter running the worker.

    Scripts start with ``#!/usr/bin/env python3``; the last entry makes sure ``env`` finds a
    Python even where the system has none in the usual places.
    """
    dirs = ["/usr/local/bin", "/usr/bin", "/bin"]
    python_dir = str(Path(os.path.realpath(sys.executable)).parent)
    if python_dir not in dirs:
        dirs.append(python_dir)
    return ":".join(dirs)


def binary_file_name(app_name: str) -> str:
    """The app's name as a safe file name in the scratch directory."""
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", app_name.rsplit("/", 1)[-1]).lstrip(".")
    return name or "app"


@dataclass
class Executor:
    """Runs assignments in scratch directories under ``tmpdir``, each under ``limits``."""

    tmpdir: Path
    runner: Runner = field(default_factory=LocalRunner)
    kill_grace_s: float = 5.0
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    #: how often a running job's process tree is checked against the limits
    watch_interval_s: float = 0.1
    monotonic: Callable[[], float] = time.monotonic
    #: the processes of the jobs running now, by task uid
    running: dict[str, JobProcess] = field(default_factory=dict)
    #: a result archive up to this size is kept in memory too (:attr:`Outcome.result_content`)
    inline_max_bytes: int = defaults.INLINE_RESULT_MAX_BYTES
    #: the uids jobs run under when the worker is root (None: jobs run as the worker's user)
    users: JobUsers | None = field(default_factory=JobUsers.for_this_process)
    #: where each job gets a cgroup of its own (pids.max, memory limit); None: nowhere
    cgroups: Cgroups | None = field(default_factory=Cgroups.probe)
    #: the deployment's public signing key (PEM file): set, a binary runs only if its
    #: signature verifies (xwcommon/signing.py); None: binaries run unchecked
    signing_key: Path | None = None
    _warned_closed: bool = field(default=False, init=False, repr=False)
    #: uids swept clean after their job's end: ``kill -1`` as the uid left none alive, and no
    #: process of a uid with none alive can make another (only root can), so the sweep when
    #: the uid goes back to the pool would find nothing (a fork and an exec saved per job)
    _swept: set[int] = field(default_factory=set, init=False, repr=False)
    _public_key: Ed25519PublicKey | None = field(default=None, init=False, repr=False)

    @property
    def tasks_dir(self) -> Path:
        return self.tmpdir / "tasks"

    @property
    def results_dir(self) -> Path:
        return self.tmpdir / "results"

    def scratch_of(self, task_uid: str) -> Path:
        return self.tasks_dir / _safe_uid(task_uid)

    def result_of(self, task_uid: str) -> Path:
        return self.results_dir / f"{_safe_uid(task_uid)}.zip"

    async def run(
        self,
        assignment: Assignment,
        binary: Path,
        *,
        stdin: Path | None = None,
        env_archive: Path | None = None,
    ) -> Outcome:
        """Run ``assignment`` to its end; a failing job is an ERROR outcome, not an exception.

        Cancelling the calling task kills the job's process group and re-raises.
        """
        started = self.monotonic()
        if self.signing_key is not None:
            refusal = await asyncio.to_thread(self.refusal, assignment, binary)
            if refusal is not None:
                log.warning("task %s: %s", assignment.task_uid, refusal)
                return Outcome(TaskStatus.ERROR, None, refusal)
        user: JobUser | None = None
        cgroup: list[JobCgroup] = []
        try:
            if self.users is not None and self._job_user_can_run():
                user = await asyncio.to_thread(self.users.acquire)
            return await self._run(assignment, binary, stdin, env_archive, started, user, cgroup)
        finally:
            # whatever the job left behind, under its uid or in its cgroup, goes before the uid
            # serves another job
            if user is not None or cgroup:
                await asyncio.shield(asyncio.to_thread(self._release, user, cgroup))

    def __post_init__(self) -> None:
        if self.signing_key is not None:  # a bad key file is said at start, not at the first job
            self._public_key = signing.load_public_key(self.signing_key)
        else:
            log.info("no signing.key in the worker config: binaries run without a signature check")

    def refusal(self, assignment: Assignment, binary: Path) -> str | None:
        """Why ``binary`` must not run (its signature is missing or does not verify against
        the deployment's key), or None. The digest is the file's own, computed here: a copy
        altered in the cache, or content the server swapped along with its digest, fails."""
        if self.signing_key is None:
            return None
        if self._public_key is None:
            self._public_key = signing.load_public_key(self.signing_key)
        ref = assignment.binary
        sha = _sha256_of(binary)
        try:
            signing.verify(
                self._public_key,
                ref.signature,
                assignment.app_name,
                ref.os or "any",
                ref.cpu or "any",
                sha,
            )
        except signing.SignatureError as exc:
            return f"binary refused: {exc.message}"
        return None

    def _job_user_can_run(self) -> bool:
        """Whether a job under a uid of its own can reach its scratch directory.

        Under bubblewrap it always can (the sandbox's folders above it are its own). Without
        it the job walks the worker's real folders, which every user must be able to pass
        (``o+x``); where one cannot be passed the job runs as the worker's user, with a warning.
        """
        if self.runner.switches_user_inside:
            return True
        closed = _closed_to_others(self.tasks_dir)
        if closed is None:
            return True
        if not self._warned_closed:
            self._warned_closed = True
            log.warning(
                "jobs run as root, not under uids of their own: %s is closed to other users; "
                "give it o+x or run jobs under bubblewrap",
                closed,
            )
        return False

    def _release(self, user: JobUser | None, cgroup: list[JobCgroup]) -> None:
        if user is not None:
            if user.uid in self._swept:
                self._swept.discard(user.uid)
                left = 0
            else:
                left = kill_user(user)
            if left:
                log.warning("uid %d: %d processes still alive after SIGKILL; not reused", user.uid, left)
            elif self.users is not None:
                self.users.release(user)
        for cg in cgroup:
            cg.remove()

    async def _run(
        self,
        assignment: Assignment,
        binary: Path,
        stdin: Path | None,
        env_archive: Path | None,
        started: float,
        user: JobUser | None,
        cgroup: list[JobCgroup],
    ) -> Outcome:
        scratch = self.scratch_of(assignment.task_uid)
        try:
            # one hop to a thread for the whole preparation, the binary's check included
            app, why = await asyncio.to_thread(
                self._prepare, assignment, scratch, binary, env_archive, user, cgroup
            )
        except (UnsafeArchive, OSError) as exc:
            message = f"cannot prepare the job: {exc}"
            await asyncio.to_thread(_append_text, scratch / STDERR_NAME, f"xwworker: {message}\n")
            return await self._finish(assignment, scratch, None, message, started, exclude=())
        spec = RunSpec(
            argv=[str(app), *assignment.args],
            cwd=scratch,
            env=self._environment(assignment, scratch),
            stdin=stdin,
            stdout=scratch / STDOUT_NAME,
            stderr=scratch / STDERR_NAME,
            limits=self.limits,
            network=assignment.needs_network,
            user=user,
            cgroup=cgroup[0] if cgroup else None,
        )
        if why:
            message = f"cannot start {assignment.app_name}: {why}"
            await asyncio.to_thread(_append_text, spec.stderr, f"xwworker: {message}\n")
            return await self._finish(assignment, scratch, None, message, started, exclude=(app.name,))
        starting = asyncio.ensure_future(self.runner.start(spec))
        try:
            # shielded: a cancel that lands while the process is being started must still kill it
            proc = await asyncio.shield(starting)
        except OSError as exc:
            message = f"cannot start {assignment.app_name}: {exc.strerror or exc}"
            await asyncio.to_thread(_append_text, spec.stderr, f"xwworker: {message}\n")
            return await self._finish(assignment, scratch, None, message, started, exclude=(app.name,))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.kill(await starting)
            raise
        proc_started = self.monotonic()
        self.running[assignment.task_uid] = proc
        log.info(
            "task %s: started %s (pid %d, %s runner) in %s",
            assignment.task_uid,
            assignment.app_name,
            proc.pid,
            self.runner.name,
            scratch,
        )
        try:
            broken = await self._supervise(assignment, proc, proc_started)
            returncode = await proc.wait()
        except asyncio.CancelledError:
            await self.kill(proc)
            raise
        finally:
            self.running.pop(assignment.task_uid, None)
        proc_exited = self.monotonic()
        proc_wall_s = proc_exited - proc_started
        if self.runner.signals_as_exit_codes and 128 < returncode < 128 + signal.NSIG:
            returncode = 128 - returncode  # as if it were our child: killed by that signal
        # whatever the job left running in the background must not outlive it. Its group only:
        # the pid is reaped now and could name someone else's tree (under bubblewrap the kernel
        # has already killed the job's pid namespace with the job). Under a uid of its own,
        # everything of that uid, before its files are packed
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.user is not None and not await asyncio.to_thread(kill_user, proc.user):
            self._swept.add(proc.user.uid)
        if broken is None and returncode != 0 and proc.cgroup is not None and proc.cgroup.oom_kills():
            broken = (
                f"limit.memory_bytes exceeded: the kernel killed a process of the job at its "
                f"{self.limits.memory_bytes} bytes"
            )
        outcome = await self._finish(
            assignment,
            scratch,
            returncode,
            broken,
            started,
            exclude=(app.name,),
            accounting=_accounting(proc, proc_wall_s),
        )
        outcome.app_started_at, outcome.app_exited_at = proc_started, proc_exited
        return outcome

    async def _supervise(self, assignment: Assignment, proc: JobProcess, proc_started: float) -> str | None:
        """Wait for the job's end, checking its tree against the limits that setrlimit cannot
        hold: the number of processes (setrlimit cannot under root), the memory of the whole
        tree (RLIMIT_AS is per process) and the wall-clock time. Past one, kill the job and
        return what it broke."""
        limits = self.limits
        max_processes = limits.processes + self.runner.overhead_processes if limits.processes else 0
        ended = asyncio.ensure_future(proc.wait())
        try:
            while True:
                done, _ = await asyncio.wait({ended}, timeout=self.watch_interval_s)
                if done:
                    return None
                broken: str | None = None
                usage = process_tree(proc.pid)
                proc.sampled_rss_bytes = max(proc.sampled_rss_bytes, usage.largest_rss_bytes)
                processes = usage.processes
                if max_processes:
                    # a process that left the tree (an orphan) still counts: the job's cgroup
                    # or its uid sees it
                    processes = max(processes, _outside_count(proc))
                if max_processes and processes > max_processes:
                    broken = f"limit.processes exceeded: more than {limits.processes} processes"
                elif max_processes and proc.cgroup is not None and proc.cgroup.forks_refused():
                    broken = (
                        f"limit.processes exceeded: a fork past its {limits.processes} processes was refused"
                    )
                elif limits.memory_bytes and usage.rss_bytes > limits.memory_bytes:
                    broken = (
                        f"limit.memory_bytes exceeded: its processes used {usage.rss_bytes} bytes "
                        f"(limit {limits.memory_bytes})"
                    )
                elif limits.wall_s and self._running_s(proc, proc_started) > limits.wall_s:
                    broken = f"limit.wall_s exceeded: still running after {limits.wall_s:g}s"
                if broken is not None:
                    log.warning("task %s: %s; killing it", assignment.task_uid, broken)
                    await _kill_everything(proc)
                    return broken
        finally:
            ended.cancel()

    def _running_s(self, proc: JobProcess, proc_started: float) -> float:
        """Seconds the job has run, not counting the time it spent suspended."""
        now = self.monotonic()
        return now - proc_started - proc.suspended_s(now)

    # -- suspending (the activation policy said no) ---------------------------------------------
    def suspend(self, task_uid: str) -> bool:
        """SIGSTOP a running job's whole tree; False when the task has no running process."""
        proc = self.running.get(task_uid)
        if proc is None:
            return False
        proc.suspend(self.monotonic())
        log.info("task %s: suspended (pid %d)", task_uid, proc.pid)
        return True

    def resume(self, task_uid: str) -> bool:
        """SIGCONT a suspended job's whole tree; False when the task has no running process."""
        proc = self.running.get(task_uid)
        if proc is None:
            return False
        if proc.suspended_since is not None:
            proc.resume(self.monotonic())
            log.info("task %s: resumed (pid %d)", task_uid, proc.pid)
        return True

    async def kill(self, proc: JobProcess) -> None:
        """SIGTERM the job's process group, SIGKILL its whole tree after ``kill_grace_s``."""
        _signal_group(proc.pid, signal.SIGTERM)
        if proc.suspended_since is not None:
            # a stopped process acts on SIGTERM only once continued
            proc.resume(self.monotonic())
        try:
            await asyncio.wait_for(proc.wait(), timeout=self.kill_grace_s)
        except TimeoutError:
            log.info(
                "process group %d still there %.1fs after SIGTERM; sending SIGKILL",
                proc.pid,
                self.kill_grace_s,
            )
        await _kill_everything(proc)
        await proc.wait()

    def cleanup(self, task_uid: str) -> None:
        """Remove a task's scratch directory and result archive."""
        shutil.rmtree(self.scratch_of(task_uid), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.result_of(task_uid).unlink()

    # -- steps ----------------------------------------------------------------------------------
    def _prepare(
        self,
        assignment: Assignment,
        scratch: Path,
        binary: Path,
        env_archive: Path | None,
        user: JobUser | None = None,
        cgroup: list[JobCgroup] | None = None,
    ) -> tuple[Path, str | None]:
        """The scratch directory made and the app copied in: the app's path, and why it cannot
        be executed (None when it can). Under a job uid, everything in it is the job's; the
        job's cgroup, where one can be made, is appended to ``cgroup``."""
        if scratch.exists():  # a leftover of an earlier attempt of this very task
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True, mode=0o700)
        if env_archive is not None:
            # leave room on the volunteer's disk: an archive may not fill more than half of it,
            # nor more than the disk the job said it needs; no member more than a job may write
            total, total_limit = disk_free_bytes(scratch) // 2, "half of the free disk"
            if 0 < assignment.min_disk_bytes < total:
                total, total_limit = assignment.min_disk_bytes, "the job's declared disk need"
            safe_extract(
                env_archive,
                scratch,
                max_total_bytes=total,
                total_limit=total_limit,
                max_member_bytes=self.limits.file_bytes or None,
            )
        app = scratch / binary_file_name(assignment.app_name)
        if app.is_dir():
            shutil.rmtree(app)
        # a copy, not a hard link: the job may write to its own binary, and the cached file
        # must stay what its sha256 says for the next task
        shutil.copyfile(binary, app, follow_symlinks=False)
        app.chmod(0o755)
        if user is not None:
            _give_to(scratch, user)
        if self.cgroups is not None and cgroup is not None:
            # the worker's pid too: another worker on this host (another deployment, or
            # the same task handed to two workers) never shares, nor clears, this one's
            name = f"xwjob-{os.getpid()}-{scratch.name}"
            try:
                cgroup.append(self.cgroups.create(name, self.limits, self.runner.overhead_processes))
            except OSError as exc:
                log.warning("task %s: no cgroup of its own (%s); rlimits only", assignment.task_uid, exc)
        return app, _not_executable(app)

    def _environment(self, assignment: Assignment, scratch: Path) -> dict[str, str]:
        return {
            "PATH": job_path(),
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "XWJOBUID": assignment.job_uid,
            "XWTASKUID": assignment.task_uid,
            "XWSCRATCHPATH": str(scratch),
            "XWCMDARGS": shlex.join(assignment.args),
        }

    async def _finish(
        self,
        assignment: Assignment,
        scratch: Path,
        returncode: int | None,
        failure: str | None,
        started: float,
        *,
        exclude: tuple[str, ...],
        accounting: dict[str, float] | None = None,
    ) -> Outcome:
        wall_time_s = self.monotonic() - started
        if failure is not None:
            status, message = TaskStatus.ERROR, failure
            exit_code = None if returncode is None else _exit_code(returncode)
        elif returncode is not None and returncode < 0:
            sig = -returncode
            status, exit_code = TaskStatus.ERROR, 128 + sig
            message = f"killed by signal {sig} ({_signal_name(sig)})"
            if limit := _signal_limit(sig, self.limits, accounting):
                message = f"{limit}; {message}"
        elif returncode:
            status, exit_code, message = TaskStatus.ERROR, returncode, f"exited with code {returncode}"
            tail = await asyncio.to_thread(_tail, scratch / STDERR_NAME)
            if why := _exec_failure(returncode, tail):
                # the wrapper (prlimit, bubblewrap) could not exec the app: it never started
                exit_code, message = None, f"cannot start {assignment.app_name}: {why}"
                await asyncio.to_thread(_append_text, scratch / STDERR_NAME, f"xwworker: {message}\n")
            elif limit := _stderr_limit(tail, self.limits):
                message = f"{message} ({limit})"
        else:
            status, exit_code, message = TaskStatus.COMPLETED, 0, None
        result = self.result_of(assignment.task_uid)
        try:
            files, size, content = await asyncio.to_thread(self._pack, scratch, result, exclude)
        except OSError as exc:
            log.error("task %s: cannot pack the result: %s", assignment.task_uid, exc)
            extra = f"cannot pack the result: {exc}"
            message = f"{message}; {extra}" if message else extra
            return Outcome(TaskStatus.ERROR, exit_code, message, None, wall_time_s, accounting)
        log.info(
            "task %s: %s (exit code %s) after %.1fs; result %d files, %d bytes",
            assignment.task_uid,
            status,
            exit_code,
            wall_time_s,
            files,
            size,
        )
        return Outcome(status, exit_code, message, result, wall_time_s, accounting, result_content=content)

    def _pack(self, scratch: Path, result: Path, exclude: tuple[str, ...]) -> tuple[int, int, bytes | None]:
        """Zip the scratch directory into ``result``: (files, bytes, the bytes themselves when
        small enough to ride in the report)."""
        files, size = zip_directory(scratch, result, exclude=exclude)
        content = None
        if size <= self.inline_max_bytes:
            with contextlib.suppress(OSError):  # the upload path will say what is wrong
                content = result.read_bytes()
        return files, size, content


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every descendant, even those in other groups.

    The tree is frozen first (SIGSTOP, repeated until it stops growing) so that a fork bomb
    cannot leave children behind between the listing and the kill.
    """
    seen: set[int] = set()
    for _ in range(50):
        tree = process_tree(pid).pids
        new = [p for p in tree if p not in seen]
        if not new:
            break
        for p in new:
            _signal(p, signal.SIGSTOP)
        seen.update(new)
    _signal_group(pid, signal.SIGKILL)
    for p in seen:
        _signal(p, signal.SIGKILL)


async def _kill_everything(proc: JobProcess) -> None:
    """SIGKILL the job: its tree, its cgroup (where the kernel kills a cgroup at once), its uid."""
    _kill_tree(proc.pid)
    if proc.cgroup is not None:
        proc.cgroup.kill()
    if proc.user is not None:
        await asyncio.to_thread(kill_user, proc.user)


def _outside_count(proc: JobProcess) -> int:
    """The job's processes as its cgroup or its uid counts them (0 when it has neither)."""
    if proc.cgroup is not None and (n := proc.cgroup.processes()) is not None:
        return n
    if proc.user is not None:
        return user_task_count(proc.user.uid)
    return 0


def _closed_to_others(folder: Path) -> Path | None:
    """The first folder on the way to ``folder`` (itself included) other users cannot pass."""
    for f in [folder, *folder.parents]:
        try:
            mode = f.stat().st_mode
        except FileNotFoundError:
            continue  # made later, by the worker, with o+x under its umask
        except OSError:
            return f
        if not mode & stat.S_IXOTH:
            return f
    return None


def _give_to(scratch: Path, user: JobUser) -> None:
    """Make the scratch directory and all in it the job's (the worker wrote it as root)."""
    os.chown(scratch, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(scratch):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), user.uid, user.gid)
    for name in (STDOUT_NAME, STDERR_NAME):
        # made here, so that they are the job's too (the worker opens them for the job)
        fd = os.open(scratch / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.fchown(fd, user.uid, user.gid)
        finally:
            os.close(fd)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


#: what a child may add to the worker's pages between fork and exec (its preexec steps): a
#: ru_maxrss this close to the worker's own peak is the fork's, not the job's (a small job
#: was once charged 575 MB, a few pages above its 575 MB worker)
FORK_RSS_SLACK_BYTES = 16 * 1024 * 1024


def _accounting(proc: JobProcess, wall_s: float) -> dict[str, float] | None:
    ru = proc.rusage
    if ru is None:
        return None
    max_rss_bytes = ru.ru_maxrss * 1024  # KiB on Linux
    if max_rss_bytes <= proc.parent_rss_bytes + FORK_RSS_SLACK_BYTES:
        # maybe only the worker's pages counted at fork (see JobProcess.parent_rss_bytes),
        # plus the few the child touched before exec: then the best figure is what the
        # executor saw while the job ran
        max_rss_bytes = proc.sampled_rss_bytes
    accounting = {"cpu_user_s": ru.ru_utime, "cpu_system_s": ru.ru_stime, "wall_s": wall_s}
    if max_rss_bytes:  # a job too short to be seen has no figure we can trust
        accounting["max_rss_bytes"] = float(max_rss_bytes)
    return accounting


def _signal_limit(sig: int, limits: ResourceLimits, accounting: dict[str, float] | None) -> str | None:
    """The limit a job killed by ``sig`` most likely broke, if any."""
    if sig == signal.SIGXFSZ:
        return f"limit.file_bytes exceeded ({limits.file_bytes} bytes)"
    cpu_s = (accounting or {}).get("cpu_user_s", 0.0) + (accounting or {}).get("cpu_system_s", 0.0)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and limits.cpu_s and cpu_s >= limits.cpu_s):
        return f"limit.cpu_s exceeded ({limits.cpu_s}s of CPU)"
    return None


# what programs print when a resource limit refuses them something
_STDERR_LIMITS = (
    (("MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory"), "memory_bytes"),
    (("File too large",), "file_bytes"),
    (("Resource temporarily unavailable", "BlockingIOError"), "processes"),
)


#: what prlimit, setpriv (exit code 126 or 127) and bubblewrap (exit code 1) print when they
#: cannot exec the app
_EXEC_FAILED = re.compile(
    r"^(?:prlimit: failed to execute|setpriv: failed to execute|bwrap: execvp) [^\n]*?: ([^:\n]+)$",
    re.MULTILINE,
)


def _not_executable(app: Path) -> str | None:
    """Why ``app`` is neither a ``#!`` script nor an ELF binary, or None.

    The wrappers that start jobs (prlimit, bubblewrap) exec with execvp, which hands any
    other file to /bin/sh; XWHEP's apps are binaries or scripts, so anything else is refused.
    """
    try:
        with open(app, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        return exc.strerror or str(exc)
    if head.startswith(b"#!") or head == b"\x7fELF":
        return None
    return "Exec format error: the app is neither a script starting with #! nor an ELF executable"


def _exec_failure(returncode: int, tail: str) -> str | None:
    """Why the app could not be executed, when its wrapper says so; else None."""
    if returncode not in (1, 126, 127):
        return None
    lines = tail.strip().splitlines()
    match = _EXEC_FAILED.match(lines[-1]) if lines else None
    return match.group(1).strip() if match else None


def _stderr_limit(tail: str, limits: ResourceLimits) -> str | None:
    for needles, name in _STDERR_LIMITS:
        value = getattr(limits, name)
        if value and any(n in tail for n in needles):
            return f"probably limit.{name} = {value}"
    return None


def _tail(path: Path, size_bytes: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - size_bytes))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "unknown"


def _append_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def _safe_uid(uid: str) -> str:
    """A task uid as a single path component (uids come from the server; trust nothing)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", uid)
    if not safe:
        raise BadRequest("empty task uid")
    return safe
