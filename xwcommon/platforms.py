"""Operating system and CPU names: Python's ``platform`` names, XWHEP's accepted as aliases."""

from __future__ import annotations

import platform

from .errors import BadRequest

ANY = "any"

_OS_ALIASES = {
    "linux": "linux",
    "darwin": "darwin",
    "macosx": "darwin",
    "macos": "darwin",
    "mac_os_x": "darwin",
    "windows": "windows",
    "win32": "windows",
    "win64": "windows",
    "any": ANY,
}

_CPU_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "ix86": "i686",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "i686": "i686",
    "x86": "i686",
    "ppc64le": "ppc64le",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "armv7l": "armv7l",
    "arm": "armv7l",
    "riscv64": "riscv64",
    "s390x": "s390x",
    "any": ANY,
}


def normalize_os(name: str) -> str:
    """``LINUX`` → ``linux``, ``MACOSX`` → ``darwin``, ``WIN32`` → ``windows``."""
    key = name.strip().lower()
    try:
        return _OS_ALIASES[key]
    except KeyError:
        raise BadRequest(
            f"unknown OS {name!r}; use one of linux, darwin, windows (or XWHEP's LINUX, MACOSX, WIN32, or any)"
        ) from None


def normalize_cpu(name: str) -> str:
    """``AMD64`` → ``x86_64``, ``IX86`` → ``i686``."""
    key = name.strip().lower()
    try:
        return _CPU_ALIASES[key]
    except KeyError:
        raise BadRequest(
            f"unknown CPU {name!r}; use one of x86_64, aarch64, i686, ppc64le, armv7l, riscv64 "
            "(or XWHEP's AMD64, IX86, or any)"
        ) from None


def local_os() -> str:
    return normalize_os(platform.system())


def local_cpu() -> str:
    return normalize_cpu(platform.machine())
