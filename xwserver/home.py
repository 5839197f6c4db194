"""A server home: its folders and the config files ``xwserver init`` writes.

::

    HOME/conf/xwserver.conf           the server's settings (every key documented)
    HOME/conf/xwrc                    the SUPER admin's client config (mode 0600)
    HOME/conf/xtremweb.worker.conf    a public worker's config (mode 0600)
    HOME/keystore/                    ca.pem, ca.key, server.pem, server.key (mode 0700)
    HOME/var/                         database (SQLite), pid file
    HOME/var/data/                    the content-addressed data store
    HOME/var/log/                     xwserver.log, xwserver.out
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from xwcommon import defaults

from .settings import CONF_NAME, ServerSettings

#: the URL shown in conf/xwserver.conf.sample
SAMPLE_URL = "https://xw.example.org:4325"
CLIENT_CONF = "xwrc"
WORKER_CONF = "xtremweb.worker.conf"

#: (config key, ServerSettings attribute, documentation); the order of the written file
SERVER_KEYS: tuple[tuple[str, str, str], ...] = (
    (
        "server.url",
        "url",
        "The https://HOST:PORT workers and clients reach this server at. HOST must be in the\n"
        "server certificate (xwserver init puts the URL's host there, plus localhost,\n"
        "127.0.0.1 and ::1). Plaintext http is refused.",
    ),
    (
        "server.listen",
        "listen",
        "Address to bind; default: the host of server.url. 0.0.0.0 (or ::) listens on every\n"
        "interface, e.g. behind NAT where server.url names the public address.",
    ),
    (
        "db.url",
        "db_url",
        "SQLAlchemy URL of the database; default: SQLite in HOME/var/xwserver.db.\n"
        "PostgreSQL: postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB\n"
        "MariaDB/MySQL: mysql+aiomysql://USER:PASSWORD@HOST:3306/DB\n"
        "Several servers may share one PostgreSQL database.",
    ),
    (
        "lease_s",
        "lease_s",
        "Seconds a task's lease lasts without a heartbeat; when it expires the job goes back\n"
        "to PENDING (retry+1) or to ERROR once max_retry is spent.",
    ),
    (
        "heartbeat_interval_s",
        "heartbeat_interval_s",
        "Seconds between a worker's heartbeats, told to workers at registration\n"
        "(keep it well below lease_s: a quarter is a good ratio).",
    ),
    ("max_retry", "max_retry", "How many times a lost job is rescheduled before it ends in ERROR."),
    (
        "trust_after",
        "trust_after",
        "Replicated jobs (min_quorum above 1): a host with this many valid results in a row\n"
        "gets replicated jobs alone with probability 1 - 1/N (N: its record); an invalid\n"
        "result resets its record and sends its recent lone jobs again. 0: always replicate.",
    ),
    (
        "events.record",
        "events_record",
        "true: every change of a job, task, host, user, group or app is appended to the event\n"
        "history (xwevents) in the transaction that made it. false: no history.",
    ),
    (
        "events.retention_s",
        "events_retention_s",
        "Seconds events are kept (then the collector removes them).",
    ),
    ("token_ttl_s", "token_ttl_s", "Seconds a login token stays valid."),
    ("max_body_bytes", "max_body_bytes", "Largest data upload accepted, in bytes."),
    (
        "max_json_bytes",
        "max_json_bytes",
        "Largest JSON request body accepted, in bytes (bulk job submissions).",
    ),
    (
        "disk_reserve_bytes",
        "disk_reserve_bytes",
        "Free space (bytes) kept on the data store's disk: an upload whose announced size\n"
        "would eat into it is refused with 507 storage_full before its body is read.",
    ),
    (
        "server.aliases",
        "aliases",
        "Other host:port names of this deployment (its other servers sharing the database),\n"
        "space-separated: xw:// URIs sent to this server may name them or this server;\n"
        "a URI naming any other server is refused.",
    ),
    (
        "max_waiting_requests",
        "max_waiting_requests",
        "Long-polling work requests this process keeps waiting. Beyond, a worker is told at\n"
        "once to come back after a delay (come_back_s on average, jittered, up to four times\n"
        "longer the fuller the server), as BOINC's request delay.",
    ),
    (
        "max_work_in_flight",
        "max_work_in_flight",
        "Work requests this process runs through the database at once. Beyond, they get\n"
        "503 with Retry-After, so heartbeats and reports (not counted) keep their connections.",
    ),
    ("come_back_s", "come_back_s", "Mean delay (seconds) told to a worker that finds no room to wait."),
    (
        "db_wait_s",
        "db_wait_s",
        "Longest wait (seconds) for a database connection; then the request gets 503 with\n"
        "Retry-After instead of waiting on.",
    ),
    (
        "server.processes",
        "processes",
        "Server processes for this home, sharing the address (SO_REUSEPORT) and the database:\n"
        "PostgreSQL only. One of them runs the reaper and the collector; one that dies is\n"
        "started again.",
    ),
    (
        "host_key_rotate_s",
        "host_key_rotate_s",
        "A host credential (the key a worker logs in with after its first registration) older\n"
        "than this (seconds) is replaced at its next use.",
    ),
    (
        "max_hosts_per_identity",
        "max_hosts_per_identity",
        "Hosts one identity may register (0: no limit); beyond, registration answers 403.",
    ),
    (
        "host_lost_heartbeats",
        "host_lost_heartbeats",
        "A host silent for this many heartbeat intervals shows as lost in xwworkers.",
    ),
    (
        "host_prune_after_s",
        "host_prune_after_s",
        "A host lost this long (seconds) is removed, unless tasks it ran are still on record,\n"
        "a job expects it, or an administrator disabled it (0: never).",
    ),
    ("reaper_interval_s", "reaper_interval_s", "Seconds between two looks for expired leases."),
    (
        "work_request_recheck_s",
        "work_request_recheck_s",
        "A waiting work request is woken at once by a submission to this server process;\n"
        "it re-checks the database this often (seconds) for jobs submitted through another\n"
        "server process sharing the database.",
    ),
    (
        "gc_interval_s",
        "gc_interval_s",
        "Seconds between two collections of what nothing references any more: results\n"
        "uploaded by tasks that were then lost, and stored files no data object names.",
    ),
    (
        "gc_grace_s",
        "gc_grace_s",
        "Only what is older than this (seconds) is collected, so an upload in flight is safe.",
    ),
    (
        "login_failures_allowed",
        "login_failures_allowed",
        "Failed logins allowed per login name (four times as many per client address)\n"
        "before every further attempt must wait: 1 s, then twice as long after each failure.\n"
        "Waiting attempts are answered 429 with Retry-After, without checking the password;\n"
        "a successful login resets its count.",
    ),
    (
        "login_backoff_cap_s",
        "login_backoff_cap_s",
        "The longest wait (seconds) after failed logins; failures are forgotten this long\n"
        "after the last one (or after the last wait, if later). 0 turns login throttling off.",
    ),
    (
        "apps.signatures",
        "app_signatures",
        "required: once this deployment has an application-signing key (xwserver keys\n"
        "signing puts its public half in keystore/app-signing.pub), a binary without a valid\n"
        "signature (xwsendapp --xwsign KEYFILE) is refused. optional: unsigned binaries are\n"
        "accepted too. Workers whose config names the public key (signing.key) run signed\n"
        "binaries only, whatever this says.",
    ),
    (
        "data.url_fetch",
        "url_fetch",
        "true: data inserted by http(s) URL without its sha256 is fetched once by this server\n"
        "to record its size and digest. false: the client must give them. The server then\n"
        "reaches any address a user names (its own network too): allow it only where that\n"
        "is acceptable.",
    ),
    (
        "data.url_fetch_private",
        "url_fetch_private",
        "true: that fetch may reach addresses that are not public (loopback, private and\n"
        "link-local networks: this server's own). false: public addresses only, checked on\n"
        "every address a name resolves to and on every redirect.",
    ),
    (
        "data.url_fetch_max_bytes",
        "url_fetch_max_bytes",
        "The largest document (bytes) the server fetches to learn its digest.",
    ),
    (
        "data.url_fetch_timeout_s",
        "url_fetch_timeout_s",
        "The longest (seconds) such a fetch may take, in all.",
    ),
    (
        "data.url_ca_file",
        "url_ca_file",
        "CA certificates (PEM) trusted for https data URLs, besides the system's; a relative\n"
        "path is relative to the home.",
    ),
    (
        "metrics.token",
        "metrics_token",
        "The bearer token a Prometheus scraper sends to read /metrics: a secret of its own\n"
        "(never a user's token). Empty, and metrics.allow empty: /metrics answers 403.",
    ),
    (
        "metrics.allow",
        "metrics_allow",
        "Addresses or networks that may read /metrics without the token, comma-separated,\n"
        "e.g. 127.0.0.1,10.0.0.0/8.",
    ),
)

_DEFAULTS: dict[str, object] = {
    "listen": "",
    "db_url": "",
    "lease_s": defaults.LEASE_S,
    "heartbeat_interval_s": defaults.HEARTBEAT_INTERVAL_S,
    "max_retry": defaults.MAX_RETRY,
    "trust_after": 10,
    "events_record": "true",
    "events_retention_s": 90 * 24 * 3600.0,
    "token_ttl_s": defaults.TOKEN_TTL_S,
    "max_body_bytes": defaults.MAX_BODY_BYTES,
    "max_json_bytes": defaults.MAX_JSON_BYTES,
    "disk_reserve_bytes": defaults.DISK_RESERVE_BYTES,
    "aliases": "",
    "max_waiting_requests": defaults.MAX_WAITING_REQUESTS,
    "max_work_in_flight": defaults.MAX_WORK_IN_FLIGHT,
    "come_back_s": defaults.COME_BACK_S,
    "db_wait_s": defaults.DB_WAIT_S,
    "processes": 1,
    "host_key_rotate_s": defaults.HOST_KEY_ROTATE_S,
    "max_hosts_per_identity": 0,
    "host_lost_heartbeats": defaults.HOST_LOST_HEARTBEATS,
    "host_prune_after_s": defaults.HOST_PRUNE_AFTER_S,
    "reaper_interval_s": defaults.REAPER_INTERVAL_S,
    "work_request_recheck_s": defaults.WORK_REQUEST_RECHECK_S,
    "gc_interval_s": defaults.GC_INTERVAL_S,
    "gc_grace_s": defaults.GC_GRACE_S,
    "login_failures_allowed": defaults.LOGIN_FAILURES_ALLOWED,
    "login_backoff_cap_s": defaults.LOGIN_BACKOFF_CAP_S,
    "app_signatures": "required",
    "url_fetch": "false",
    "url_fetch_private": "false",
    "url_fetch_max_bytes": defaults.URL_FETCH_MAX_BYTES,
    "url_fetch_timeout_s": defaults.URL_FETCH_TIMEOUT_S,
    "url_ca_file": "",
    "metrics_token": "",
    "metrics_allow": "",
}


def render_server_conf(url: str, db_url: str | None = None, *, stamp: str = "") -> str:
    """The text of ``xwserver.conf``: ``server.url`` (and ``db.url`` if given) set, every
    other key present, commented out, with its default."""
    out = [
        "# XtremWeb-Py server configuration (key=value or key: value; # starts a comment).",
        "# Keys left commented out take the default shown.",
    ]
    if stamp:
        out.append(f"# Written by xwserver init {stamp}.")
    for key, attr, doc in SERVER_KEYS:
        out.append("")
        out.extend(f"# {line}" for line in doc.splitlines())
        if attr == "url":
            out.append(f"{key}={url}")
        elif attr == "db_url" and db_url:
            out.append(f"{key}={db_url}")
        else:
            value = _DEFAULTS[attr]
            out.append(f"#{key}={_format(value)}")
    return "\n".join(out) + "\n"


def render_client_conf(url: str, login: str, password: str, ca_file: Path, *, stamp: str = "") -> str:
    """``xwrc``: what the client needs to reach and trust the server as ``login``."""
    return "\n".join(
        [
            f"# XtremWeb-Py client configuration for {login}{_written(stamp)}.",
            "# It holds a password: keep it private (mode 0600). Use it with",
            "#   xwclient --xwconfig THIS_FILE ...   or   export XWCONFIG=THIS_FILE",
            "# or copy it to ~/.xtremweb/xwrc.",
            "",
            "# Servers, space-separated; the next one is tried when one does not answer.",
            f"dispatcher.servers={url}",
            f"login={login}",
            f"password={password}",
            "# The deployment CA, the only certificate authority trusted (relative paths are",
            "# relative to this file's folder).",
            f"ca.file={ca_file}",
            "",
        ]
    )


#: the documented keys of ``xtremweb.worker.conf``, in the order written, by section:
#: (key, default as written, explanation). A default of "" means "none" or "computed by the
#: worker", which the explanation says. conf/xtremweb.worker.conf is this text too
#: (:func:`sample_worker_conf`), and a test checks every key the worker reads is here.
WORKER_SECTIONS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Server and identity",
        (
            (
                "dispatcher.servers",
                "",
                "The servers, space-separated, as https://HOST:PORT or HOST[:PORT] (https, port\n"
                f"{defaults.DEFAULT_PORT} when none is given); the worker fails over along the list. Required.\n"
                "XWHEP: the same key.",
            ),
            (
                "port.https",
                f"{defaults.DEFAULT_PORT}",
                "The port of the dispatcher.servers entries that name none. XWHEP: the same key.",
            ),
            (
                "login",
                "",
                "The worker identity on the server. Required. A WORKER-level identity without a\n"
                "group runs public jobs; with a group, its group's jobs too; a STANDARD user's\n"
                "identity makes a private worker that runs that user's jobs only.",
            ),
            ("password", "", "The identity's password. Required: keep this file private (mode 0600)."),
            (
                "ca.file",
                "",
                "The deployment CA certificate (PEM), the only authority trusted: no system\n"
                "store, no plaintext fallback. A relative path is relative to this file's folder.\n"
                "Required. XWHEP: path.certfile, also accepted (see below).",
            ),
            ("path.certfile", "", "XWHEP's name for ca.file; read only when ca.file is not set."),
            (
                "signing.key",
                "",
                "The deployment's public application-signing key (PEM; xwserver keys signing\n"
                "makes it): set, the worker runs only binaries whose signature by that key\n"
                "verifies, and fails the others' jobs. Taken from this file, never from the\n"
                "server, so that a compromised server cannot make the worker run a program.\n"
                "A relative path is relative to this file's folder. Default: none (binaries\n"
                "run unchecked, with a warning at start).",
            ),
            (
                "data.ca_file",
                "",
                "CA certificates (PEM) trusted for https:// data URLs (inputs and binaries\n"
                "inserted by URL), besides the system's. Default: the system's only.",
            ),
        ),
    ),
    (
        "This host",
        (
            (
                "workpool.size",
                "",
                "How many jobs run at once, at least 1. Default: the number of CPUs.\nXWHEP: the same key.",
            ),
            (
                "path.tmpdir",
                "",
                "Folder of the worker's download cache, job scratch folders, results, state, log\n"
                "and pid file, private to its owner (0700). Default: one folder per deployment\n"
                "and identity, <system temp>/xwworker-<user>/<host>_<port>-<login>-<hash>, so that\n"
                "workers of several projects run side by side. XWHEP: the same key (its default\n"
                "was the system temp folder itself).",
            ),
            (
                "tags",
                "",
                "Comma-separated tags describing this host (gpu, big-memory...), sent to the\n"
                "server at registration. Default: none. XWHEP had none.",
            ),
            ("worker.name", "", "The name the server shows for this host. Default: the host name."),
            ("log.file", "", "The log file. Default: <path.tmpdir>/xwworker.log."),
            ("pid.file", "", "The pid file of a running worker. Default: <path.tmpdir>/xwworker.pid."),
        ),
    ),
    (
        "Timings, in seconds",
        (
            (
                "heartbeat_interval_s",
                "",
                "Seconds between heartbeats, which keep the leases of running jobs. Default:\n"
                "what the server says at registration. XWHEP: alive.period, which its server\n"
                "set the same way.",
            ),
            (
                "work_request_wait_s",
                f"{defaults.WORK_REQUEST_WAIT_S:g}",
                "Seconds one work request may wait on the server for a job (a long-poll: an idle\n"
                "worker hears of a new job at once).",
            ),
            (
                "transfer_timeout_s",
                "120",
                "Seconds a download or upload may stay silent before it is retried.",
            ),
            (
                "shutdown_grace_s",
                "30",
                "On stop, seconds running jobs may go on before they are killed and handed back\n"
                "to the server.",
            ),
            ("kill_grace_s", "5", "Seconds between SIGTERM and SIGKILL when a job is stopped."),
        ),
    ),
    (
        "Activation: when this machine may compute",
        (
            (
                "activator.class",
                "always",
                "The policy: always, date, cpu, idle, battery, or a combination: all:date,cpu\n"
                "(every one allows) or any:date,idle (one allows). XWHEP's class names are\n"
                "accepted: xtremweb.worker.AlwaysActive, DateActivator, CpuActivator,\n"
                "MouseKbdActivator (= idle).",
            ),
            (
                "activator.date",
                "",
                "For date: when computing is allowed, in XWHEP's days and hours grammar\n"
                "(Thu-Tue 18-3, Sat-Sun *) or as a 5-field cron expression (* 18-23 * * 1-5; write\n"
                "cron: before it to force that reading). No default: date needs it. XWHEP: the\n"
                "same key, days and hours only.",
            ),
            (
                "cpuload",
                "50",
                "For cpu: percent (0-100) of the machine's CPU the owner's own processes may use\n"
                "before the worker stops computing. XWHEP: the same key.",
            ),
            (
                "cpu.window_s",
                "60",
                "For cpu: seconds the owner's load must stay above (or below) cpuload before the\n"
                "worker stops (or starts again).",
            ),
            (
                "idle.seconds",
                "30",
                "For idle: seconds without keyboard or mouse input before the worker may compute.\n"
                "XWHEP: fixed at 30 s in its MouseKbdActivator.",
            ),
            (
                "max_suspend_s",
                "1800",
                "Seconds a job may stay suspended (the policy said no while it ran) before it is\n"
                "killed and handed back, so that the server gives it to another worker.",
            ),
            (
                "battery.enable",
                "false",
                "true: never compute on battery, whatever activator.class says.",
            ),
        ),
    ),
    (
        "Confinement of jobs",
        (
            (
                "sandbox.enable",
                "true",
                "Run jobs under bubblewrap (bwrap) where it runs here: a root of their own, no\n"
                "network, no access to this machine's files but their scratch folder. Off, or\n"
                "where bwrap cannot run, the worker warns loudly at start. XWHEP: the same key\n"
                "(its sandbox was experimental; sandbox.name, .args, .embedded are not used).",
            ),
            (
                "sandbox.network",
                "false",
                "true: the jobs of apps that declare they need the network may use it. false:\n"
                "such jobs are not given to this worker.",
            ),
            (
                "limit.cpu_s",
                "86400",
                "CPU seconds each process of a job may use. 0 switches a limit.* key off.",
            ),
            (
                "limit.memory_bytes",
                str(4 * 1024**3),
                "Bytes of address space of each process, and of resident memory of the whole\njob (4 GiB).",
            ),
            ("limit.file_bytes", str(4 * 1024**3), "Bytes of the largest file a job may write (4 GiB)."),
            ("limit.processes", "256", "Processes a job may run at once."),
            (
                "limit.wall_s",
                "172800",
                "Wall-clock seconds a job may run (48 h) before it is killed and ends in ERROR.",
            ),
        ),
    ),
)

#: values of the keys ``render_worker_conf`` sets; every other key is written commented out
_WORKER_SET_KEYS = ("dispatcher.servers", "login", "password", "ca.file")

#: what conf/xtremweb.worker.conf holds in place of a deployment's values
SAMPLE_WORKER_LOGIN = "worker"
SAMPLE_WORKER_PASSWORD = "CHANGE-ME"
SAMPLE_CA_FILE = Path("ca.pem")


def render_worker_conf(
    url: str, login: str, password: str, ca_file: Path, *, stamp: str = "", signing_key: Path | None = None
) -> str:
    """``xtremweb.worker.conf``: a worker's servers, identity and CA set (and the public
    signing key, if given), every other key the worker reads present, commented out, with
    its default and its meaning."""
    values = dict(zip(_WORKER_SET_KEYS, (url, login, password, str(ca_file)), strict=True))
    if signing_key is not None:
        values["signing.key"] = str(signing_key)
    out = [
        f"# XtremWeb-Py worker configuration for {login}{_written(stamp)}.",
        "# It holds a password: keep it private (mode 0600). Run a worker with",
        "#   xwworker console --xwconfig THIS_FILE     (foreground, logs on stderr too)",
        "#   xwworker start|stop|status --xwconfig THIS_FILE",
        "# or copy it to ~/.xtremweb/xtremweb.worker.conf, where xwworker looks without --xwconfig.",
        "#",
        "# Lines are key=value or key: value (XWHEP's properties); # starts a comment. Keys left",
        "# commented out take the default shown, or the one their comment gives. An environment",
        "# variable XWWORKER_<KEY> (upper case, dots turned into underscores, e.g.",
        "# XWWORKER_WORKPOOL_SIZE=2) overrides a key. XWHEP keys this worker does not use",
        "# (port.tcp, tracer.enable, alive.period...) are accepted and ignored; any other key",
        "# is warned about with the nearest known one (xwworker check-config exits 1 on it).",
    ]
    for title, keys in WORKER_SECTIONS:
        out += ["", f"# == {title} =="]
        for key, default, doc in keys:
            out.append("")
            out.extend(f"# {line}" for line in doc.splitlines())
            out.append(f"{key}={values[key]}" if key in values else f"#{key}={default}")
    return "\n".join(out) + "\n"


def sample_worker_conf() -> str:
    """The text of conf/xtremweb.worker.conf: :func:`render_worker_conf` with placeholders."""
    return render_worker_conf(SAMPLE_URL, SAMPLE_WORKER_LOGIN, SAMPLE_WORKER_PASSWORD, SAMPLE_CA_FILE)


def make_dirs(settings: ServerSettings) -> None:
    """Create the home's folders; private ones (conf, var) are 0700: they hold passwords and data."""
    settings.home.mkdir(parents=True, exist_ok=True)
    for d in (settings.conf_dir, settings.var_dir, settings.data_dir, settings.log_dir):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write a file with mode 0600 from its creation on, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def conf_file(home: Path) -> Path:
    return home / "conf" / CONF_NAME


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("on %Y-%m-%d %H:%M UTC")


def _written(stamp: str) -> str:
    return f", written by xwserver init {stamp}" if stamp else ""


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
