"""Object identifiers: a UUID each, shown as ``xw://<server>/<uid>``."""

from __future__ import annotations

import os
import time
import uuid
from contextvars import ContextVar

from .errors import BadRequest

SCHEME = "xw://"

#: the ``host:port`` names (lower case) a URI may carry where it is parsed: a server sets it
#: for each request to its own name and its aliases, so ``xw://evil:1/<uid>`` is refused
#: rather than taken for the local object ``<uid>``; unset (None), any server is taken
LOCAL_SERVERS: ContextVar[frozenset[str] | None] = ContextVar("xw_local_servers", default=None)


def new_uid() -> str:
    """A new UUID of version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74
    random bits. Objects made together have neighbouring UIDs, so every index keyed by UID
    (jobs, tasks, data, the event history) takes new keys at its end instead of all over
    it: a transaction dirties a page or two per index rather than one per key, which is
    most of what an index costs SQLite's write-ahead log. Unique as a version 4 UUID is
    for all purposes here (74 random bits within one millisecond), and still unguessable:
    no right is ever granted by knowing a UID."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, of which 74 are used
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version
        | (rand >> 68) << 64  # rand_a, 12 bits
        | 0b10 << 62  # variant
        | (rand & (1 << 62) - 1)  # rand_b, 62 bits
    )
    return str(uuid.UUID(int=value))


def make_uri(server: str, uid: str) -> str:
    """``xw://host:port/uid``; ``server`` may be a host[:port] or an https URL."""
    host = server.split("://", 1)[-1].rstrip("/")
    return f"{SCHEME}{host}/{uid}"


def parse_uid(text: str, what: str | None = None) -> str:
    """Accept a bare UID or an ``xw://server/uid`` URI; return the canonical UID.

    ``what`` names the field the text came from, so the error says which one was wrong.
    """
    candidate = text.strip()
    if candidate.startswith(SCHEME):
        rest = candidate[len(SCHEME) :]
        _check_server(rest.split("/", 1)[0], text, what)
        candidate = rest.rstrip("/").rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(candidate))
    except ValueError:
        shown = text if len(text) <= 100 else text[:100] + "…"
        field = f'"{what}": ' if what else ""
        raise BadRequest(f"{field}{shown!r} is neither a UID nor an xw:// URI") from None


def _check_server(server: str, text: str, what: str | None) -> None:
    local = LOCAL_SERVERS.get()
    if local is None or server.lower() in local:
        return
    shown = text if len(text) <= 100 else text[:100] + "…"
    field = f'"{what}": ' if what else ""
    raise BadRequest(
        f"{field}{shown!r} names server {server!r}, not this one ({', '.join(sorted(local))}); "
        "objects of another deployment cannot be used here"
    )


def is_uid(text: str) -> bool:
    try:
        parse_uid(text)
    except BadRequest:
        return False
    return True
