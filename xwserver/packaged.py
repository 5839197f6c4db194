"""The files the distribution carries besides code: the sample configs (``conf/``), the
service files and installer templates (``installers/``).

In a checkout, ``xwserver/share/conf`` and ``xwserver/share/installers`` link to the
repository's ``conf/`` and ``installers/``; a wheel holds copies of them as package data.
``xwserver init`` writes a home's server config from the sample, and ``xwserver installer``
takes the service units from here, so an installed wheel needs no checkout.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from xwcommon.errors import ConfigError

SERVER_SAMPLE = "conf/xwserver.conf.sample"
WORKER_SAMPLE = "conf/xtremweb.worker.conf"
SYSTEMD_UNIT = "installers/systemd/xwworker.service"
LAUNCHD_PLIST = "installers/launchd/org.xtremweb.xwworker.plist"
WINDOWS_README = "installers/windows/README.md"
INSTALLERS_README = "installers/README.md"


def path(name: str) -> Traversable:
    """A packaged file, by its path under ``share/`` (``conf/xwserver.conf.sample``)."""
    return resources.files("xwserver").joinpath("share", *name.split("/"))


def read_text(name: str) -> str:
    found = path(name)
    if not found.is_file():
        raise ConfigError(
            f"the installation lacks its packaged file {name} (xwserver/share/{name}): reinstall xtremweb-py"
        )
    return found.read_text(encoding="utf-8")


def server_conf(url: str, db_url: str | None = None, *, stamp: str = "") -> str:
    """A home's ``xwserver.conf``: the packaged sample with ``server.url`` (and ``db.url``,
    if given) set and, after its header, the line saying when ``xwserver init`` wrote it."""
    values = {"server.url": url}
    if db_url:
        values["db.url"] = db_url
    lines = set_keys(read_text(SERVER_SAMPLE), values).splitlines()
    if stamp:
        header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
        lines.insert(header, f"# Written by xwserver init {stamp}.")
    return "\n".join(lines) + "\n"


def set_keys(text: str, values: dict[str, str]) -> str:
    """``text`` with the line of each key of ``values`` (set, or commented out as ``#key=``)
    replaced by ``key=value``; a key the text lacks is an error (the sample is out of date)."""
    missing = dict(values)
    out = []
    for line in text.splitlines():
        m = re.match(r"^#?([A-Za-z0-9_.]+)=", line)
        if m and m.group(1) in missing:
            key = m.group(1)
            out.append(f"{key}={missing.pop(key)}")
        else:
            out.append(line)
    if missing:
        raise ConfigError(f"the packaged sample config lacks the key(s) {', '.join(sorted(missing))}")
    return "\n".join(out) + "\n"
