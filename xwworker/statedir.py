"""The worker's state folder (``path.tmpdir``): one worker process at a time, nothing left over.

The folder holds the host identity the server gave (``xwworker.host``) and its credential
(``xwworker.hostkey``, 0600: see xwworker.hostlogin), the download cache,
the jobs' scratch folders and results. Two worker processes sharing it would be one host on
the server: each one's work requests and heartbeats name only its own tasks, so the server
would release the other's at once, and each would remove the other's scratch folders at its
start. So a worker holds an exclusive lock on ``xwworker.lock`` in the folder for its whole
life (:class:`StateLock`). The kernel drops the lock when the process dies, even by SIGKILL:
a restarted worker never finds a stale one, resumes the host identity and tells the server
it holds no task, so its predecessor's tasks go back to the queue at once.

The folder belongs to one deployment and identity (``login@server``): the worker records it in
``xwworker.deployment`` when it takes the folder (:func:`claim_folder`) and refuses a folder
that another deployment's worker recorded, and the ``xwworker`` commands act on the process a
pid file names only if it holds the lock of a folder recorded for their own deployment
(:func:`worker_of`): a volunteer attached to several projects never stops, pauses or reports
one project's worker with another's command. The folder and its subfolders are private (0700):
the cache holds other people's inputs, the scratch folders their jobs' files.

Jobs do not outlive their worker. Under bubblewrap the kernel ends a job's whole pid
namespace when the worker dies (``--die-with-parent``). Without it, the job's first process
gets SIGKILL from the kernel when the worker goes (its runner sets the parent-death
signal), but what it started does not: the :class:`Undertaker`, a small process started
with the worker, waits for the worker's end (its pipe from the worker closes, however the
worker died) and then kills every process left under the folder's scratch folders
(:func:`kill_leftover_jobs`), unless a new worker has taken the folder meanwhile (that one
does the same at its start).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from xwcommon.errors import ConfigError

from .sandbox import process_tree

__all__ = [
    "DEPLOYMENT_NAME",
    "LOCK_NAME",
    "StateLock",
    "Undertaker",
    "claim_folder",
    "folder_deployment",
    "kill_leftover_jobs",
    "leftover_jobs",
    "make_private_dir",
    "worker_of",
]

log = logging.getLogger(__name__)

LOCK_NAME = "xwworker.lock"
#: the file naming the deployment and identity (``login@server …``) whose worker uses the folder
DEPLOYMENT_NAME = "xwworker.deployment"
PRIVATE_MODE = 0o700
#: the variable every job's environment carries: its scratch folder (see Executor._environment)
SCRATCH_VARIABLE = b"XWSCRATCHPATH="
#: how long a worker waits for the folder's lock before it refuses to start: the undertaker
#: of a worker that just died holds it for the moment it takes to kill what is left
LOCK_WAIT_S = 2.0
LOCK_RETRY_S = 0.05
#: what a worker that stops normally tells its undertaker before closing the pipe
STOPPED = b"stopped\n"
#: how long the undertaker of a dead worker waits for the folder's lock (see Undertaker)
DEATH_LOCK_WAIT_S = 5.0


class StateLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/xwworker.lock``, which names its holder's pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait_s: float = LOCK_WAIT_S, refuse_live: bool = True) -> None:
        """Take the lock, waiting up to ``wait_s``; :class:`ConfigError` naming the folder when
        another process holds it. With ``refuse_live``, at once when that is a live worker
        program (an undertaker, which lets go soon, is waited for)."""
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            other = self.holder()
            # only an undertaker lets go soon (it holds the lock for the moment it takes to kill
            # what a dead worker left): a live worker holding it is refused at once
            live = refuse_live and other is not None and _live_worker(other)
            if time.monotonic() >= deadline or live:
                by = f" (pid {other})" if other else ""
                raise ConfigError(
                    f"path.tmpdir: {self.folder} is in use by another worker process{by}; two workers "
                    "sharing a folder would share one host identity: give each worker its own path.tmpdir"
                )
            time.sleep(LOCK_RETRY_S)

    def holder(self) -> int | None:
        """The pid the lock file names (the holder's, while it is held)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
            return int(text) if text else None
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        if self._fd is not None:
            return True
        make_private_dir(self.folder)
        try:
            # not inherited by jobs (Python opens non-inheritable): a job that outlived its
            # worker must not keep the folder locked
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"path.tmpdir: cannot use {self.folder}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        # the pid is for messages only: the lock itself is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return True

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


def host_key_path(folder: Path) -> Path:
    """Where the host credential the server gave is kept (0600)."""
    return folder / "xwworker.hostkey"


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` and its missing parents, mode 0700; make an existing one of ours 0700.

    :class:`ConfigError` naming ``path.tmpdir`` when the folder belongs to another local
    user (someone made it first in a shared temp folder) or cannot be made. A shared folder
    (sticky, as ``/tmp`` itself) is left as it is.
    """
    folder = Path(folder)
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            with contextlib.suppress(FileExistsError):
                p.mkdir(mode=PRIVATE_MODE)
        st = folder.stat()
        if st.st_uid != os.getuid():
            raise ConfigError(
                f"path.tmpdir: {folder} belongs to another user (uid {st.st_uid}); a worker keeps "
                "private files there: remove it or set path.tmpdir to a folder of yours"
            )
        if st.st_mode & 0o077 and not st.st_mode & stat.S_ISVTX:
            folder.chmod(PRIVATE_MODE)
        for p in missing[1:]:  # parents made here: the owner only too (umask may widen mkdir)
            p.chmod(PRIVATE_MODE)
    except OSError as exc:
        raise ConfigError(f"path.tmpdir: cannot use {folder}: {exc.strerror or exc}") from exc


def folder_deployment(folder: Path) -> str | None:
    """The deployment recorded in ``folder`` by the worker that last used it, or None."""
    try:
        return (Path(folder) / DEPLOYMENT_NAME).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def claim_folder(folder: Path, deployment: str) -> None:
    """Record ``deployment`` as the folder's; :class:`ConfigError` if another one's is recorded.

    Call it holding the folder's lock. Another deployment's folder holds that deployment's
    host identity: used here it would be lost there, and this worker would announce a host
    its own server never made.
    """
    recorded = folder_deployment(folder)
    if recorded is not None and recorded != deployment:
        raise ConfigError(
            f"path.tmpdir: {folder} is the state folder of the worker of {recorded}, not of "
            f"{deployment}; give each deployment's worker its own path.tmpdir (unset, it is one "
            "folder per deployment)"
        )
    if recorded is None:
        path = Path(folder) / DEPLOYMENT_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(deployment + "\n", encoding="utf-8")
        os.replace(tmp, path)


def worker_of(folder: Path, deployment: str, pid: int) -> bool:
    """Whether ``pid`` is the worker of ``deployment`` using ``folder``: it holds the folder's
    lock and the folder is recorded for that deployment.

    A pid file alone cannot say it: two deployments' configs may name the same pid file, and
    a pid in it may be another deployment's worker.
    """
    return StateLock(folder).holder() == pid and folder_deployment(folder) == deployment


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


class Undertaker:
    """A process that outlives its worker for a moment, to kill the jobs the worker left.

    It reads a pipe from the worker until its end: the kernel closes the pipe when the worker
    exits, even by SIGKILL. A worker that stops normally writes :data:`STOPPED` first, while
    it still holds the folder's lock: the undertaker then just exits. Otherwise the worker
    died: the undertaker takes the folder's lock, kills what runs under the scratch folders
    and exits. A dying process's files are closed one by one, so the lock may still be held
    for a moment after the pipe ended: it waits for it up to :data:`DEATH_LOCK_WAIT_S`
    (longer, a new worker took the folder, and that one kills the leftovers as it starts).
    """

    def __init__(self, folder: Path, tasks_dir: Path) -> None:
        self.folder = Path(folder)
        self.tasks_dir = Path(tasks_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # a session of its own: a Ctrl-C or a signal to the worker's group must not end it
        # before the worker; its stdin is the pipe whose end it waits for
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.folder), str(self.tasks_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the pipe and reap the process (call it while the folder's lock is held)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):  # an undertaker gone already: nothing to tell
                proc.stdin.write(STOPPED)
                proc.stdin.flush()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _live_worker(pid: int) -> bool:
    """Whether ``pid`` runs a worker program (``xwworker ...``, ``python -m xwworker ...``),
    not an undertaker (``python -m xwworker.statedir``)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        argv = proc.cmdline()[:3]
    except psutil.Error:
        return False
    return any(Path(part).name == "xwworker" for part in argv)


def _undertake(folder: Path, tasks_dir: Path) -> None:
    """The undertaker's body: wait for the worker's end, then kill what it left."""
    said = b""
    with contextlib.suppress(OSError):
        while chunk := sys.stdin.buffer.read(4096):
            said = (said + chunk)[-len(STOPPED) :]
    if said == STOPPED:
        return  # the worker stopped normally
    lock = StateLock(folder)
    try:
        # not refused at once: the dying worker may still look alive for a moment
        lock.acquire(wait_s=DEATH_LOCK_WAIT_S, refuse_live=False)
    except ConfigError:
        return  # a new worker took the folder over
    try:
        kill_leftover_jobs(tasks_dir)
    finally:
        lock.release()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="xwworker undertaker: %(message)s")
    _undertake(Path(sys.argv[1]), Path(sys.argv[2]))
