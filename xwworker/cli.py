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
  a second.

Errors print one line on stderr and exit non-zero: 2 for a configuration error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xwcommon import daemon
from xwcommon.errors import ConfigError, XWError

from . import __version__
from .loop import RELEASE_TIMEOUT_S, Worker
from .sandbox import choose_runner
from .settings import DEFAULT_CONFIG, WorkerSettings

log = logging.getLogger(__name__)

NAME = "xwworker"
#: ``start`` waits this long for the first registration before saying "started" anyway
#: (a worker whose server is down keeps retrying in the background; that is not a failure)
START_READY_WAIT_S = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_NOT_RUNNING = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=NAME, description="XtremWeb-Py volunteer worker: computes jobs of a desktop grid."
    )
    parser.add_argument(
        "command", choices=["console", "start", "stop", "restart", "status", "pause", "resume"]
    )
    parser.add_argument(
        "--xwconfig", metavar="FILE", help=f"worker config file (default {DEFAULT_CONFIG})", default=None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # used by ``start`` for the background process: log to the log file only
    parser.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[WorkerSettings, argparse.Namespace], int]] = {
        "console": console,
        "start": start,
        "stop": stop,
        "restart": restart,
        "status": status,
        "pause": pause,
        "resume": resume,
    }
    try:
        settings = WorkerSettings.load(args.xwconfig)
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
    with daemon.PidFile(_require(settings.pid_file, "pid.file"), NAME):
        configure_logging(settings, to_stderr=not args.detached, verbose=args.verbose)
        log.info(
            "xwworker %s starting: config %s, servers %s, %d slot(s), tmpdir %s",
            __version__,
            settings.config_file,
            " ".join(settings.servers),
            settings.workpool_size,
            settings.tmpdir,
        )
        try:
            asyncio.run(_run_worker(settings))
        except XWError as exc:
            log.critical("%s", exc.message)
            return 2 if isinstance(exc, ConfigError) else 1
    return 0


async def _run_worker(settings: WorkerSettings) -> None:
    choice = choose_runner(enable=settings.sandbox_enable, network=settings.sandbox_network)
    if choice.warning:
        log.warning("%s", choice.warning)  # loudly: the volunteer must know
    worker = Worker(settings, runner=choice.runner)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def start(settings: WorkerSettings, args: argparse.Namespace) -> int:
    spec = daemon_spec(settings, verbose=args.verbose)
    before = daemon.status(spec)
    pid = daemon.start(spec, timeout_s=daemon.START_TIMEOUT_S)
    if before.running:
        print(f"{NAME} is already running (pid {pid})")
        return 0
    state = read_state(settings)
    if state.get("pid") == pid and state.get("host_uid"):
        print(f"{NAME} started (pid {pid}), registered at {state.get('server')} as host {state['host_uid']}")
    else:
        print(f"{NAME} started (pid {pid}), not registered yet; see {settings.log_file}")
    return 0


def stop(settings: WorkerSettings, args: argparse.Namespace) -> int:
    spec = daemon_spec(settings, verbose=args.verbose)
    # the worker needs its grace period, the kill of what is left and the release call
    timeout_s = settings.shutdown_grace_s + settings.kill_grace_s + RELEASE_TIMEOUT_S + 15.0
    pid = daemon.stop(spec, timeout_s=timeout_s)
    print(f"{NAME} stopped (pid {pid})" if pid else f"{NAME} is not running")
    return 0


def restart(settings: WorkerSettings, args: argparse.Namespace) -> int:
    stop(settings, args)
    return start(settings, args)


def status(settings: WorkerSettings, args: argparse.Namespace) -> int:
    current = daemon.status(daemon_spec(settings, verbose=args.verbose))
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
    settings.tmpdir.mkdir(parents=True, exist_ok=True)
    settings.pause_file.write_text(f"paused at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n", encoding="utf-8")
    print(f"{NAME} paused: running jobs are suspended and no work is asked for until `{NAME} resume`")
    return 0


def resume(settings: WorkerSettings, args: argparse.Namespace) -> int:
    try:
        settings.pause_file.unlink()
    except FileNotFoundError:
        print(f"{NAME} was not paused")
        return 0
    print(f"{NAME} resumed: it computes again when its activation policy allows")
    return 0


# -- helpers ---------------------------------------------------------------------------------------
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
        # registered, or still trying after a few seconds (a down server is not a failed start)
        pid = daemon.read_pid(pid_file)
        state = read_state(settings)
        registered = pid is not None and state.get("pid") == pid and bool(state.get("host_uid"))
        return registered or time.monotonic() - started_at > START_READY_WAIT_S

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
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"log.file: cannot write {log_file}: {exc.strerror}") from exc
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True
    )
    if not verbose:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)


def _require(path: Path | None, key: str) -> Path:
    if path is None:
        raise ConfigError(f"{key}: not set")
    return path
