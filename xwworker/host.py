"""What the worker tells the server about its host at registration."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psutil

from xwcommon import __version__
from xwcommon.platforms import local_cpu, local_os

from .settings import WorkerSettings

log = logging.getLogger(__name__)


def describe_host(settings: WorkerSettings) -> dict[str, Any]:
    """The ``POST /work/register`` body: name, os, cpu, cores, memory, free disk, tags, version."""
    return {
        "name": settings.name,
        "os": local_os(),
        "cpu": local_cpu(),
        "cores": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        "memory_bytes": int(psutil.virtual_memory().total),
        "disk_free_bytes": disk_free_bytes(settings.tmpdir),
        "tags": list(settings.tags),
        "version": __version__,
    }


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return int(psutil.disk_usage(str(probe)).free)
    except OSError as exc:
        log.warning("cannot measure free disk space of %s: %s", probe, exc)
        return 0
