"""``xwworker console|start|stop|restart|status|pause|resume [--xwconfig FILE]``.

XWHEP's verbs, and two of our own for the volunteer:

- ``console`` runs the worker in the foreground, logging to stderr and to ``log.file``;
- ``start`` runs the same in the background (pid file ``pid.file``, log ``log.file``);
- ``stop`` asks the running worker to stop (SIGTERM) and waits: running jobs get
  ``shutdown_grace_s`` to finish, the rest are handed back to the server;
- ``status`` says whether a worker runs (exit code 0) or not (exit code 3, as LSB init
  scripts do), and whether it computes now;
- ``pause`` makes the worker compute nothing, whatever its activation policy says: running
  jobs are suspended (and handed back after ``max_suspend_s``), no work is requested, until
  ``resume``. It lasts across restarts (a file in ``path.tmpdir``) and takes effect within
  a second;
- ``console --pilot [--max-idle-s N] [--max-lifetime-s M]`` runs the worker as a batch job's
  payload (XWHEP's gliding-in, a pilot job): it exits with 0 once it has had no work for
  N seconds, or after M seconds in all, handing its unfinished tasks back to the server;
- ``check-config`` reads the config file and says what it sets: exit code 0 when it is
  fine, 1 when it holds unknown keys (each named with the nearest known key), 2 when it
  is invalid.

Every command acts only on this deployment's worker: the one that holds the lock of the
state folder recorded for this config's servers and login. A pid file that names another
deployment's worker (two configs sharing ``pid.file``) is refused, never acted on.
Unknown keys in the config are warned about on stderr by every command.

Errors print one line on stderr and exit non-zero: 2 for a configuration error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xwcommon.programs  # noqa: F401 - first: aiohttp without reading the system's CAs
from xwcommon import daemon
from xwcommon.errors import ConfigError, XWError

from . import __version__
from .loop import RELEASE_TIMEOUT_S, Worker
from .sandbox import choose_runner
from .settings import DEFAULT_CONFIG, WorkerSettings
from .statedir import StateLock, claim_folder, folder_deployment, make_private_dir, worker_of

log = logging.getLogger(__name__)

NAME = "xwworker"
#: ``start`` waits this long for the first registration before saying "started" anyway
#: (a worker whose server is down keeps retrying in the background; that is not a failure)
START_READY_WAIT_S = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the worker's log rotates when it reaches this size, keeping LOG_BACKUPS older files
#: (xwworker.log.1 the newest): a volunteer's machine has no logrotate watching our folder
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
EXIT_NOT_RUNNING = 3
#: a pilot (``console --pilot``) with no --max-idle-s exits after this long without work
PILOT_MAX_IDLE_S = 300.0
#: how often a pilot looks at its limits
PILOT_CHECK_S = 1.0
#: ``check-config``: the config loads but holds keys the worker does not know
EXIT_UNKNOWN_KEYS = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=NAME, description="XtremWeb-Py volunteer worker: computes jobs of a desktop grid."
    )
    parser.add_argument(
        "command",
        choices=["console", "start", "stop", "restart", "status", "pause", "resume", "check-config"],
    )
    parser.add_argument(
        "--xwconfig", metavar="FILE", help=f"worker config file (default {DEFAULT_CONFIG})", default=None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # used by ``start`` for the background process: log to the log file only
    parser.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pilot",
        action="store_true",
        help="console as a batch job's payload (a pilot): exit cleanly when idle for --max-idle-s "
        f"(default {PILOT_MAX_IDLE_S:.0f}) or at --max-lifetime-s, handing back unfinished tasks",
    )
    parser.add_argument(
        "--max-idle-s", type=float, metavar="SECONDS", help="with --pilot: exit after this long idle"
    )
    parser.add_argument(
        "--max-lifetime-s", type=float, metavar="SECONDS", help="with --pilot: exit after this long in all"
    )
    args = parser.parse_args(argv)
    if (args.max_idle_s is not None or args.max_lifetime_s is not None) and not args.pilot:
        parser.error("--max-idle-s and --max-lifetime-s go with --pilot")
    if args.pilot and args.command != "console":
        parser.error("--pilot runs in the foreground, as a batch job's payload: use it with console")
    for given in (args.max_idle_s, args.max_lifetime_s):
        if given is not None and given <= 0:
            parser.error("--max-idle-s and --max-lifetime-s must be greater than 0")
    commands: dict[str, Callable[[WorkerSettings, argparse.Namespace], int]] = {
        "console": console,
        "start": start,
        "stop": stop,
        "restart": restart,
        "status": status,
        "pause": pause,
        "resume": resume,
        "check-config": check_config,
    }
    try:
        settings = WorkerSettings.load(args.xwconfig)
        if args.command != "check-config":
            for warning in settings.warnings:
                print(f"{NAME}: warning: {warning}", file=sys.stderr)
        return commands[args.command](settings, args)
    except ConfigError as exc:
        print(f"{NAME}: {exc.message}", file=sys.stderr)
        return 2
    except XWError as exc:
        print(f"{NAME}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a pid or log folder that cannot be created
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{NAME}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- verbs ---------------------------------------------------------------------------------------
def console(settings: WorkerSettings, args: argparse.Namespace) -> int:
    current = running(settings)
    if current.running:
        raise daemon.DaemonError(
            f"{NAME} is already running (pid {current.pid}, pid file {settings.pid_file})"
        )
    # the folder's lock first, then the pid file: a pid file never names a worker that does
    # not hold this deployment's folder
    lock = StateLock(settings.tmpdir)
    lock.acquire()
    try:
        claim_folder(settings.tmpdir, settings.deployment)
        with daemon.PidFile(_require(settings.pid_file, "pid.file"), NAME):
            configure_logging(settings, to_stderr=not args.detached, verbose=args.verbose)
            for warning in settings.warnings:
                log.warning("%s", warning)
            log.info(
                "xwworker %s starting: config %s, servers %s, login %s, %d slot(s), tmpdir %s, log %s",
                __version__,
                settings.config_file,
                " ".join(settings.servers),
                settings.login,
                settings.workpool_size,
                settings.tmpdir,
                settings.log_file,
            )
            pilot = None
            if args.pilot:
                idle_s = args.max_idle_s if args.max_idle_s is not None else PILOT_MAX_IDLE_S
                pilot = PilotLimits(idle_s, args.max_lifetime_s)
            try:
                asyncio.run(_run_worker(settings, lock, pilot))
            except XWError as exc:
                log.critical("%s", exc.message)
                return 2 if isinstance(exc, ConfigError) else 1
    finally:
        lock.release()
    return 0


@dataclass(frozen=True)
class PilotLimits:
    """When a pilot (a worker run as a batch job's payload) ends: idle this long (no task,
    no report waiting), or alive this long in all; None: no such limit."""

    max_idle_s: float | None
    max_lifetime_s: float | None


async def watch_pilot(
    worker: Worker,
    limits: PilotLimits,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> str:
    """Stop ``worker`` when ``limits`` say its pilot is over; why it stopped.

    At its lifetime the pilot stops at once, without the grace period (a batch system's time
    limit is near): its unfinished tasks are handed back, their jobs go back to the queue
    without spending a retry, and the allocation ends cleanly."""
    started = clock()
    idle_since = started
    while not worker.stopping:
        await sleep(PILOT_CHECK_S)
        now = clock()
        if worker.tasks or worker.outbox:
            idle_since = now
        elif limits.max_idle_s is not None and now - idle_since >= limits.max_idle_s:
            log.info("pilot: idle for %.0f s, exiting", now - idle_since)
            worker.stop()
            return "idle"
        if limits.max_lifetime_s is not None and now - started >= limits.max_lifetime_s:
            log.info(
                "pilot: lifetime of %.0f s reached; handing back %d unfinished task(s) and exiting",
                limits.max_lifetime_s,
                len(worker.tasks),
            )
            worker.stop()
            worker.stop()  # the second call skips the grace period
            return "lifetime"
    return "stopped"


async def _run_worker(settings: WorkerSettings, lock: StateLock, pilot: PilotLimits | None = None) -> None:
    choice = choose_runner(enable=settings.sandbox_enable, network=settings.sandbox_network)
    if choice.warning:
        log.warning("%s", choice.warning)  # loudly: the volunteer must know
    worker = Worker(settings, runner=choice.runner, state_lock=lock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    watcher = asyncio.ensure_future(watch_pilot(worker, pilot)) if pilot is not None else None
    try:
        await worker.run()
    finally:
        if watcher is not None:
            watcher.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def start(settings: WorkerSettings, args: argparse.Namespace) -> int:
    spec = daemon_spec(settings, verbose=args.verbose)
    before = running(settings)
    if before.running:
        print(f"{NAME} is already running (pid {before.pid}) for {settings.deployment}")
        return 0
    make_private_dir(settings.tmpdir)  # before its log files are made there
    pid = daemon.start(spec, timeout_s=daemon.START_TIMEOUT_S)
    state = read_state(settings)
    if state.get("pid") == pid and state.get("host_uid"):
        print(f"{NAME} started (pid {pid}), registered at {state.get('server')} as host {state['host_uid']}")
    else:
        unreachable = state.get("unreachable") if state.get("pid") == pid else None
        why = f" ({unreachable}; it keeps trying)" if unreachable else ""
        print(f"{NAME} started (pid {pid}), not registered yet{why}; see {settings.log_file}")
    return 0


def stop(settings: WorkerSettings, args: argparse.Namespace) -> int:
    spec = daemon_spec(settings, verbose=args.verbose)
    # the worker needs its grace period, the kill of what is left and the release call
    timeout_s = settings.shutdown_grace_s + settings.kill_grace_s + RELEASE_TIMEOUT_S + 15.0
    if not running(settings).running:
        print(f"{NAME} is not running")
        return 0
    pid = daemon.stop(spec, timeout_s=timeout_s)
    print(f"{NAME} stopped (pid {pid})" if pid else f"{NAME} is not running")
    return 0


def restart(settings: WorkerSettings, args: argparse.Namespace) -> int:
    stop(settings, args)
    return start(settings, args)


def status(settings: WorkerSettings, args: argparse.Namespace) -> int:
    current = running(settings)
    if not current.running:
        print(f"{NAME} is not running")
        return EXIT_NOT_RUNNING
    state = read_state(settings)
    if state.get("pid") != current.pid or not state.get("host_uid"):
        print(f"{NAME} is running (pid {current.pid}), not registered yet")
        return 0
    tasks = state.get("tasks") or {}
    age_s = time.time() - float(state.get("updated_at") or 0)
    activation = state.get("activation") or {}
    computing = (
        "computing"
        if activation.get("state", "active") == "active"
        else f"not computing ({activation.get('detail')})"
    )
    print(
        f"{NAME} is running (pid {current.pid}), host {state['host_uid']} at {state.get('server')}, "
        f"{len(tasks)}/{state.get('workpool_size')} task(s), {computing}, last contact {age_s:.0f}s ago"
    )
    return 0


def pause(settings: WorkerSettings, args: argparse.Namespace) -> int:
    _check_folder(settings)
    make_private_dir(settings.tmpdir)
    settings.pause_file.write_text(f"paused at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n", encoding="utf-8")
    if running(settings).running:
        print(f"{NAME} paused: running jobs are suspended and no work is asked for until `{NAME} resume`")
    else:
        print(f"{NAME} is not running; once started it will compute nothing until `{NAME} resume`")
    return 0


def resume(settings: WorkerSettings, args: argparse.Namespace) -> int:
    _check_folder(settings)
    try:
        settings.pause_file.unlink()
    except FileNotFoundError:
        print(f"{NAME} was not paused")
        return 0
    if running(settings).running:
        print(f"{NAME} resumed: it computes again when its activation policy allows")
    else:
        print(f"{NAME} is not running; once started it computes when its activation policy allows")
    return 0


def check_config(settings: WorkerSettings, args: argparse.Namespace) -> int:
    """Say what the config sets; exit 1 when it holds unknown keys (invalid ones exit 2 earlier)."""
    for warning in settings.warnings:
        print(f"{NAME}: {warning}", file=sys.stderr)
    print(
        f"{settings.config_file}: servers {' '.join(settings.servers)}, login {settings.login}, "
        f"{settings.workpool_size} slot(s), activator {settings.activator}, path.tmpdir {settings.tmpdir}"
    )
    if settings.warnings:
        print(f"{NAME}: {len(settings.warnings)} unknown key(s) in {settings.config_file}", file=sys.stderr)
        return EXIT_UNKNOWN_KEYS
    return 0


# -- helpers ---------------------------------------------------------------------------------------
def running(settings: WorkerSettings) -> daemon.DaemonStatus:
    """This deployment's worker, as its pid file says; :class:`ConfigError` when the pid file
    names a live worker of another deployment (it is never acted on)."""
    current = daemon.status(daemon_spec(settings))
    if (
        current.running
        and current.pid is not None
        and not worker_of(settings.tmpdir, settings.deployment, current.pid)
    ):
        _check_folder(settings)
        raise ConfigError(
            f"pid.file: {settings.pid_file} names pid {current.pid}, a worker of another "
            f"deployment than {settings.deployment}; give each deployment's worker its own "
            "pid.file (unset, it is in the deployment's own path.tmpdir)"
        )
    return current


def _check_folder(settings: WorkerSettings) -> None:
    """:class:`ConfigError` when ``path.tmpdir`` is recorded as another deployment's folder."""
    recorded = folder_deployment(settings.tmpdir)
    if recorded is not None and recorded != settings.deployment:
        raise ConfigError(
            f"path.tmpdir: {settings.tmpdir} is the state folder of the worker of {recorded}, not of "
            f"{settings.deployment}; give each deployment's worker its own path.tmpdir (unset, it is "
            "one folder per deployment)"
        )


def daemon_spec(settings: WorkerSettings, *, verbose: bool = False) -> daemon.DaemonSpec:
    pid_file = _require(settings.pid_file, "pid.file")
    log_file = _require(settings.log_file, "log.file")
    argv = [sys.executable, "-m", NAME, "console", "--detached"]
    if settings.config_file is not None:
        argv += ["--xwconfig", str(settings.config_file)]
    if verbose:
        argv.append("--verbose")
    started_at = time.monotonic()

    def ready() -> bool:
        # registered, or still trying after a few seconds (a down server is not a failed start);
        # a server that does not answer is known at the first try: no need to wait to say so
        pid = daemon.read_pid(pid_file)
        state = read_state(settings)
        ours = pid is not None and state.get("pid") == pid
        if ours and (state.get("host_uid") or state.get("unreachable")):
            return True
        return time.monotonic() - started_at > START_READY_WAIT_S

    return daemon.DaemonSpec(
        name=NAME,
        argv=argv,
        pid_file=pid_file,
        out_file=log_file.with_name(log_file.stem + ".out"),
        cwd=settings.tmpdir if settings.tmpdir.is_dir() else None,
        ready=ready,
        address=" ".join(settings.servers),
        log_files=(log_file,),
    )


def read_state(settings: WorkerSettings) -> dict[str, Any]:
    try:
        state = json.loads(settings.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def configure_logging(settings: WorkerSettings, *, to_stderr: bool, verbose: bool) -> None:
    handlers: list[logging.Handler] = []
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    log_file = _require(settings.log_file, "log.file")
    if log_file.parent == settings.tmpdir:
        make_private_dir(settings.tmpdir)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(log_file_handler(log_file))
    except OSError as exc:
        raise ConfigError(f"log.file: cannot write {log_file}: {exc.strerror}") from exc
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True
    )
    if not verbose:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)


def log_file_handler(
    path: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
) -> logging.Handler:
    """The log file, rotated at ``max_bytes`` (``path.1`` … ``path.<backups>``)."""
    return logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )


def _require(path: Path | None, key: str) -> Path:
    if path is None:
        raise ConfigError(f"{key}: not set")
    return path
