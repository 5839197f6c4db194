"""Running a program in the background: pid file, detached start, graceful stop, status.

Generic over the program: the server and the worker each describe themselves with a
:class:`DaemonSpec` (their foreground command, pid file, output file and a readiness
probe) and get XWHEP's ``start|stop|restart|status`` verbs from here.

The foreground process owns the pid file (:class:`PidFile`): it writes its own pid on
start and removes it on exit, so ``stop`` and ``status`` also see a program that was
started in the foreground (``console``) or by a service manager. A pid file is trusted
only if its pid is alive, is a process of this program and started before the file was
written; anything else is a stale file left by a crash (or a recycled pid) and counts as
stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from .errors import XWError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a first start may run database migrations
STOP_TIMEOUT_S = 30.0  # time for a graceful stop before SIGKILL
POLL_INTERVAL_S = 0.1
#: a process' start time is known to about a second (the kernel's boot time is in whole
#: seconds), so it may look slightly younger than the pid file it wrote
CREATE_TIME_SLACK_S = 2.0
LOG_TAIL_LINES = 30

#: children started by :func:`start` in this process, kept so that they are reaped (and
#: their Popen objects do not warn) when :func:`stop` ends them from the same process
_children: dict[int, subprocess.Popen[bytes]] = {}


class DaemonError(XWError):
    """Raised when a background program cannot be started, stopped or found as expected."""

    code = "daemon"
    http_status = 500


@dataclass
class DaemonSpec:
    """How to run one program in the background."""

    #: the program's name, e.g. ``xwserver``; a process is ours only if its command line mentions it
    name: str
    #: the foreground command (it must write ``pid_file`` through :class:`PidFile`)
    argv: Sequence[str]
    pid_file: Path
    #: stdout and stderr of the detached process (appended to)
    out_file: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    #: returns True once the program answers (e.g. its HTTPS port); None: the pid file is enough
    ready: Callable[[], bool] | None = None
    #: where the program says it can be reached, shown by ``status``
    address: str = ""
    #: further files whose tail helps to explain a failed start (e.g. the program's log)
    log_files: Sequence[Path] = field(default_factory=tuple)


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    pid: int | None
    #: a pid file was found but its process is gone or is not ours
    stale: bool = False


# -- the pid file --------------------------------------------------------------------------------
def read_pid(pid_file: Path) -> int | None:
    """The pid written in ``pid_file``, or None if there is no readable pid."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    first = text.split(maxsplit=1)[0] if text else ""
    return int(first) if first.isdigit() and int(first) > 0 else None


def is_our_process(pid: int, name: str, pid_file: Path) -> bool:
    """Whether ``pid`` is alive, mentions ``name`` on its command line and predates ``pid_file``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        # Another user's process: it cannot be ours to manage.
        return False
    if name not in cmdline:
        return False
    try:
        written = pid_file.stat().st_mtime
    except OSError:
        return False
    return created <= written + CREATE_TIME_SLACK_S


def status(spec: DaemonSpec) -> DaemonStatus:
    """Running or not, judged from the pid file (stale files count as not running)."""
    pid = read_pid(spec.pid_file)
    if pid is None:
        return DaemonStatus(running=False, pid=None, stale=spec.pid_file.exists())
    if is_our_process(pid, spec.name, spec.pid_file):
        return DaemonStatus(running=True, pid=pid)
    return DaemonStatus(running=False, pid=pid, stale=True)


class PidFile:
    """Held by the foreground process for its whole life: ``with PidFile(path, name): run()``.

    Refuses to start a second copy of a program that is running; replaces a stale file;
    on exit removes the file if it still names this process.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = Path(path)
        self.name = name
        self.pid = os.getpid()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = read_pid(self.path)
                if other == self.pid:
                    return  # written for us by whoever spawned us
                if other is not None and is_our_process(other, self.name, self.path):
                    raise DaemonError(
                        f"{self.name} is already running (pid {other}, pid file {self.path})"
                    ) from None
                log.warning("removing stale pid file %s (pid %s is not running)", self.path, other)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(f"{self.pid}\n")
            return
        raise DaemonError(f"cannot create the pid file {self.path}: another process keeps recreating it")

    def release(self) -> None:
        if read_pid(self.path) == self.pid:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# -- the verbs ---------------------------------------------------------------------------------------
def start(
    spec: DaemonSpec,
    *,
    timeout_s: float = START_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Start the program detached and wait until it is ready; return its pid.

    Already running: return the running pid. Not ready within ``timeout_s`` or exited:
    stop what was started and raise :class:`DaemonError` with the tail of its output.
    """
    current = status(spec)
    if current.running:
        assert current.pid is not None
        log.info("%s is already running (pid %d)", spec.name, current.pid)
        return current.pid
    if current.stale:
        log.info("removing stale pid file %s", spec.pid_file)
        spec.pid_file.unlink(missing_ok=True)

    spec.out_file.parent.mkdir(parents=True, exist_ok=True)
    offsets = {p: _size(p) for p in (spec.out_file, *spec.log_files)}
    with open(spec.out_file, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env=spec.env,
            start_new_session=True,  # no controlling terminal: survives the shell that started it
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            raise DaemonError(f"{spec.name} exited with status {code} while starting\n" + _tails(offsets))
        pid_ok = read_pid(spec.pid_file) == proc.pid
        if pid_ok and (spec.ready is None or _probe(spec.ready)):
            _children[proc.pid] = proc
            return proc.pid
        if time.monotonic() > deadline:
            _kill(proc.pid, STOP_TIMEOUT_S)
            proc.wait()
            what = "did not write its pid file" if not pid_ok else "did not answer"
            raise DaemonError(f"{spec.name} {what} within {timeout_s:.0f}s; stopped it\n" + _tails(offsets))
        sleep(POLL_INTERVAL_S)


def stop(spec: DaemonSpec, *, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the running program, SIGKILL it if it outlives ``timeout_s``; remove the pid file.

    Returns the pid that was stopped, or None if the program was not running.
    """
    current = status(spec)
    if not current.running:
        if current.stale:
            log.info("removing stale pid file %s", spec.pid_file)
            spec.pid_file.unlink(missing_ok=True)
        return None
    assert current.pid is not None
    _kill(current.pid, timeout_s)
    if read_pid(spec.pid_file) == current.pid:
        spec.pid_file.unlink(missing_ok=True)
    return current.pid


def _kill(pid: int, timeout_s: float) -> None:
    """Graceful first: SIGTERM, wait; SIGKILL only as the last resort."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        _reap(pid)
        return
    if not _wait_gone(proc, timeout_s):
        log.warning("pid %d did not stop within %.0fs of SIGTERM; killing it", pid, timeout_s)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
        if not _wait_gone(proc, 10.0):
            raise DaemonError(f"pid {pid} survived SIGKILL")
    _reap(pid)


def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    """Wait until the process has exited; a zombie counts as exited (its parent, perhaps an
    init that reaps late, only has to collect its status)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S / 4)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            _children[pid] = child


def _probe(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception as exc:  # a probe that raises means "not yet"
        log.debug("readiness probe: %s", exc)
        return False


# -- output tails --------------------------------------------------------------------------------------
def tail(path: Path, *, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` written after byte offset ``since``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(since, _size(path) - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _tails(offsets: dict[Path, int]) -> str:
    parts = []
    for path, since in offsets.items():
        text = tail(path, since=since)
        if text.strip():
            parts.append(f"--- last lines of {path}:\n{text}")
    return "\n".join(parts) if parts else "(no output)"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
