"""The server's typed settings, loaded from ``HOME/conf/xwserver.conf``.

Keys (``key=value``):

- ``server.url``       https://HOST:PORT the server is reached at (and listens on)
- ``server.listen``    address to bind (default: the URL's host)
- ``db.url``           SQLAlchemy URL; default ``sqlite+aiosqlite:///HOME/var/xwserver.db``
- ``lease_s``          seconds a task's lease lasts without a heartbeat
- ``max_retry``        how many times a lost job is rescheduled
- ``events.record``    ``true`` (default): changes are appended to the event history
- ``events.retention_s`` seconds events are kept
- ``trust_after``      valid results in a row after which a host may get replicated jobs
  alone (BOINC's adaptive replication, with probability 1 - 1/N); 0: never
- ``token_ttl_s``      lifetime of a login token
- ``max_body_bytes``   largest data upload accepted
- ``max_json_bytes``   largest JSON body accepted
- ``disk_reserve_bytes`` free space kept on the data store's disk (uploads that would eat into it get 507)
- ``server.aliases``   other host:port names of this deployment (its other servers) that
  ``xw://`` URIs sent to it may name; URIs naming any other server are refused
- ``max_waiting_requests`` long-polling work requests kept waiting; beyond, the worker is
  told to come back after a jittered delay (longer the fuller the server)
- ``max_work_in_flight`` work requests run through the database at once; beyond, 503 with
  Retry-After (heartbeats and reports are not counted)
- ``come_back_s``      mean delay told to a worker that finds no room to wait
- ``db_wait_s``        longest a request waits for a database connection (then 503)
- ``server.processes`` server processes for this home (PostgreSQL only; see xwserver.processes)
- ``reaper_interval_s`` how often expired leases are looked for
- ``gc_interval_s``    how often orphan results and unreferenced files are collected
- ``gc_grace_s``       only what is older than this is collected
- ``login_failures_allowed`` failed logins per login before further attempts must wait
- ``login_backoff_cap_s`` longest wait imposed after failed logins
- ``host_key_rotate_s`` a host credential older than this is replaced at its next use
- ``max_hosts_per_identity`` hosts one identity may register (0: no limit); beyond, 403
- ``host_lost_heartbeats`` a host silent for this many heartbeat intervals is LOST
- ``host_prune_after_s`` a host LOST this long is removed, unless tasks it ran are still
  on record (0: never)
- ``metrics.token``    the bearer token a Prometheus scraper sends to ``/metrics`` (a
  secret of its own, never a user's token)
- ``metrics.allow``    addresses or networks (comma-separated, e.g. ``127.0.0.1,10.0.0.0/8``)
  that may read ``/metrics`` without the token; with neither key, ``/metrics`` answers 403
- ``apps.signatures``  ``required`` (default): once the deployment has an application-signing
  key (``xwserver keys signing``), binaries without a valid signature are refused;
  ``optional``: unsigned binaries are accepted (signed ones are still checked)
- ``data.url_fetch``   ``true``: the server fetches a data URL given without its sha256 once,
  to record its size and digest (default ``false``: the client must give them)
- ``data.url_fetch_private`` ``true``: that fetch may reach addresses that are not public
  (loopback, private networks; default ``false``)
- ``data.url_fetch_max_bytes``, ``data.url_fetch_timeout_s`` bounds of that fetch
- ``data.url_ca_file`` CA certificates (PEM) trusted for https data URLs besides the system's

Any other key is ignored, with a warning in :attr:`ServerSettings.warnings` that names it
and the nearest known key (``xwserver check-config`` exits 1 on it); XWHEP's keys that
mean nothing here (``port.tcp``, ``XWdbName``...) are ignored without one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from xwcommon import defaults
from xwcommon.config import as_bool, as_float, as_int, load_properties, unknown_key_warnings
from xwcommon.errors import ConfigError

#: the deployment CA's certificate in the keystore folder (xwserver.keystore makes it)
CA_CERT = "ca.pem"

CONF_NAME = "xwserver.conf"


@dataclass
class ServerSettings:
    home: Path
    url: str = f"https://localhost:{defaults.DEFAULT_PORT}"
    listen: str | None = None
    db_url: str = ""
    lease_s: float = defaults.LEASE_S
    heartbeat_interval_s: float = defaults.HEARTBEAT_INTERVAL_S
    max_retry: int = defaults.MAX_RETRY
    trust_after: int = 10
    events_record: bool = True
    events_retention_s: float = 90 * 24 * 3600.0
    token_ttl_s: float = defaults.TOKEN_TTL_S
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    max_json_bytes: int = defaults.MAX_JSON_BYTES
    disk_reserve_bytes: int = defaults.DISK_RESERVE_BYTES
    aliases: str = ""
    reaper_interval_s: float = defaults.REAPER_INTERVAL_S
    work_request_recheck_s: float = defaults.WORK_REQUEST_RECHECK_S
    max_waiting_requests: int = defaults.MAX_WAITING_REQUESTS
    max_work_in_flight: int = defaults.MAX_WORK_IN_FLIGHT
    come_back_s: float = defaults.COME_BACK_S
    db_wait_s: float = defaults.DB_WAIT_S
    processes: int = 1
    gc_interval_s: float = defaults.GC_INTERVAL_S
    gc_grace_s: float = defaults.GC_GRACE_S
    login_failures_allowed: int = defaults.LOGIN_FAILURES_ALLOWED
    login_backoff_cap_s: float = defaults.LOGIN_BACKOFF_CAP_S
    host_key_rotate_s: float = defaults.HOST_KEY_ROTATE_S
    max_hosts_per_identity: int = 0
    host_lost_heartbeats: float = defaults.HOST_LOST_HEARTBEATS
    host_prune_after_s: float = defaults.HOST_PRUNE_AFTER_S
    metrics_token: str = ""
    metrics_allow: str = ""
    #: application signatures (xwserver/signing.py): "required" or "optional"
    app_signatures: str = "required"
    #: data by URL (xwserver/urls.py): may the server fetch a URL to learn its digest
    url_fetch: bool = False
    url_fetch_private: bool = False
    url_fetch_max_bytes: int = defaults.URL_FETCH_MAX_BYTES
    url_fetch_timeout_s: float = defaults.URL_FETCH_TIMEOUT_S
    url_ca_file: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: what is wrong but not fatal in the config (unknown keys), one message each
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if not self.db_url:
            self.db_url = f"sqlite+aiosqlite:///{self.var_dir / 'xwserver.db'}"

    # -- derived paths -----------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / CONF_NAME

    @property
    def keystore_dir(self) -> Path:
        return self.home / "keystore"

    @property
    def ca_file(self) -> Path:
        """The deployment CA's certificate, which workers and clients trust (and nothing else)."""
        return self.keystore_dir / CA_CERT

    @property
    def var_dir(self) -> Path:
        return self.home / "var"

    @property
    def data_dir(self) -> Path:
        return self.var_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def pid_file(self) -> Path:
        return self.var_dir / "xwserver.pid"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or defaults.DEFAULT_PORT

    @property
    def uri_hosts(self) -> frozenset[str]:
        """The host:port names ``xw://`` URIs sent to this server may carry: its own and its aliases."""
        return frozenset({self.netloc.lower(), *(a.lower() for a in self.aliases.replace(",", " ").split())})

    @property
    def netloc(self) -> str:
        """``host:port`` as it appears in object URIs."""
        return urlsplit(self.url).netloc

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, home: str | os.PathLike[str]) -> ServerSettings:
        home = Path(home).resolve()
        conf = home / "conf" / CONF_NAME
        if not conf.is_file():
            raise ConfigError(
                f"{conf} does not exist; create the server home with: xwserver init --home {home}"
            )
        props = load_properties(conf)
        s = cls(home=home)
        known = {
            "server.url": ("url", str),
            "server.listen": ("listen", str),
            "db.url": ("db_url", str),
            "lease_s": ("lease_s", float),
            "heartbeat_interval_s": ("heartbeat_interval_s", float),
            "max_retry": ("max_retry", int),
            "trust_after": ("trust_after", int),
            "events.record": ("events_record", bool),
            "events.retention_s": ("events_retention_s", float),
            "token_ttl_s": ("token_ttl_s", float),
            "max_body_bytes": ("max_body_bytes", int),
            "max_json_bytes": ("max_json_bytes", int),
            "disk_reserve_bytes": ("disk_reserve_bytes", int),
            "server.aliases": ("aliases", str),
            "reaper_interval_s": ("reaper_interval_s", float),
            "work_request_recheck_s": ("work_request_recheck_s", float),
            "max_waiting_requests": ("max_waiting_requests", int),
            "max_work_in_flight": ("max_work_in_flight", int),
            "come_back_s": ("come_back_s", float),
            "db_wait_s": ("db_wait_s", float),
            "server.processes": ("processes", int),
            "gc_interval_s": ("gc_interval_s", float),
            "gc_grace_s": ("gc_grace_s", float),
            "login_failures_allowed": ("login_failures_allowed", int),
            "login_backoff_cap_s": ("login_backoff_cap_s", float),
            "host_key_rotate_s": ("host_key_rotate_s", float),
            "max_hosts_per_identity": ("max_hosts_per_identity", int),
            "host_lost_heartbeats": ("host_lost_heartbeats", float),
            "host_prune_after_s": ("host_prune_after_s", float),
            "metrics.token": ("metrics_token", str),
            "metrics.allow": ("metrics_allow", str),
            "apps.signatures": ("app_signatures", str),
            "data.url_fetch": ("url_fetch", bool),
            "data.url_fetch_private": ("url_fetch_private", bool),
            "data.url_fetch_max_bytes": ("url_fetch_max_bytes", int),
            "data.url_fetch_timeout_s": ("url_fetch_timeout_s", float),
            "data.url_ca_file": ("url_ca_file", str),
        }
        s.warnings = unknown_key_warnings(props, known, source=str(conf))
        for key, value in props.items():
            if key not in known:
                s.extra[key] = value
                continue
            attr, kind = known[key]
            if kind is int:
                setattr(s, attr, as_int(value, key=key, minimum=0))
            elif kind is float:
                setattr(s, attr, as_float(value, key=key, minimum=0.0))
            elif kind is bool:
                setattr(s, attr, as_bool(value, key=key))
            else:
                setattr(s, attr, value)
        if not s.url.startswith("https://"):
            raise ConfigError(f"server.url: must be an https:// URL, got {s.url!r}")
        if not s.db_url:
            s.db_url = f"sqlite+aiosqlite:///{s.var_dir / 'xwserver.db'}"
        if s.app_signatures not in ("required", "optional"):
            raise ConfigError(f"apps.signatures: required or optional, got {s.app_signatures!r}")
        return s
