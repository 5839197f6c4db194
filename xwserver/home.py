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
    ("token_ttl_s", "token_ttl_s", "Seconds a login token stays valid."),
    ("max_body_bytes", "max_body_bytes", "Largest data upload accepted, in bytes."),
    (
        "max_json_bytes",
        "max_json_bytes",
        "Largest JSON request body accepted, in bytes (bulk job submissions).",
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
)

_DEFAULTS: dict[str, object] = {
    "listen": "",
    "db_url": "",
    "lease_s": defaults.LEASE_S,
    "heartbeat_interval_s": defaults.HEARTBEAT_INTERVAL_S,
    "max_retry": defaults.MAX_RETRY,
    "token_ttl_s": defaults.TOKEN_TTL_S,
    "max_body_bytes": defaults.MAX_BODY_BYTES,
    "max_json_bytes": defaults.MAX_JSON_BYTES,
    "reaper_interval_s": defaults.REAPER_INTERVAL_S,
    "work_request_recheck_s": defaults.WORK_REQUEST_RECHECK_S,
    "gc_interval_s": defaults.GC_INTERVAL_S,
    "gc_grace_s": defaults.GC_GRACE_S,
    "login_failures_allowed": defaults.LOGIN_FAILURES_ALLOWED,
    "login_backoff_cap_s": defaults.LOGIN_BACKOFF_CAP_S,
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


def render_worker_conf(url: str, login: str, password: str, ca_file: Path, *, stamp: str = "") -> str:
    """``xtremweb.worker.conf``: a public worker's identity, server and CA."""
    return "\n".join(
        [
            f"# XtremWeb-Py worker configuration: a public worker ({login}){_written(stamp)}.",
            "# It holds a password: keep it private (mode 0600). Start a worker with",
            "#   xwworker start --xwconfig THIS_FILE",
            "",
            "# Servers, space-separated; the worker fails over along the list.",
            f"dispatcher.servers={url}",
            f"login={login}",
            f"password={password}",
            "# The deployment CA, the only certificate authority trusted (relative paths are",
            "# relative to this file's folder).",
            f"ca.file={ca_file}",
            "",
            "# How many jobs run at once (default: the number of CPUs).",
            "#workpool.size=4",
            "# Where the worker keeps its download cache, job scratch folders, log and pid file",
            "# (default: <system temp>/xwworker-<login>).",
            "#path.tmpdir=/var/tmp/xwworker",
            "",
        ]
    )


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
