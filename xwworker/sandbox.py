"""Confinement of a job: resource limits (always) and the bubblewrap sandbox (where it runs).

Limits come in two layers. In the child, before the app starts, ``setrlimit`` bounds each
process: CPU seconds, address space, file size and (for an unprivileged worker) the number
of processes. Around it, the executor watches the job's process tree from outside
(:func:`process_tree`): the tree's size, its summed resident memory and its wall-clock time;
a job past one of them is killed and ends as an ERROR naming the limit's key.

:class:`BubblewrapRunner` starts the job under ``bwrap``: a root of its own with only chosen
system folders bound read-only, a private ``/tmp``, the task's scratch directory the only
writable place (bound at its own path, the job's working directory), no network, no IPC, a
pid namespace of its own, no access to the volunteer's home. :func:`choose_runner` probes once
whether bwrap can run here and otherwise falls back to the plain runner with the reason, which
the worker must print as a warning.

A worker running as root does not run its jobs as root: each running job gets an unprivileged
uid of its own (:class:`JobUsers`), so that the kernel enforces ``RLIMIT_NPROC`` (it exempts
uid 0) and one ``kill(-1)`` sent as that uid ends everything the job started, orphans
included (:func:`kill_user`). Where the worker can write the cgroup tree (v2 with pids and
memory delegated, else v1), each job also gets a cgroup of its own with ``pids.max`` and a
memory limit (:class:`Cgroups`). The crossing: the job is handed its stdin and output files as
open descriptors and its scratch directory (owned by its uid) as its working directory; under
bubblewrap the scratch directory is bound into the sandbox, whose folders above it are the
sandbox's own. The job never needs to walk the worker's folders, which stay closed to other
users.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import glob
import grp
import logging
import os
import pwd
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# defaults of the limit.* keys; 0 in the config means "no limit"
LIMIT_CPU_S = 24 * 3600
LIMIT_MEMORY_BYTES = 4 * 1024**3
LIMIT_FILE_BYTES = 4 * 1024**3
LIMIT_PROCESSES = 256
LIMIT_WALL_S = 48 * 3600.0

#: processes bwrap itself adds to a job's tree (the outer bwrap)
BWRAP_OVERHEAD_PROCESSES = 1

PROBE_TIMEOUT_S = 10.0

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ResourceLimits:
    """Per-job limits; ``0`` switches one off. Each field is the ``limit.*`` key of its name."""

    cpu_s: int = LIMIT_CPU_S  # limit.cpu_s: CPU seconds of each process
    memory_bytes: int = LIMIT_MEMORY_BYTES  # limit.memory_bytes: address space per process, RSS of the tree
    file_bytes: int = LIMIT_FILE_BYTES  # limit.file_bytes: size of any one file written
    processes: int = LIMIT_PROCESSES  # limit.processes: processes in the job's tree
    wall_s: float = LIMIT_WALL_S  # limit.wall_s: wall-clock seconds from start to end

    def preexec(self, user: JobUser | None = None) -> Callable[[], None]:
        """A function for ``Popen(preexec_fn=...)`` setting the rlimits in the child.

        Everything is computed here, in the parent: between fork and exec the child may only
        make the setrlimit calls.
        """
        clamped = self.rlimits(user)

        def apply() -> None:
            for what, soft, hard in clamped:
                resource.setrlimit(what, (soft, hard))

        return apply

    def prlimit_options(self, user: JobUser | None = None) -> list[str]:
        """The same limits as options of util-linux's ``prlimit`` (empty when none is set)."""
        return [f"{_PRLIMIT_OPTION[what]}={soft}:{hard}" for what, soft, hard in self.rlimits(user)]

    def rlimits(self, user: JobUser | None = None) -> list[tuple[int, int, int]]:
        """``(RLIMIT_*, soft, hard)`` for each limit set, within this process's own hard limits.

        ``user`` is the job's own uid when the worker runs as root (see :class:`JobUsers`)."""
        settings: list[tuple[int, int, int]] = []
        if self.cpu_s:
            # SIGXCPU at the soft limit, SIGKILL a little later for a job that ignores it
            # (a job that is its pid namespace's init ignores SIGXCPU: the SIGKILL ends it)
            settings.append((resource.RLIMIT_CPU, self.cpu_s, self.cpu_s + 2))
        if self.memory_bytes:
            settings.append((resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes))
        if self.file_bytes:
            settings.append((resource.RLIMIT_FSIZE, self.file_bytes, self.file_bytes))
        if self.processes and user is not None:
            # a uid of the job's own, with nothing else running under it: the kernel holds the
            # job to its allowance, plus one so that the executor's watch sees it go past
            n = self.processes + BWRAP_OVERHEAD_PROCESSES + 1
            settings.append((resource.RLIMIT_NPROC, n, n))
        elif self.processes and os.getuid() != 0:
            # RLIMIT_NPROC counts every process and thread of the *real user*, not of the job:
            # the worker's own threads and, if the worker runs as the volunteer, their desktop
            # count too. So the limit is what this user runs now plus the job's allowance.
            # Under root it is not enforced at all (the kernel exempts uid 0 whatever its
            # capabilities, user namespace or not): which is why a root worker runs its jobs
            # under uids of their own (the branch above).
            n = user_task_count(os.getuid()) + self.processes + BWRAP_OVERHEAD_PROCESSES
            settings.append((resource.RLIMIT_NPROC, n, n))
        return [(what, *_clamp(what, soft, hard)) for what, soft, hard in settings]


_PRLIMIT_OPTION = {
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NPROC: "--nproc",
}


@functools.cache
def prlimit_path() -> str | None:
    """util-linux's ``prlimit``, which sets the limits and then execs the job, if installed."""
    return shutil.which("prlimit")


def _own_peak_rss_bytes() -> int:
    """This process's peak resident memory so far (VmHWM).

    A child started with vfork runs in this process's memory until its exec, and the
    kernel then carries that memory's peak, not its current size, into the child's
    ``ru_maxrss``: a job's figure at or under this one may be the worker's, not the job's.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _clamp(what: int, soft: int, hard: int) -> tuple[int, int]:
    """An unprivileged process cannot raise its hard limit: stay under the current one."""
    _, current_hard = resource.getrlimit(what)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    return soft, hard


def user_task_count(uid: int) -> int:
    """Tasks (processes and threads) whose owner is ``uid``, as RLIMIT_NPROC counts them."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:  # gone meanwhile
            continue
    return count


@dataclass
class TreeUsage:
    processes: int
    rss_bytes: int  # summed over the tree
    pids: list[int]
    largest_rss_bytes: int = 0  # of its largest process


def process_tree(pid: int) -> TreeUsage:
    """``pid`` and all its descendants, their number and summed resident memory.

    Walks ``/proc/<pid>/task/<tid>/children`` so the cost follows the job's tree, not the
    machine's process table.
    """
    pids: list[int] = []
    rss_pages = largest_pages = 0
    todo = [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm", "rb") as fh:
                pages = int(fh.read().split()[1])
            rss_pages += pages
            largest_pages = max(largest_pages, pages)
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children", "rb") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
        pids.append(p)
    return TreeUsage(len(pids), rss_pages * _PAGE_SIZE, pids, largest_pages * _PAGE_SIZE)


def signal_tree(pid: int, sig: int) -> int:
    """Send ``sig`` to ``pid``'s process group and to every process of its tree; the count.

    The group first: that stops (or continues) most of a job at once, so it cannot fork
    while the tree is walked. The walk then reaches what left the group (setsid, bubblewrap's
    own pid namespace); a second walk catches children forked in between.
    """
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)
    signalled: set[int] = set()
    for _ in range(2):
        fresh = [p for p in process_tree(pid).pids if p not in signalled]
        if not fresh:
            break
        for p in fresh:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
            signalled.add(p)
    return len(signalled)


# -- the job's own user (a worker running as root) ------------------------------------------------
#: the uids jobs of a root worker run under: systemd's range for dynamic users (61184-65519),
#: of which a uid is taken only when no account, group or process uses it
JOB_UID_FIRST = 61184
JOB_UID_LAST = 65519

_taken_lock = threading.Lock()
#: uids given to running jobs by any :class:`JobUsers` of this process
_taken_uids: set[int] = set()
#: the lock file held for each of them: other worker processes of this machine (another
#: deployment's worker, a second worker of the same one) skip a uid whose lock is held
_uid_locks: dict[int, int] = {}
#: where those locks live: root's alone (only a root worker gives jobs uids)
UID_LOCK_DIR = Path("/run/xwworker/job-uids")


@dataclass(frozen=True)
class JobUser:
    """The unprivileged identity one job runs under (its group has the same number)."""

    uid: int
    gid: int


class JobUsers:
    """Hands each running job of a root worker an unprivileged uid of its own.

    ``RLIMIT_NPROC`` counts every process of a uid on the machine: with a uid per running job
    the limit is the job's own, and :func:`kill_user` ends exactly that job. A uid is skipped
    while an account or group names it or a process (a zombie included) still runs under it.
    """

    def __init__(self, first_uid: int = JOB_UID_FIRST, last_uid: int = JOB_UID_LAST) -> None:
        if not 0 < first_uid <= last_uid:
            raise ValueError(f"bad job uid range {first_uid}-{last_uid}")
        self.first_uid, self.last_uid = first_uid, last_uid

    @classmethod
    def for_this_process(cls) -> JobUsers | None:
        """A pool when this process runs as root (only root can switch uids), else None."""
        return cls() if os.geteuid() == 0 else None

    lock_dir: Path = UID_LOCK_DIR

    def acquire(self) -> JobUser:
        busy = _uids_with_tasks()
        with _taken_lock:
            folder = _lock_folder(self.lock_dir)
            for uid in range(self.first_uid, self.last_uid + 1):
                if uid in _taken_uids or uid in busy or _named(uid):
                    continue
                fd = _lock_uid(folder, uid)
                if fd is None:  # another worker process of this machine runs a job under it
                    continue
                _taken_uids.add(uid)
                _uid_locks[uid] = fd
                return JobUser(uid, uid)
        raise OSError(f"no free uid for a job in {self.first_uid}-{self.last_uid}")

    def release(self, user: JobUser) -> None:
        with _taken_lock:
            _taken_uids.discard(user.uid)
            fd = _uid_locks.pop(user.uid, None)
            if fd is not None:
                os.close(fd)


def _lock_folder(folder: Path) -> Path:
    """The folder of the uid locks, made root's and 0700; refused if anyone else could
    have made or changed it (a planted folder would let a local user steal jobs' uids)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"{folder} must be a folder of uid {os.geteuid()} closed to others (0700)")
    return folder


def _lock_uid(folder: Path, uid: int) -> int | None:
    """A descriptor holding the uid's lock file, or None when another process holds it."""
    fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _named(uid: int) -> bool:
    """An account or a group uses this number."""
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


def _uids_with_tasks() -> set[int]:
    uids: set[int] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                uids.add(entry.stat().st_uid)
    return uids


def live_task_count(uid: int) -> int:
    """Processes of ``uid`` that still run (zombies left out)."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            count += 1
    return count


@functools.cache
def kill_path() -> str | None:
    """procps' ``kill``, which can send ``kill(-1)``."""
    return shutil.which("kill")


def kill_user(user: JobUser, *, attempts: int = 5) -> int:
    """SIGKILL every process of the job's uid; the processes still alive after (0 normally).

    ``kill(-1)`` sent *as that uid* reaches every process the uid runs, in any process group
    or pid namespace, and the kernel walks them under the lock that ``fork`` takes to add a
    process: a fork bomb cannot slip a child past it. A sweep by pid is the fallback.
    """
    setpriv, kill = setpriv_path(), kill_path()
    left = 0
    for _ in range(attempts):
        if setpriv is not None and kill is not None:
            subprocess.run(
                [
                    setpriv,
                    f"--reuid={user.uid}",
                    f"--regid={user.gid}",
                    "--clear-groups",
                    "--",
                    kill,
                    "-KILL",
                    "-1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "LANG": "C"},
                check=False,
            )
        else:
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        if entry.stat().st_uid == user.uid:
                            os.kill(int(entry.name), signal.SIGKILL)
        left = live_task_count(user.uid)
        if not left:
            return 0
    return left


# -- cgroups: pids.max and a memory limit per job ------------------------------------------------------
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class JobCgroup:
    """The cgroup (v2) or cgroups (v1, one per controller) of one job."""

    version: int
    #: the job's folder of each controller ("pids", "memory"); one folder for both in v2
    dirs: dict[str, Path]

    @property
    def folders(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.folders]

    def _read(self, controller: str, name: str) -> str:
        d = self.dirs.get(controller)
        if d is None:
            return ""
        try:
            return (d / name).read_text()
        except OSError:
            return ""

    def processes(self) -> int | None:
        """Tasks in the job's cgroup now (zombies not yet reaped included); None if unknown."""
        text = self._read("pids", "pids.current").strip()
        return int(text) if text.isdigit() else None

    def forks_refused(self) -> int:
        """Forks the kernel refused the job because its cgroup was at ``pids.max``."""
        for line in self._read("pids", "pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0

    def oom_kills(self) -> int:
        """Processes of the job the kernel killed for going past its memory limit."""
        text = self._read("memory", "memory.events" if self.version == 2 else "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def kill(self) -> None:
        """SIGKILL everything in the cgroup at once, where the kernel offers it (v2's cgroup.kill)."""
        if self.version == 2:
            for d in self.folders:
                with contextlib.suppress(OSError):
                    (d / "cgroup.kill").write_text("1")

    def remove(self, *, timeout_s: float = 2.0) -> bool:
        """Remove the job's cgroup folders (emptied first); False if one is still busy."""
        deadline = time.monotonic() + timeout_s
        for d in self.folders:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s: %s", d, exc.strerror or exc)
                        return False
                    time.sleep(0.02)
        return True


@dataclass(frozen=True)
class Cgroups:
    """Where this worker can make a cgroup per job: the parent folders, per controller."""

    version: int
    #: v2: {"": the worker's own cgroup}; v1: {"pids": ..., "memory": ...}
    parents: dict[str, Path]

    @classmethod
    def probe(cls, root: Path = CGROUP_ROOT) -> Cgroups | None:
        """The cgroups this process may make job cgroups in, or None (then rlimits and the
        executor's watch alone hold the job). Looked at once, when the worker starts."""
        if os.geteuid() != 0:
            return None
        try:
            own = _own_cgroups()
        except OSError:
            return None
        v2 = own.get("")
        if v2 is not None:
            mount = _cgroup2_mount()
            if mount is not None:
                base = mount / v2.lstrip("/")
                try:
                    delegated = (base / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = []
                if {"pids", "memory"} <= set(delegated) and os.access(base, os.W_OK):
                    return cls(2, {"": base})
        parents: dict[str, Path] = {}
        for controller in ("pids", "memory"):
            path = own.get(controller)
            base = root / controller / (path or "/").lstrip("/")
            if path is None or not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
                return None
            parents[controller] = base
        return cls(1, parents)

    def create(self, name: str, limits: ResourceLimits, overhead_processes: int) -> JobCgroup:
        """A new cgroup for one job with its limits written; OSError if it cannot be made."""
        # the job's allowance exactly: the cgroup refuses the fork past it (and counts that in
        # pids.events, which the executor reads) before RLIMIT_NPROC, set one higher, would
        max_tasks = limits.processes + overhead_processes if limits.processes else 0
        made: dict[str, Path] = {}
        try:
            if self.version == 2:
                d = self.parents[""] / name
                _fresh_dir(d)
                made.update(pids=d, memory=d)
                if max_tasks:
                    (d / "pids.max").write_text(str(max_tasks))
                if limits.memory_bytes:
                    (d / "memory.max").write_text(str(limits.memory_bytes))
                    with contextlib.suppress(OSError):
                        (d / "memory.swap.max").write_text("0")
            else:
                pids = self.parents["pids"] / name
                _fresh_dir(pids)
                made["pids"] = pids
                if max_tasks:
                    (pids / "pids.max").write_text(str(max_tasks))
                memory = self.parents["memory"] / name
                _fresh_dir(memory)
                made["memory"] = memory
                if limits.memory_bytes:
                    (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
                    with contextlib.suppress(OSError):  # only where swap is accounted
                        (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        except OSError:
            JobCgroup(self.version, made).remove(timeout_s=0)
            raise
        return JobCgroup(self.version, made)


def _fresh_dir(d: Path) -> None:
    """Make cgroup folder ``d``; one left by a worker that died is removed first (if empty)."""
    try:
        d.mkdir()
    except FileExistsError:
        d.rmdir()
        d.mkdir()


def _own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's cgroup per v1 controller, and its v2 cgroup under the key ``""``."""
    own: dict[str, str] = {}
    with open(path, encoding="ascii") as fh:
        for line in fh:
            _, controllers, where = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = where
    return own


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


# -- starting a job ---------------------------------------------------------------------------
@dataclass
class RunSpec:
    """Everything a runner needs to start a job's process."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stdin: Path | None
    stdout: Path
    stderr: Path
    limits: ResourceLimits = field(default_factory=lambda: ResourceLimits())
    #: the job's app declared it needs the network (granted only where the volunteer allows it)
    network: bool = False
    #: the unprivileged uid the job runs under (a worker running as root), else None
    user: JobUser | None = None
    #: the job's own cgroup, which the job joins before its exec, else None
    cgroup: JobCgroup | None = None


class JobProcess:
    """A started job: its pid, then its return code and resource usage.

    The process is reaped with ``os.wait4``: the kernel's own account of the child's CPU
    time and peak memory, including every descendant it waited for (bwrap waits for the job).
    asyncio's child watchers only give the exit status. Where the kernel has pidfds (Linux
    5.3), the event loop watches the process's pidfd and reaps it when it becomes readable (at
    the exit): no thread per job. Elsewhere a thread waits for it.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        parent_rss_bytes: int = 0,
        user: JobUser | None = None,
        cgroup: JobCgroup | None = None,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        #: the job's own uid and cgroup, if any: they reach what left the job's process tree
        self.user = user
        self.cgroup = cgroup
        #: the worker's peak RSS when it started the job. The child's ``ru_maxrss`` starts from
        #: the memory it shares with the worker until its exec (see _own_peak_rss_bytes), so
        #: a figure at or under this one may be the worker's, not the job's.
        self.parent_rss_bytes = parent_rss_bytes
        #: the largest process RSS the executor saw while watching the job's tree
        self.sampled_rss_bytes = 0
        self.returncode: int | None = None
        self.rusage: resource.struct_rusage | None = None
        #: monotonic time of the SIGSTOP that suspended the job; None while it runs
        self.suspended_since: float | None = None
        #: seconds spent suspended before the current suspension
        self._suspended_s = 0.0
        loop = asyncio.get_running_loop()
        self._done: asyncio.Future[int] = loop.create_future()
        self._pidfd: int | None = None
        if not self._watch_pidfd(loop):
            threading.Thread(target=self._reap, args=(loop,), name=f"wait4-{self.pid}", daemon=True).start()

    def _watch_pidfd(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Reap the process from the event loop when its pidfd says it exited; False where
        pidfds or the loop's readers are not available."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return False
        try:
            fd = pidfd_open(self.pid)
        except OSError:  # an older kernel (or the process is reaped already: the thread says so)
            return False
        try:
            loop.add_reader(fd, self._exited, loop)
        except (NotImplementedError, OSError, ValueError):
            os.close(fd)
            return False
        self._pidfd = fd
        return True

    def _exited(self, loop: asyncio.AbstractEventLoop) -> None:
        """The pidfd is readable: the process exited (a zombie now); reap it."""
        rusage: resource.struct_rusage | None = None
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: nothing more to know
            returncode = 255
        else:
            if pid == 0:
                return  # not exited after all: keep watching
            returncode = os.waitstatus_to_exitcode(status)
        self._close_pidfd(loop)
        self._popen.returncode = returncode
        self._set(returncode, rusage)

    def _close_pidfd(self, loop: asyncio.AbstractEventLoop) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            os.close(fd)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        rusage: resource.struct_rusage | None = None
        try:
            _, status, rusage = os.wait4(self.pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: nothing more to know
            returncode = 255
        self._popen.returncode = returncode
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._set, returncode, rusage)

    def _set(self, returncode: int, rusage: resource.struct_rusage | None) -> None:
        self.returncode, self.rusage = returncode, rusage
        if not self._done.done():
            self._done.set_result(returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)

    def suspend(self, now: float) -> None:
        """SIGSTOP the job's whole tree (its CPU time stops advancing); no-op if suspended."""
        if self.suspended_since is None and self.returncode is None:
            signal_tree(self.pid, signal.SIGSTOP)
            self.suspended_since = now

    def resume(self, now: float) -> None:
        """SIGCONT the job's whole tree; no-op unless suspended."""
        if self.suspended_since is not None:
            signal_tree(self.pid, signal.SIGCONT)
            self._suspended_s += max(0.0, now - self.suspended_since)
            self.suspended_since = None

    def suspended_s(self, now: float) -> float:
        """Seconds the job has spent suspended so far (the wall-clock limit does not count them)."""
        current = now - self.suspended_since if self.suspended_since is not None else 0.0
        return self._suspended_s + max(0.0, current)


class Runner:
    """Starts a job's process. Subclasses (sandboxes) override :meth:`command` or :meth:`start`.

    The process must lead its own process group (so the executor can kill the job and
    everything it started), read ``spec.stdin`` (or /dev/null), write ``spec.stdout`` and
    ``spec.stderr`` and run under ``spec.limits``. ``start`` raises OSError when the program
    cannot be started.
    """

    name = "local"
    #: processes the runner itself adds to the job's tree (not counted against limit.processes)
    overhead_processes = 0
    #: the started process reports a job killed by signal N as exit code 128+N (a wrapper)
    signals_as_exit_codes = False
    #: the runner itself makes the job die when the worker does (bubblewrap's --die-with-parent)
    dies_with_parent = False
    #: the runner's command switches to the job's uid itself (see :func:`bwrap_argv`)
    switches_user_inside = False

    def command(self, spec: RunSpec) -> list[str]:
        return spec.argv

    async def start(self, spec: RunSpec) -> JobProcess:
        raise NotImplementedError


class LocalRunner(Runner):
    """Runs the binary directly, as the worker's user, in a new session, under the rlimits.

    The job dies with the worker: a worker killed outright (SIGKILL, OOM killer) cannot
    kill its jobs, and a job left running would hold a slot of the machine for a task the
    server gives to someone else. The kernel sends it SIGKILL when the worker goes
    (``PR_SET_PDEATHSIG``, set by util-linux's ``setpriv`` in the exec chain). What the job
    itself started in the background is ended by the next worker on this folder
    (:func:`xwworker.statedir.kill_leftover_jobs`).
    """

    async def start(self, spec: RunSpec) -> JobProcess:
        argv, preexec = self.exec_chain(spec)
        parent_rss_bytes = _own_peak_rss_bytes()
        with contextlib.ExitStack() as stack:
            stdin: IO[bytes] | int = (
                stack.enter_context(open(spec.stdin, "rb")) if spec.stdin else subprocess.DEVNULL
            )
            # bare descriptors: the child only needs them, no file objects around them. Opened
            # here, by the worker: a job running under a uid of its own gets them already open
            stdout = _open_append(spec.stdout)
            stack.callback(os.close, stdout)
            stderr = _open_append(spec.stderr)
            stack.callback(os.close, stderr)
            # the child has its own copies of the descriptors; ours are closed on leaving.
            # Popen blocks only until the exec, as asyncio's own subprocess start does; it is
            # used instead so that the JobProcess reaps the child with wait4 (see there).
            # Called from the event loop's thread, which lives as long as the worker: the
            # kernel sends the parent-death signal when the thread that forked goes.
            popen = subprocess.Popen(  # noqa: ASYNC220
                argv,
                cwd=spec.cwd,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=spec.env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=preexec,
            )
        return JobProcess(popen, parent_rss_bytes=parent_rss_bytes, user=spec.user, cgroup=spec.cgroup)

    def exec_chain(self, spec: RunSpec) -> tuple[list[str], Callable[[], None] | None]:
        """The command line (wrappers that set things up and exec the next) and, only where
        those wrappers are missing, a function for the child to run before its exec.

        From the outside in: a shell joins the job's cgroup (as root); setpriv switches to the
        job's uid (no groups, no new privileges: setuid programs cannot raise it back) and sets
        the parent-death signal; prlimit sets the rlimits; then the runner's command."""
        argv = self.command(spec)
        user = spec.user
        if user is not None and not self.switches_user_inside and Path(argv[0]).parent == spec.cwd:
            # the job cannot walk the worker's folders to its own binary: name it from its cwd
            argv = [f"./{Path(argv[0]).name}", *argv[1:]]
        steps: list[Callable[[], None]] = []
        options = spec.limits.prlimit_options(user)
        if options and (prlimit := prlimit_path()) is not None:
            # prlimit sets the limits and execs the job in the same process. A preexec_fn
            # would do it too, but forces a full fork of the worker: measured here, 14 ms per
            # job for an 80 MB worker, against 0.2 ms for the vfork Popen uses without it
            argv = [prlimit, *options, "--", *argv]
        elif options:
            steps.append(spec.limits.preexec(user))
        setpriv = setpriv_path()
        switch: list[str] = []
        if user is not None and not self.switches_user_inside:
            switch += _switch_options(user)
        if not self.dies_with_parent:
            switch += ["--pdeathsig", "KILL"]
        if switch and setpriv is not None:
            argv = [setpriv, *switch, "--", *argv]
        else:
            if not self.dies_with_parent:
                steps.append(_die_with_parent())
            if user is not None and not self.switches_user_inside:
                # without setpriv: switch in the child, after the rlimits (set as root), last
                steps.append(_become(user))
        if spec.cgroup is not None:
            if setpriv is not None or user is None:
                # the job joins its cgroup before anything of it runs, while still root
                join = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in spec.cgroup.procs_files)
                argv = ["/bin/sh", "-c", f'{join} && exec "$@"', "sh", *argv]
            else:
                steps.insert(0, _join_cgroup(spec.cgroup.procs_files))
        if not steps:
            return argv, None

        def preexec() -> None:
            for step in steps:
                step()

        return argv, preexec


def _become(user: JobUser) -> Callable[[], None]:
    """For the child before its exec: drop to the job's uid, its gid alone, no new privileges."""
    prctl = _libc().prctl

    def apply() -> None:
        os.setgroups([])
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
        prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    return apply


def _join_cgroup(procs_files: list[str]) -> Callable[[], None]:
    """For the child before its exec: move itself into the job's cgroup."""

    def apply() -> None:
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    return apply


def _open_append(path: Path) -> int:
    """``open(path, "ab")``'s descriptor, without the file object."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)


@functools.cache
def setpriv_path() -> str | None:
    """util-linux's ``setpriv``, which sets the parent-death signal and then execs the job."""
    return shutil.which("setpriv")


_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38


def _die_with_parent() -> Callable[[], None]:
    """For the child before its exec: SIGKILL when the worker dies (``PR_SET_PDEATHSIG``).

    The C function is looked up here, in the parent: between fork and exec the child may
    only make the call."""
    prctl = _libc().prctl

    def apply() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- bubblewrap -----------------------------------------------------------------------------------
# what of /etc a job may see: the dynamic loader's files, users and groups by name, time zone,
# certificates, Python's and the alternatives' links. Not the rest (no shadow, no ssh keys).
_ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "gai.conf",
    "mime.types",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
)
_NETWORK_ETC_ENTRIES = ("resolv.conf",)
_ROOT_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def system_binds(*, network: bool = False) -> list[str]:
    """bwrap options for the read-only system: /usr, the merged-/usr links, chosen /etc files,
    and the prefix of the Python running the worker (scripts find it through PATH).

    Looked up once per worker process (the system's layout does not change under it)."""
    return list(_system_binds(network))


@functools.cache
def _system_binds(network: bool) -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    etc = [*_ETC_ENTRIES, *(_NETWORK_ETC_ENTRIES if network else ())]
    etc += [os.path.basename(p) for p in sorted(glob.glob("/etc/python3*"))]
    for name in etc:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    prefix = os.path.realpath(sys.base_prefix)
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        # a pyenv, conda or toolcache Python: only its own folder, read-only
        args += ["--ro-bind", prefix, prefix]
    return tuple(args)


def bwrap_argv(bwrap: str, spec: RunSpec, *, network: bool = False) -> list[str]:
    """The full command line running ``spec`` under bubblewrap."""
    args = [bwrap, "--unshare-all"]
    if network:
        args.append("--share-net")
    user = spec.user
    if user is not None:
        # bwrap runs as root, without a user namespace (the job's uid must be a real one on the
        # host: RLIMIT_NPROC counts host uids, and a namespace's "root" would be host root);
        # it keeps only what setpriv needs to become the job's uid, and setpriv drops even that
        args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            args.append("--unshare-net")
    # --as-pid-1: the job itself is its pid namespace's init, with no bwrap init in between
    # that would exit without reaping it; so the outer bwrap reaps the job and the job's CPU
    # time and peak memory reach the worker's wait4. Signals from the worker (outside the
    # namespace) still reach it, and when it exits the kernel kills what it left behind.
    args += ["--as-pid-1", "--die-with-parent", "--new-session"]
    if user is not None:
        # what setpriv needs to switch, and bwrap to enter the scratch folder (the job's alone);
        # setpriv's switch to a non-zero uid clears them all
        args += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_DAC_READ_SEARCH"):
            args += ["--cap-add", cap]
    elif os.geteuid() == 0:
        # bwrap run by root keeps every capability unless told otherwise
        args += ["--cap-drop", "ALL"]
    args += system_binds(network=network)
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    scratch = str(spec.cwd)
    # after --tmpfs /tmp: a scratch dir under /tmp is then the only thing visible there; the
    # folders above it inside the sandbox are bwrap's own, so the job's uid can walk to it
    if user is not None:
        # bwrap makes the folders above the bind owner-only: the job's uid could not pass them
        for folder in reversed(spec.cwd.parents[:-1]):
            if str(folder) != "/tmp":
                args += ["--perms", "0711", "--dir", str(folder)]
    args += ["--bind", scratch, scratch, "--chdir", scratch, "--"]
    if user is not None:
        # The sandbox's pid 1 stays the (capless) root shell that waits for the job: the outer
        # bwrap, root without CAP_KILL once it dropped its capabilities, may not signal another
        # uid, so a parent-death signal it sends to the job is refused; to this shell it is not,
        # and when the shell dies the kernel ends its whole pid namespace, the job with it. The
        # shell waits for the job, so the job's CPU time and peak memory still reach wait4
        args += ["/bin/sh", "-c", '"$@"', "sh", _setpriv_or_fail(), *_switch_options(user), "--"]
    return args + spec.argv


def _switch_options(user: JobUser) -> list[str]:
    """setpriv's options making a root process the job's uid, with nothing of root left."""
    return [
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        # setuid and file-capability programs (su, mount, ping) cannot raise it back
        "--no-new-privs",
    ]


def _setpriv_or_fail() -> str:
    setpriv = setpriv_path()
    if setpriv is None:
        raise OSError("setpriv (util-linux) is needed to run jobs under a uid of their own")
    return setpriv


class BubblewrapRunner(LocalRunner):
    """Starts the job under bubblewrap (see the module docstring)."""

    name = "bubblewrap"
    overhead_processes = BWRAP_OVERHEAD_PROCESSES
    signals_as_exit_codes = True
    dies_with_parent = True
    switches_user_inside = True

    def __init__(self, bwrap: str, *, network: bool = False) -> None:
        self.bwrap = bwrap
        self.network = network

    def command(self, spec: RunSpec) -> list[str]:
        # the network is shared only with a job whose app declared it needs it, and only
        # where the volunteer allows it (``sandbox.network``)
        return bwrap_argv(self.bwrap, spec, network=self.network and spec.network)


def probe_bwrap(bwrap: str | None = None) -> tuple[str | None, str]:
    """``(path, "")`` when bubblewrap can run a sandbox like a job's here, else ``(None, why)``."""
    path = bwrap or shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap (bwrap) is not installed"
    probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    users = JobUsers.for_this_process()
    user = users.acquire() if users is not None else None
    spec = RunSpec(
        argv=["true"],
        cwd=probe_dir,
        env={"PATH": "/usr/bin:/bin"},
        stdin=None,
        stdout=Path(),
        stderr=Path(),
        limits=ResourceLimits(0, 0, 0, 0, 0),
        user=user,
    )
    try:
        # as the jobs will run it: under a job's uid when this worker is root
        argv, _ = BubblewrapRunner(path).exec_chain(spec)
    finally:
        if users is not None and user is not None:
            users.release(user)
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=spec.env,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path} cannot run: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
        return None, f"{path} cannot create a sandbox here: {why}"
    return path, ""


@dataclass(frozen=True)
class RunnerChoice:
    runner: Runner
    #: why jobs run without the sandbox; empty when they run in it. The worker logs it as a warning.
    warning: str


def choose_runner(*, enable: bool = True, network: bool = False, bwrap: str | None = None) -> RunnerChoice:
    """The bubblewrap runner when ``sandbox.enable`` and bwrap runs here, else the plain one."""
    consequence = (
        "jobs run WITHOUT a sandbox (resource limits still apply): they can read what this account "
        "can read and use the network; run the worker under a dedicated unprivileged account"
    )
    if not enable:
        return RunnerChoice(LocalRunner(), f"sandbox.enable is false: {consequence}")
    path, why = probe_bwrap(bwrap)
    if path is None:
        return RunnerChoice(LocalRunner(), f"{why}: {consequence}")
    log.info(
        "jobs run in a bubblewrap sandbox (%s)%s",
        path,
        ", with network for apps that declare they need it" if network else ", without network",
    )
    return RunnerChoice(BubblewrapRunner(path, network=network), "")
