"""XWHEP-style properties files: ``key=value`` or ``key: value``, ``#`` comments."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ConfigError

#: XWHEP keys that mean nothing here (its other transports, its Java runtime, its own
#: database and keystore settings, its tray icon): a config file copied from an XWHEP
#: deployment may keep them without a warning
XWHEP_UNUSED_KEYS = frozenset(
    {
        "port.tcp",
        "port.udp",
        "port.worker.http",
        "port.http",
        "port.xlmrpc",
        "port.sunrpc",
        "java.nio",
        "moduleslogged",
        "xwserver",
        "xwdbname",
        "xwdbuser",
        "xwdbpass",
        "xwdbhost",
        "xwkeystore",
        "xwpassphrase",
        "update.restartcommand",
        "alive.period",
        "tomcat.port",
        "tracer.enable",
        "notify.enable",
        "sandbox.name",
        "sandbox.args",
        "sandbox.embedded",
        "logger.level",
    }
)
#: a known key is suggested for an unknown one when they are at least this similar (difflib)
NEAREST_KEY_CUTOFF = 0.6


def parse_properties(text: str, *, source: str = "<config>") -> dict[str, str]:
    """Parse a properties file; later keys win; keys are kept as written."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        positions = [p for p in (line.find("="), line.find(":")) if p > 0]
        if not positions:
            raise ConfigError(f"{source}:{lineno}: expected 'key=value' or 'key: value', got {raw!r}")
        cut = min(positions)
        key, value = line[:cut].strip(), line[cut + 1 :].strip()
        values[key] = value
    return values


def load_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a properties file; relative paths inside it stay relative to the caller."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
    return parse_properties(text, source=str(p))


def write_properties(
    path: str | os.PathLike[str], values: dict[str, str], *, header: str = "", mode: int = 0o600
) -> None:
    """Write a properties file atomically with the given mode (configs may hold passwords)."""
    p = Path(path)
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    lines += [f"{k}={v}" for k, v in values.items()]
    tmp = p.with_suffix(p.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, p)


def resolve_path(value: str, base: Path) -> Path:
    """A path from a config file: ``~`` expanded, relative to the file's folder."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p)


def as_bool(value: str, *, key: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def as_int(value: str, *, key: str, minimum: int | None = None) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {n}")
    return n


def as_float(value: str, *, key: str, minimum: float | None = None) -> float:
    try:
        n = float(value.strip())
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {n}")
    return n


def nearest_key(key: str, known: Iterable[str]) -> str | None:
    """The known key most like ``key`` (a misspelling's likely intent), or None."""
    by_lower = {k.lower(): k for k in known}
    found = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=NEAREST_KEY_CUTOFF)
    return by_lower[found[0]] if found else None


def unknown_keys(props: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """The keys of ``props`` that are neither ``known`` nor an XWHEP key without meaning here."""
    wanted = set(known)
    return [k for k in props if k not in wanted and k.lower() not in XWHEP_UNUSED_KEYS]


def unknown_key_warnings(props: Mapping[str, str], known: Iterable[str], *, source: str) -> list[str]:
    """One message per unknown key of ``props``, naming it and the nearest known key.

    A misspelled key would otherwise be ignored in silence and its default used
    (``workpool.sise=1`` leaving every CPU to the worker).
    """
    known = list(known)
    messages = []
    for key in unknown_keys(props, known):
        near = nearest_key(key, known)
        hint = f"; did you mean {near!r}?" if near else ""
        messages.append(f"{source}: unknown key {key!r} is ignored{hint}")
    return messages


def with_https_port(servers: Iterable[str], port: int | None) -> list[str]:
    """``dispatcher.servers`` entries with XWHEP's ``port.https`` added where they name no port.

    ``host``, ``[::1]`` and ``https://host`` get ``:port``; an entry with its own port keeps it.
    """
    if port is None:
        return list(servers)
    out = []
    for entry in servers:
        scheme, sep, rest = entry.partition("://")
        if not sep:
            scheme, rest = "", entry
        hostport, slash, path = rest.partition("/")
        if not hostport.rsplit("]", 1)[-1].count(":"):
            hostport = f"{hostport}:{port}"
        out.append(f"{scheme}{sep}{hostport}{slash}{path}")
    return out


def https_port(props: Mapping[str, str], *, key: str = "port.https") -> int | None:
    """XWHEP's ``port.https`` (1 to 65535) if set, else None."""
    value = props.get(key, "").strip()
    if not value:
        return None
    port = as_int(value, key=key, minimum=1)
    if port > 65535:
        raise ConfigError(f"{key}: a TCP port from 1 to 65535, got {value!r}")
    return port
