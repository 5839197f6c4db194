"""The worker's state folder (``path.tmpdir``): one worker process at a time, nothing left over.

The folder holds the host identity the server gave (``xwworker.host``), the download cache,
the jobs' scratch folders and results. Two worker processes sharing it would be one host on
the server: each one's work requests and heartbeats name only its own tasks, so the server
would release the other's at once, and each would remove the other's scratch folders at its
start. So a worker holds an exclusive lock on ``xwworker.lock`` in the folder for its whole
life (:class:`StateLock`). The kernel drops the lock when the process dies, even by SIGKILL:
a restarted worker never finds a stale one, resumes the host identity and tells the server
it holds no task, so its predecessor's tasks go back to the queue at once.

A job started without bubblewrap dies with the worker (its runner asks the kernel for a
SIGKILL when the worker goes), but what the job started in the background does not;
:func:`kill_leftover_jobs` ends those when the next worker takes the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
from pathlib import Path

from xwcommon.errors import ConfigError

from .sandbox import process_tree

__all__ = ["LOCK_NAME", "StateLock", "kill_leftover_jobs", "leftover_jobs"]

log = logging.getLogger(__name__)

LOCK_NAME = "xwworker.lock"
#: the variable every job's environment carries: its scratch folder (see Executor._environment)
SCRATCH_VARIABLE = b"XWSCRATCHPATH="


class StateLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/xwworker.lock``, which names its holder's pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock; :class:`ConfigError` naming the folder when another process holds it."""
        if self._fd is not None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # not inherited by jobs (Python opens non-inheritable): a job that outlived its
            # worker must not keep the folder locked
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"path.tmpdir: cannot use {self.folder}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = _read_pid(fd)
            os.close(fd)
            by = f" (pid {other})" if other else ""
            raise ConfigError(
                f"path.tmpdir: {self.folder} is in use by another worker process{by}; two workers "
                "sharing a folder would share one host identity: give each worker its own path.tmpdir"
            ) from None
        # the pid is for the message above only: the lock itself is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a process taking it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def leftover_jobs(tasks_dir: Path) -> list[int]:
    """Processes whose job scratch folder is under ``tasks_dir``: jobs of an earlier worker.

    Only a process of this folder's lock holder may call it: every job there is then an
    orphan. A job that emptied its own environment is not found.
    """
    prefix = SCRATCH_VARIABLE + os.fsencode(str(Path(tasks_dir).absolute())) + b"/"
    me = os.getpid()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone, or not ours to read
            continue
        if any(v.startswith(prefix) for v in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def kill_leftover_jobs(tasks_dir: Path) -> int:
    """SIGKILL the leftover jobs under ``tasks_dir`` and their trees; how many processes."""
    pids = leftover_jobs(tasks_dir)
    killed: set[int] = set()
    for pid in pids:
        for p in [pid, *process_tree(pid).pids]:
            if p in killed:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
                killed.add(p)
    if killed:
        log.warning(
            "killed %d process(es) left by the jobs of an earlier worker in %s", len(killed), tasks_dir
        )
    return len(killed)
