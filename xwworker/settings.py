"""The worker's typed settings, loaded from ``xtremweb.worker.conf``.

The file is an XWHEP properties file (``key=value`` or ``key: value``). Keys:

- ``dispatcher.servers``   space-separated server list (``host[:port]`` or ``https://host:port``);
                           the worker fails over along it. Required.
- ``login``, ``password``  the worker identity. Required.
- ``ca.file``              the deployment CA certificate, relative to this file's folder.
                           XWHEP's ``path.certfile`` is accepted as an alias. Required.
- ``signing.key``          the deployment's public application-signing key (PEM), relative to
                           this file's folder: set, only binaries it signed run (default: none)
- ``data.ca_file``         CA certificates (PEM) for https:// data URLs, besides the system's
- ``workpool.size``        how many jobs run at once (default: the number of CPUs)
- ``port.https``          XWHEP's server port, for the ``dispatcher.servers`` entries that name
                           none (default 4325)
- ``path.tmpdir``          where the worker keeps its cache, scratch dirs and results (default:
                           ``<system temp>/xwworker-<user>/<server>_<port>-<login>-<hash>``, one
                           folder per deployment and identity: a volunteer attached to several
                           projects runs one worker for each, side by side)
- ``heartbeat_interval_s`` seconds between heartbeats (default: what the server says)
- ``tags``                 comma-separated host tags, sent at registration
- ``worker.name``          the host name shown on the server (default: the host name)
- ``log.file``             log file (default: ``<path.tmpdir>/xwworker.log``)
- ``pid.file``             pid file (default: ``<path.tmpdir>/xwworker.pid``)
- ``shutdown_grace_s``     on stop, how long running jobs may go on before they are killed and
                           handed back (default 30)
- ``work_request_wait_s``  how long one work request may wait on the server (long-poll)
- ``transfer_timeout_s``   a file upload or download silent for this long is retried (default 120)
- ``kill_grace_s``         seconds between SIGTERM and SIGKILL when a job is stopped
- ``activator.class``      when the machine may compute (default ``always``): ``always``,
                           ``date``, ``cpu``, ``idle``, ``battery``, or a combination
                           ``all:date,cpu`` (every one allows) / ``any:date,idle`` (one allows).
                           XWHEP's ``xtremweb.worker.AlwaysActive``, ``DateActivator``,
                           ``CpuActivator`` and ``MouseKbdActivator`` are accepted.
- ``activator.date``       for ``date``: XWHEP's days/hours grammar (``Thu-Tue 18-3, Sat-Sun *``)
                           or a 5-field cron expression (see ``xwworker/activation/date.py``)
- ``cpuload``              for ``cpu``: percent of the machine's CPU that the owner's own
                           processes may use before the worker stops (default 50)
- ``cpu.window_s``         for ``cpu``: seconds the load must stay above (or below) ``cpuload``
                           before the worker stops (or starts again) (default 60)
- ``idle.seconds``         for ``idle``: seconds without keyboard or mouse input before the
                           worker may compute (default 30, as XWHEP)
- ``max_suspend_s``        a job suspended (the policy said no) longer than this is killed and
                           handed back, so the server gives it to another worker (default 1800)
- ``battery.enable``       ``true``: never compute on battery, whatever ``activator.class``
                           says (default ``false``)
- ``sandbox.enable``       run jobs under bubblewrap where it works here (default true); off, or
                           where bwrap cannot run, the worker warns loudly at start
- ``sandbox.network``      let the jobs of apps that declare they need the network use it
                           (default false: such jobs are not given to this worker)
- ``limit.cpu_s``          CPU seconds each process of a job may use (default 86400)
- ``limit.memory_bytes``   address space of each process and resident memory of the whole job
                           (default 4 GiB)
- ``limit.file_bytes``     largest file a job may write (default 4 GiB)
- ``limit.processes``      processes a job may run at once (default 256)
- ``limit.wall_s``         wall-clock seconds a job may run before it is killed (default 172800)
                           A ``limit.*`` key set to 0 switches that limit off.

Any key may be overridden by an environment variable ``XWWORKER_<KEY>``, the key upper-cased
with dots turned into underscores (``XWWORKER_WORKPOOL_SIZE=2``). XWHEP keys that mean nothing
here (``port.tcp``, ``tracer.enable``...) are kept in ``extra`` and otherwise ignored; any other
key is kept there too, and :attr:`WorkerSettings.warnings` names it with the nearest known key
(``xwworker check-config`` exits non-zero on it).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xwcommon import defaults
from xwcommon.config import (
    as_bool,
    as_float,
    as_int,
    https_port,
    load_properties,
    resolve_path,
    unknown_key_warnings,
    with_https_port,
)
from xwcommon.errors import ConfigError
from xwcommon.servers import normalize_server

from .sandbox import ResourceLimits

#: where the worker looks for its config file when none is given (XWHEP's place)
DEFAULT_CONFIG = Path("~/.xtremweb/xtremweb.worker.conf")
ENV_PREFIX = "XWWORKER_"

SHUTDOWN_GRACE_S = 30.0
KILL_GRACE_S = 5.0
MAX_SUSPEND_S = 1800.0
TRANSFER_TIMEOUT_S = 120.0
#: activation defaults (XWHEP: ``cpuload`` 50%, 30 s without mouse/keyboard)
CPULOAD_PERCENT = 50.0
CPU_WINDOW_S = 60.0
IDLE_S = 30.0

_KNOWN_KEYS = (
    "dispatcher.servers",
    "port.https",
    "login",
    "password",
    "ca.file",
    "path.certfile",
    "signing.key",
    "data.ca_file",
    "workpool.size",
    "path.tmpdir",
    "heartbeat_interval_s",
    "tags",
    "worker.name",
    "log.file",
    "pid.file",
    "shutdown_grace_s",
    "work_request_wait_s",
    "transfer_timeout_s",
    "kill_grace_s",
    "activator.class",
    "activator.date",
    "cpuload",
    "cpu.window_s",
    "idle.seconds",
    "battery.enable",
    "max_suspend_s",
    "sandbox.enable",
    "sandbox.network",
    "limit.cpu_s",
    "limit.memory_bytes",
    "limit.file_bytes",
    "limit.processes",
    "limit.wall_s",
)


@dataclass
class WorkerSettings:
    servers: list[str]
    login: str
    password: str
    ca_file: Path
    tmpdir: Path
    workpool_size: int = field(default_factory=lambda: os.cpu_count() or 1)
    heartbeat_interval_s: float | None = None
    tags: list[str] = field(default_factory=list)
    name: str = field(default_factory=socket.gethostname)
    log_file: Path | None = None
    pid_file: Path | None = None
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    work_request_wait_s: float = defaults.WORK_REQUEST_WAIT_S
    transfer_timeout_s: float = TRANSFER_TIMEOUT_S
    kill_grace_s: float = KILL_GRACE_S
    max_suspend_s: float = MAX_SUSPEND_S
    activator: str = "always"
    activator_date: str = ""
    cpuload_percent: float = CPULOAD_PERCENT
    cpu_window_s: float = CPU_WINDOW_S
    idle_s: float = IDLE_S
    battery_enable: bool = False
    sandbox_enable: bool = True
    sandbox_network: bool = False
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    #: the deployment's public signing key: set, only binaries it signed run (xwcommon/signing.py)
    signing_key: Path | None = None
    #: extra CA certificates for https:// data URLs (xwworker/cache.py)
    data_ca_file: Path | None = None
    config_file: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: what is wrong but not fatal in the config (unknown keys), one message each
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.log_file is None:
            self.log_file = self.tmpdir / "xwworker.log"
        if self.pid_file is None:
            self.pid_file = self.tmpdir / "xwworker.pid"

    @property
    def deployment(self) -> str:
        """Which deployment and identity this worker serves: ``login@https://host:port …``.

        The state folder records it, so that one deployment's worker never uses, nor one
        deployment's ``xwworker`` command acts on, another deployment's worker.
        """
        return deployment_of(self.servers, self.login)

    # -- derived paths -------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.tmpdir / "cache"

    @property
    def tasks_dir(self) -> Path:
        return self.tmpdir / "tasks"

    @property
    def results_dir(self) -> Path:
        return self.tmpdir / "results"

    @property
    def pause_file(self) -> Path:
        """While this file exists the worker computes nothing (``xwworker pause`` / ``resume``)."""
        return self.tmpdir / "paused"

    @property
    def host_file(self) -> Path:
        """The host uid the server gave, kept so that a restarted worker is the same host."""
        return self.tmpdir / "xwworker.host"

    @property
    def state_file(self) -> Path:
        """Written by a running worker (pid, host, server, tasks), read by ``xwworker status``."""
        return self.tmpdir / "xwworker.state.json"

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
    ) -> WorkerSettings:
        """Read ``path`` (default ``~/.xtremweb/xtremweb.worker.conf``), then ``XWWORKER_*`` overrides."""
        conf = Path(os.path.expanduser(path if path is not None else DEFAULT_CONFIG)).absolute()
        if not conf.is_file():
            hint = "" if path is not None else "; give one with --xwconfig FILE"
            raise ConfigError(f"worker config file {conf} does not exist{hint}")
        props = load_properties(conf)
        environ = os.environ if environ is None else environ
        for key in _KNOWN_KEYS:
            env_name = ENV_PREFIX + key.upper().replace(".", "_")
            if env_name in environ:
                props[key] = environ[env_name]
        return cls.from_properties(props, base=conf.parent, config_file=conf)

    @classmethod
    def from_properties(
        cls, props: Mapping[str, str], *, base: Path, config_file: Path | None = None
    ) -> WorkerSettings:
        """Build settings from parsed properties; relative paths are relative to ``base``."""
        where = f" in {config_file}" if config_file else ""

        def required(key: str) -> str:
            value = props.get(key, "").strip()
            if not value:
                raise ConfigError(f"{key}: missing{where}")
            return value

        servers = with_https_port(required("dispatcher.servers").split(), https_port(props, key="port.https"))
        for server in servers:
            try:
                normalize_server(server)
            except ConfigError as exc:
                raise ConfigError(f"dispatcher.servers: {exc.message}{where}") from None
        login = required("login")
        if "password" not in props:
            raise ConfigError(f"password: missing{where}")
        password = props["password"].strip()
        ca_value = props.get("ca.file", "").strip() or props.get("path.certfile", "").strip()
        if not ca_value:
            raise ConfigError(
                f"ca.file: missing{where} (the deployment CA certificate; path.certfile also works)"
            )
        ca_key = "ca.file" if props.get("ca.file", "").strip() else "path.certfile"
        ca_file = resolve_path(ca_value, base)
        if not ca_file.is_file():
            raise ConfigError(f"{ca_key}: CA certificate {ca_file} does not exist")

        tmp_value = props.get("path.tmpdir", "").strip()
        tmpdir = resolve_path(tmp_value, base) if tmp_value else default_tmpdir(servers, login)

        s = cls(servers=servers, login=login, password=password, ca_file=ca_file, tmpdir=tmpdir)
        s.config_file = config_file
        if value := props.get("workpool.size", "").strip():
            s.workpool_size = as_int(value, key="workpool.size", minimum=1)
        if value := props.get("heartbeat_interval_s", "").strip():
            s.heartbeat_interval_s = _positive(value, "heartbeat_interval_s")
        if value := props.get("shutdown_grace_s", "").strip():
            s.shutdown_grace_s = as_float(value, key="shutdown_grace_s", minimum=0.0)
        if value := props.get("work_request_wait_s", "").strip():
            s.work_request_wait_s = as_float(value, key="work_request_wait_s", minimum=0.0)
        if value := props.get("transfer_timeout_s", "").strip():
            s.transfer_timeout_s = _positive(value, "transfer_timeout_s")
        if value := props.get("kill_grace_s", "").strip():
            s.kill_grace_s = as_float(value, key="kill_grace_s", minimum=0.0)
        if value := props.get("max_suspend_s", "").strip():
            s.max_suspend_s = _positive(value, "max_suspend_s")
        s.tags = [t.strip() for t in props.get("tags", "").split(",") if t.strip()]
        if value := props.get("worker.name", "").strip():
            s.name = value
        if value := props.get("log.file", "").strip():
            s.log_file = resolve_path(value, base)
        if value := props.get("pid.file", "").strip():
            s.pid_file = resolve_path(value, base)
        if value := props.get("activator.class", "").strip():
            s.activator = value
        s.activator_date = props.get("activator.date", "").strip()
        if value := props.get("cpuload", "").strip():
            s.cpuload_percent = as_float(value, key="cpuload", minimum=0.0)
            if s.cpuload_percent > 100:
                raise ConfigError(f"cpuload: a percentage from 0 to 100, got {value!r}")
        if value := props.get("cpu.window_s", "").strip():
            s.cpu_window_s = as_float(value, key="cpu.window_s", minimum=0.0)
        if value := props.get("idle.seconds", "").strip():
            s.idle_s = as_float(value, key="idle.seconds", minimum=0.0)
        if value := props.get("battery.enable", "").strip():
            s.battery_enable = as_bool(value, key="battery.enable")
        if value := props.get("sandbox.enable", "").strip():
            s.sandbox_enable = as_bool(value, key="sandbox.enable")
        if value := props.get("sandbox.network", "").strip():
            s.sandbox_network = as_bool(value, key="sandbox.network")
        s.limits = _limits(props)
        if value := props.get("signing.key", "").strip():
            s.signing_key = _existing_file(value, base, "signing.key")
        if value := props.get("data.ca_file", "").strip():
            s.data_ca_file = _existing_file(value, base, "data.ca_file")
        s.extra = {k: v for k, v in props.items() if k not in _KNOWN_KEYS}
        s.warnings = unknown_key_warnings(props, _KNOWN_KEYS, source=str(config_file or "worker config"))
        return s


def deployment_of(servers: list[str], login: str) -> str:
    """``login@server …``, the servers as the worker reaches them (``https://host:port``)."""
    return f"{login}@{' '.join(normalize_server(s) for s in servers)}"


def default_tmpdir(servers: list[str], login: str) -> Path:
    """``<system temp>/xwworker-<user>/<host>_<port>-<login>-<hash>``: one folder per local
    user, deployment and identity.

    Every deployment's public worker may be called ``worker``: keyed by the login alone, a
    second project's worker would find the first one's folder, lock and pid file. The hash
    (of the whole server list and the login) tells apart what the readable part cannot.
    """
    first = normalize_server(servers[0]).removeprefix("https://")
    digest = hashlib.sha256(deployment_of(servers, login).encode("utf-8")).hexdigest()[:8]
    name = f"{_safe(first)}-{_safe(login)}-{digest}"
    return Path(tempfile.gettempdir()) / f"xwworker-{_safe(_local_user())}" / name


def _safe(text: str) -> str:
    """``text`` reduced to file-name-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip(".") or "_"


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return str(os.getuid())


def _limits(props: Mapping[str, str]) -> ResourceLimits:
    """The ``limit.*`` keys over their defaults; each must be a number >= 0 (0: no limit)."""
    d = ResourceLimits()

    def integer(key: str, default: int) -> int:
        value = props.get(key, "").strip()
        return as_int(value, key=key, minimum=0) if value else default

    wall = props.get("limit.wall_s", "").strip()
    return ResourceLimits(
        cpu_s=integer("limit.cpu_s", d.cpu_s),
        memory_bytes=integer("limit.memory_bytes", d.memory_bytes),
        file_bytes=integer("limit.file_bytes", d.file_bytes),
        processes=integer("limit.processes", d.processes),
        wall_s=as_float(wall, key="limit.wall_s", minimum=0.0) if wall else d.wall_s,
    )


def _positive(value: str, key: str) -> float:
    n = as_float(value, key=key)
    if n <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value!r}")
    return n


def _existing_file(value: str, base: Path, key: str) -> Path:
    path = resolve_path(value, base)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    return path
