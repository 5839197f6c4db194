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
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import glob
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
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

    def preexec(self) -> Callable[[], None]:
        """A function for ``Popen(preexec_fn=...)`` setting the rlimits in the child.

        Everything is computed here, in the parent: between fork and exec the child may only
        make the setrlimit calls.
        """
        clamped = self.rlimits()

        def apply() -> None:
            for what, soft, hard in clamped:
                resource.setrlimit(what, (soft, hard))

        return apply

    def prlimit_options(self) -> list[str]:
        """The same limits as options of util-linux's ``prlimit`` (empty when none is set)."""
        return [f"{_PRLIMIT_OPTION[what]}={soft}:{hard}" for what, soft, hard in self.rlimits()]

    def rlimits(self) -> list[tuple[int, int, int]]:
        """``(RLIMIT_*, soft, hard)`` for each limit set, within this process's own hard limits."""
        settings: list[tuple[int, int, int]] = []
        if self.cpu_s:
            # SIGXCPU at the soft limit, SIGKILL a little later for a job that ignores it
            # (a job that is its pid namespace's init ignores SIGXCPU: the SIGKILL ends it)
            settings.append((resource.RLIMIT_CPU, self.cpu_s, self.cpu_s + 2))
        if self.memory_bytes:
            settings.append((resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes))
        if self.file_bytes:
            settings.append((resource.RLIMIT_FSIZE, self.file_bytes, self.file_bytes))
        if self.processes and os.getuid() != 0:
            # RLIMIT_NPROC counts every process and thread of the *real user*, not of the job:
            # the worker's own threads and, if the worker runs as the volunteer, their desktop
            # count too. So the limit is what this user runs now plus the job's allowance.
            # Under root it is not enforced at all (the kernel exempts uid 0 whatever its
            # capabilities, user namespace or not): there only the executor's watch on the
            # process tree holds a fork bomb, which is why that watch runs in every case.
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


class JobProcess:
    """A started job: its pid, then its return code and resource usage.

    The process is reaped with ``os.wait4``: the kernel's own account of the child's CPU
    time and peak memory, including every descendant it waited for (bwrap waits for the job).
    asyncio's child watchers only give the exit status. Where the kernel has pidfds (Linux
    5.3), the event loop watches the process's pidfd and reaps it when it becomes readable (at
    the exit): no thread per job. Elsewhere a thread waits for it.
    """

    def __init__(self, popen: subprocess.Popen[bytes], *, parent_rss_bytes: int = 0) -> None:
        self._popen = popen
        self.pid = popen.pid
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
            # bare descriptors: the child only needs them, no file objects around them
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
        return JobProcess(popen, parent_rss_bytes=parent_rss_bytes)

    def exec_chain(self, spec: RunSpec) -> tuple[list[str], Callable[[], None] | None]:
        """The command line (wrappers that set things up and exec the next) and, only where
        those wrappers are missing, a function for the child to run before its exec."""
        argv = self.command(spec)
        steps: list[Callable[[], None]] = []
        options = spec.limits.prlimit_options()
        if options and (prlimit := prlimit_path()) is not None:
            # prlimit sets the limits and execs the job in the same process. A preexec_fn
            # would do it too, but forces a full fork of the worker: measured here, 14 ms per
            # job for an 80 MB worker, against 0.2 ms for the vfork Popen uses without it
            argv = [prlimit, *options, "--", *argv]
        elif options:
            steps.append(spec.limits.preexec())
        if not self.dies_with_parent:
            if (setpriv := setpriv_path()) is not None:
                argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
            else:
                steps.append(_die_with_parent())
        if not steps:
            return argv, None

        def preexec() -> None:
            for step in steps:
                step()

        return argv, preexec


def _open_append(path: Path) -> int:
    """``open(path, "ab")``'s descriptor, without the file object."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)


@functools.cache
def setpriv_path() -> str | None:
    """util-linux's ``setpriv``, which sets the parent-death signal and then execs the job."""
    return shutil.which("setpriv")


_PR_SET_PDEATHSIG = 1


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
    # --as-pid-1: the job itself is its pid namespace's init, with no bwrap init in between
    # that would exit without reaping it; so the outer bwrap reaps the job and the job's CPU
    # time and peak memory reach the worker's wait4. Signals from the worker (outside the
    # namespace) still reach it, and when it exits the kernel kills what it left behind.
    args += ["--as-pid-1", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        # bwrap run by root keeps every capability unless told otherwise
        args += ["--cap-drop", "ALL"]
    args += system_binds(network=network)
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    scratch = str(spec.cwd)
    # after --tmpfs /tmp: a scratch dir under /tmp is then the only thing visible there
    args += ["--bind", scratch, scratch, "--chdir", scratch, "--"]
    return args + spec.argv


class BubblewrapRunner(LocalRunner):
    """Starts the job under bubblewrap (see the module docstring)."""

    name = "bubblewrap"
    overhead_processes = BWRAP_OVERHEAD_PROCESSES
    signals_as_exit_codes = True
    dies_with_parent = True

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
    spec = RunSpec(
        argv=["true"], cwd=probe_dir, env={"PATH": "/usr/bin:/bin"}, stdin=None, stdout=Path(), stderr=Path()
    )
    argv = bwrap_argv(path, spec)
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
