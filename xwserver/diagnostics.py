"""``xwserver diagnostics --home DIR``: what an administrator checks first, in one report.

Each check ends ``ok``, ``warn`` (worth a look, not wrong) or ``fail`` (the server would not
start, or would start and misbehave); the command exits 1 if any check failed. It reads the
home and the database and changes nothing: a database behind the latest migration is
reported, not upgraded (``xwserver start`` upgrades it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xwcommon import __version__
from xwcommon.errors import ConfigError

from . import keystore
from .settings import ServerSettings

#: a certificate that ends sooner than this is a warning
EXPIRY_WARNING_DAYS = 30
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    #: figures a script may read (``--format json``)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str, **facts: Any) -> None:
        self.checks.append(Check(name, status, detail, facts))

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, **c.facts} for c in self.checks
            ],
        }

    def as_text(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        failed = sum(c.status == FAIL for c in self.checks)
        lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
        return "\n".join(lines)


async def diagnose(home: Path, *, now: dt.datetime | None = None) -> Report:
    now = now or dt.datetime.now(dt.UTC)
    report = Report()
    report.add("version", OK, f"xwserver {__version__}", version=__version__)
    try:
        settings = ServerSettings.load(home)
    except ConfigError as exc:
        report.add("config", FAIL, exc.message)
        return report
    _config(report, settings)
    _keystore(report, settings, now)
    _disk(report, settings)
    _bind(report, settings)
    if await _database(report, settings):
        await _counts(report, settings)
    return report


# -- the checks ---------------------------------------------------------------------------------------
def _config(report: Report, settings: ServerSettings) -> None:
    from .metrics import check_settings

    for warning in settings.warnings:  # what `xwserver check-config` says: unknown keys
        report.add("config key", FAIL, warning)
    try:
        check_settings(settings.metrics_token, settings.metrics_allow)
    except ConfigError as exc:
        report.add("config", FAIL, exc.message)
        return
    if not settings.warnings:
        report.add("config", OK, f"{settings.conf_file}: every key known")


def _keystore(report: Report, settings: ServerSettings, now: dt.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    paths = keystore.KeystorePaths.of(settings.keystore_dir)
    missing = [p.name for p in paths.all() if not p.is_file()]
    if missing:
        report.add("keystore", FAIL, f"{settings.keystore_dir} lacks {', '.join(missing)}")
        return
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.server_key.read_bytes(), password=None)
    except (ValueError, OSError) as exc:
        report.add("keystore", FAIL, f"cannot read the keystore {settings.keystore_dir}: {exc}")
        return
    for name, c in (("CA certificate", ca), ("server certificate", cert)):
        start, end = c.not_valid_before_utc, c.not_valid_after_utc
        facts = {"not_before": start.isoformat(), "not_after": end.isoformat()}
        days = (end - now).days
        if now < start:
            report.add(name, FAIL, f"not valid before {start:%Y-%m-%d %H:%M} UTC", **facts)
        elif now >= end:
            report.add(name, FAIL, f"expired on {end:%Y-%m-%d %H:%M} UTC", **facts)
        elif days < EXPIRY_WARNING_DAYS:
            report.add(name, WARN, f"expires on {end:%Y-%m-%d} UTC, in {days} days", **facts)
        else:
            report.add(name, OK, f"valid until {end:%Y-%m-%d} UTC ({days} days)", **facts)
    problems = []
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
        problems.append(f"server.pem is not signed by ca.pem ({type(exc).__name__})")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        problems.append("server.key is not the key of server.pem")
    if not keystore.covers_host(paths.server_cert, settings.host):
        names = ", ".join(keystore.certificate_hosts(paths.server_cert))
        problems.append(f"server.pem does not name {settings.host} (it names {names})")
    if problems:
        report.add("keystore", FAIL, "; ".join(problems))
    else:
        report.add("keystore", OK, f"server.pem signed by ca.pem, names {settings.host}, matches server.key")


def _disk(report: Report, settings: ServerSettings) -> None:
    folder = settings.data_dir
    probe = folder if folder.exists() else settings.var_dir if settings.var_dir.exists() else settings.home
    usage = shutil.disk_usage(probe)
    facts = {
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "reserve_bytes": settings.disk_reserve_bytes,
    }
    text = f"{_size(usage.free)} free of {_size(usage.total)} at {folder} (reserve {_size(settings.disk_reserve_bytes)})"
    if usage.free <= settings.disk_reserve_bytes:
        report.add("data store disk", FAIL, text + ": uploads are refused (507)", **facts)
    elif usage.free < 2 * settings.disk_reserve_bytes:
        report.add("data store disk", WARN, text, **facts)
    else:
        report.add("data store disk", OK, text, **facts)


def _bind(report: Report, settings: ServerSettings) -> None:
    from .cli import bind_address, loopback_warning

    bind = bind_address(settings)
    try:
        url_addresses = _addresses(settings.host)
    except OSError as exc:
        report.add("address", FAIL, f"the URL's host {settings.host} does not resolve ({exc}); binds {bind}")
        return
    listen = (settings.listen if settings.listen is not None else settings.host).strip("[]")
    facts = {"bind": bind, "url_host": settings.host, "url_addresses": sorted(url_addresses)}
    if listen in {"", "0.0.0.0", "::"}:
        report.add(
            "address",
            OK,
            f"binds {bind} (every address); {settings.host} resolves to {_list(url_addresses)}",
            **facts,
        )
        return
    try:
        bound = _addresses(listen)
    except OSError as exc:
        report.add("address", FAIL, f"server.listen={listen} does not resolve ({exc})", **facts)
        return
    if not bound & url_addresses:
        report.add(
            "address",
            FAIL,
            f"binds {bind} ({_list(bound)}) but {settings.host} resolves to {_list(url_addresses)}: "
            "the URL does not reach the server",
            **facts,
        )
    elif warning := loopback_warning(settings):
        report.add("address", WARN, warning, **facts)
    else:
        report.add(
            "address", OK, f"binds {bind}; {settings.host} resolves to {_list(url_addresses)}", **facts
        )


async def _database(report: Report, settings: ServerSettings) -> bool:
    """Reachable and at the latest migration; True if the counts can be read."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from .cli import _safe_db_url
    from .db.engine import MIGRATIONS_DIR, create_engine

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    where = _safe_db_url(settings.db_url)
    engine = create_engine(settings.db_url, wait_s=10)

    def current(sync_conn: Any) -> set[str]:
        return set(MigrationContext.configure(sync_conn).get_current_heads())

    try:
        async with engine.connect() as conn:
            at = await conn.run_sync(current)
    except Exception as exc:  # any driver's failure to connect is the finding itself
        report.add("database", FAIL, f"{where} does not answer: {_first_line(exc)}")
        return False
    finally:
        await engine.dispose()
    facts = {"revision": sorted(at), "latest": sorted(heads)}
    if at == heads:
        report.add("database", OK, f"{where} answers, at the latest migration {_list(heads)}", **facts)
        return True
    if not at:
        report.add(
            "database", FAIL, f"{where} answers but has no schema: run xwserver start (it migrates)", **facts
        )
        return False
    known = _known_revisions(cfg)
    if at <= known:
        report.add(
            "database",
            FAIL,
            f"{where} is at migration {_list(at)}, behind the latest {_list(heads)}: "
            "xwserver start brings it up to date",
            **facts,
        )
    else:
        report.add(
            "database",
            FAIL,
            f"{where} is at migration {_list(at)}, unknown to this xwserver {__version__} "
            "(a newer version wrote it)",
            **facts,
        )
    return False


async def _counts(report: Report, settings: ServerSettings) -> None:
    from .db.engine import create_engine
    from .metrics import DatabaseCounts
    from .state import Server
    from .store import DataStore

    srv = Server(settings, create_engine(settings.db_url, wait_s=10), DataStore(settings.data_dir))
    try:
        counts = DatabaseCounts(srv)
        await counts.refresh()
        families = {
            f.name: {s.labels.get("status") or s.labels.get("state"): int(s.value) for s in f.samples}
            for f in counts.collect()
        }
    finally:
        await srv.engine.dispose()
    for name, family in (("jobs", "xw_jobs"), ("hosts", "xw_hosts")):
        by = families.get(family, {})
        shown = ", ".join(f"{k} {v}" for k, v in by.items() if v) or "none"
        report.add(name, OK, shown, **{str(k): v for k, v in by.items()})


# -- helpers ---------------------------------------------------------------------------------------------
def _known_revisions(cfg: Any) -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}


def _addresses(host: str) -> set[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return {str(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos}


def _list(items: set[str]) -> str:
    return ", ".join(sorted(items)) or "nothing"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def run(home: Path, *, fmt: str = "text", out: Callable[[str], None] = print) -> int:
    import asyncio
    import json

    report = asyncio.run(diagnose(home))
    out(json.dumps(report.as_json(), indent=2) if fmt == "json" else report.as_text())
    return 1 if report.failed else 0
