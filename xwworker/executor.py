"""Run one assignment: scratch directory, the app's process, its result archive.

The executor prepares ``tasks/<task_uid>/`` (env archive expanded, the app binary copied
in as the app's name), asks a :class:`Runner` to start the process, waits for it and packs
the scratch directory into ``results/<task_uid>.zip``. How the process is started is the
runner's business: :class:`LocalRunner` starts it directly in its own session; a sandboxing
runner (bubblewrap) can wrap the same :class:`RunSpec` without touching the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from xwcommon.errors import BadRequest
from xwcommon.status import TaskStatus

from .archive import UnsafeArchive, safe_extract, zip_directory
from .cache import DataRef
from .host import disk_free_bytes

log = logging.getLogger(__name__)

STDOUT_NAME = "stdout.txt"
STDERR_NAME = "stderr.txt"


@dataclass(frozen=True)
class Assignment:
    """One task the server gave this worker (``POST /work/request``'s ``assignments``)."""

    task_uid: str
    job_uid: str
    app_name: str
    args: list[str]
    binary: DataRef
    stdin: DataRef | None = None
    env: DataRef | None = None
    lease_expires_at: str | None = None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Assignment:
        try:
            task_uid, job_uid = str(body["task_uid"]), str(body["job_uid"])
            app_name = str(body.get("app_name") or "app")
            args = [str(a) for a in body.get("args") or []]
            binary = DataRef.from_wire(body["binary"], what="binary")
        except (KeyError, TypeError) as exc:
            raise BadRequest(f"malformed assignment: missing {exc}") from None
        if binary is None:
            raise BadRequest(f"assignment {task_uid} has no binary")
        return cls(
            task_uid=task_uid,
            job_uid=job_uid,
            app_name=app_name,
            args=args,
            binary=binary,
            stdin=DataRef.from_wire(body.get("stdin"), what="stdin"),
            env=DataRef.from_wire(body.get("env"), what="env"),
            lease_expires_at=body.get("lease_expires_at"),
        )


@dataclass
class Outcome:
    """How a task ended, as reported to the server (``status`` COMPLETED or ERROR)."""

    status: TaskStatus
    exit_code: int | None
    message: str | None
    result_zip: Path | None = None
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.COMPLETED


@dataclass
class RunSpec:
    """Everything a runner needs to start a job's process."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stdin: Path | None
    stdout: Path
    stderr: Path


class Runner:
    """Starts a job's process. Subclasses (sandboxes) override :meth:`start`.

    The process must lead its own process group (so :meth:`Executor` can kill the job and
    everything it started), read ``spec.stdin`` (or /dev/null) and write ``spec.stdout`` and
    ``spec.stderr``. ``start`` raises OSError when the program cannot be started.
    """

    name = "local"

    async def start(self, spec: RunSpec) -> asyncio.subprocess.Process:
        raise NotImplementedError


class LocalRunner(Runner):
    """Runs the binary directly, as the worker's user, in a new session."""

    async def start(self, spec: RunSpec) -> asyncio.subprocess.Process:
        with contextlib.ExitStack() as stack:
            stdin: IO[bytes] | int = (
                stack.enter_context(open(spec.stdin, "rb")) if spec.stdin else subprocess.DEVNULL
            )
            stdout = stack.enter_context(open(spec.stdout, "ab"))
            stderr = stack.enter_context(open(spec.stderr, "ab"))
            # the child has its own copies of the descriptors; ours are closed on leaving
            return await asyncio.create_subprocess_exec(
                *spec.argv,
                cwd=spec.cwd,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=spec.env,
                start_new_session=True,
                close_fds=True,
            )


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
    """Runs assignments in scratch directories under ``tmpdir``."""

    tmpdir: Path
    runner: Runner = field(default_factory=LocalRunner)
    kill_grace_s: float = 5.0
    monotonic: Callable[[], float] = time.monotonic

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
        scratch = self.scratch_of(assignment.task_uid)
        started = self.monotonic()
        try:
            app = await asyncio.to_thread(self._prepare, assignment, scratch, binary, env_archive)
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
        )
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
        log.info(
            "task %s: started %s (pid %d) in %s", assignment.task_uid, assignment.app_name, proc.pid, scratch
        )
        try:
            returncode = await proc.wait()
        except asyncio.CancelledError:
            await self.kill(proc)
            raise
        # whatever the job left running in the background must not outlive it
        _signal_group(proc.pid, signal.SIGKILL)
        return await self._finish(assignment, scratch, returncode, None, started, exclude=(app.name,))

    async def kill(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the job's process group, SIGKILL it after ``kill_grace_s``."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=self.kill_grace_s)
        except TimeoutError:
            log.info(
                "process group %d still there %.1fs after SIGTERM; sending SIGKILL",
                proc.pid,
                self.kill_grace_s,
            )
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()

    def cleanup(self, task_uid: str) -> None:
        """Remove a task's scratch directory and result archive."""
        shutil.rmtree(self.scratch_of(task_uid), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.result_of(task_uid).unlink()

    # -- steps ----------------------------------------------------------------------------------
    def _prepare(self, assignment: Assignment, scratch: Path, binary: Path, env_archive: Path | None) -> Path:
        if scratch.exists():  # a leftover of an earlier attempt of this very task
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        if env_archive is not None:
            # leave room on the volunteer's disk: an archive may not fill more than half of it
            safe_extract(env_archive, scratch, max_total_bytes=disk_free_bytes(scratch) // 2)
        app = scratch / binary_file_name(assignment.app_name)
        if app.is_dir():
            shutil.rmtree(app)
        # a copy, not a hard link: the job may write to its own binary, and the cached file
        # must stay what its sha256 says for the next task
        shutil.copyfile(binary, app, follow_symlinks=False)
        app.chmod(0o755)
        return app

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
    ) -> Outcome:
        wall_time_s = self.monotonic() - started
        if failure is not None:
            status, exit_code, message = TaskStatus.ERROR, None, failure
        elif returncode is not None and returncode < 0:
            sig = -returncode
            status, exit_code = TaskStatus.ERROR, 128 + sig
            message = f"killed by signal {sig} ({_signal_name(sig)})"
        elif returncode:
            status, exit_code, message = TaskStatus.ERROR, returncode, f"exited with code {returncode}"
        else:
            status, exit_code, message = TaskStatus.COMPLETED, 0, None
        result = self.result_of(assignment.task_uid)
        try:
            files, size = await asyncio.to_thread(zip_directory, scratch, result, exclude=exclude)
        except OSError as exc:
            log.error("task %s: cannot pack the result: %s", assignment.task_uid, exc)
            extra = f"cannot pack the result: {exc}"
            message = f"{message}; {extra}" if message else extra
            return Outcome(TaskStatus.ERROR, exit_code, message, None, wall_time_s)
        log.info(
            "task %s: %s (exit code %s) after %.1fs; result %d files, %d bytes",
            assignment.task_uid,
            status,
            exit_code,
            wall_time_s,
            files,
            size,
        )
        return Outcome(status, exit_code, message, result, wall_time_s)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
