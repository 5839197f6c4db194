"""XWHEP-style properties files: ``key=value`` or ``key: value``, ``#`` comments."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


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
