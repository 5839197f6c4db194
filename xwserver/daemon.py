"""``xwserver start|stop|restart|status``: the server as a background process.

The generic part (pid file, detached start, graceful stop) is :mod:`xwcommon.daemon`;
this module says how the server is run and how to tell that it answers: an HTTPS
``GET /api/v1/version`` checked against the deployment CA, the same trust a worker uses.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from xwcommon import daemon, defaults
from xwcommon.daemon import DaemonSpec, DaemonStatus
from xwcommon.servers import pinned_ssl_context

from .settings import ServerSettings

NAME = "xwserver"
PROBE_TIMEOUT_S = 2.0
#: where a server listening on every address is reached from this machine
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def out_file(settings: ServerSettings) -> Path:
    """stdout and stderr of the detached server (crashes before logging is set up land here)."""
    return settings.log_dir / "xwserver.out"


def log_file(settings: ServerSettings) -> Path:
    return settings.log_dir / "xwserver.log"


def spec(settings: ServerSettings, *, log_level: str = "INFO") -> DaemonSpec:
    argv = [
        sys.executable,
        "-m",
        "xwserver",
        "console",
        "--home",
        str(settings.home),
        "--log-level",
        log_level,
        "--detached",
    ]
    return DaemonSpec(
        name=NAME,
        argv=argv,
        pid_file=settings.pid_file,
        out_file=out_file(settings),
        cwd=settings.home,
        ready=lambda: answers(settings),
        address=settings.url,
        log_files=(log_file(settings),),
    )


def answers(settings: ServerSettings, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the server answers ``GET /api/v1/version`` over TLS pinned to the deployment CA."""
    ctx = pinned_ssl_context(settings.ca_file)
    listen = settings.listen if settings.listen is not None else settings.host
    connect_host = _WILDCARDS.get(listen.strip("[]"), listen.strip("[]"))
    request = (
        f"GET {defaults.API_PREFIX}/version HTTP/1.1\r\nHost: {settings.netloc}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    with (
        socket.create_connection((connect_host, settings.port), timeout=timeout_s) as raw,
        ctx.wrap_socket(raw, server_hostname=settings.host) as tls,
    ):
        tls.sendall(request)
        status_line = tls.recv(64).split(b"\r\n", 1)[0]
    parts = status_line.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"


def start(
    settings: ServerSettings, *, timeout_s: float = daemon.START_TIMEOUT_S, log_level: str = "INFO"
) -> int:
    return daemon.start(spec(settings, log_level=log_level), timeout_s=timeout_s)


def stop(settings: ServerSettings, *, timeout_s: float = daemon.STOP_TIMEOUT_S) -> int | None:
    return daemon.stop(spec(settings), timeout_s=timeout_s)


def status(settings: ServerSettings) -> DaemonStatus:
    return daemon.status(spec(settings))
