"""Object identifiers: a UUID each, shown as ``xw://<server>/<uid>``."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

from .errors import BadRequest

SCHEME = "xw://"

#: the ``host:port`` names (lower case) a URI may carry where it is parsed: a server sets it
#: for each request to its own name and its aliases, so ``xw://evil:1/<uid>`` is refused
#: rather than taken for the local object ``<uid>``; unset (None), any server is taken
LOCAL_SERVERS: ContextVar[frozenset[str] | None] = ContextVar("xw_local_servers", default=None)


def new_uid() -> str:
    return str(uuid.uuid4())


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
