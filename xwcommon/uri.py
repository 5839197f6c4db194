"""Object identifiers: a UUID each, shown as ``xw://<server>/<uid>``."""

from __future__ import annotations

import uuid

from .errors import BadRequest

SCHEME = "xw://"


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
        candidate = candidate[len(SCHEME) :].rstrip("/").rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(candidate))
    except ValueError:
        shown = text if len(text) <= 100 else text[:100] + "…"
        field = f'"{what}": ' if what else ""
        raise BadRequest(f"{field}{shown!r} is neither a UID nor an xw:// URI") from None


def is_uid(text: str) -> bool:
    try:
        parse_uid(text)
    except BadRequest:
        return False
    return True
