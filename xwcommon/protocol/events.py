"""``GET /events``: the event history (see xwserver/events.py)."""

from __future__ import annotations

from typing import Literal

from . import Answer
from .client import Timestamp, Uid

EventKind = Literal["job", "task", "host", "user", "usergroup", "app"]


class Event(Answer, kw_only=True):
    """One change: what (``kind``, ``object_uid``), ``action``, when, who (``actor_uid``,
    null for the server itself) from which ``address``, and why (``detail``)."""

    id: int
    at: Timestamp
    kind: EventKind
    object_uid: Uid
    action: str
    actor_uid: Uid | None = None
    address: str | None = None
    job_uid: Uid | None = None
    host_uid: Uid | None = None
    detail: str | None = None


class EventList(Answer, kw_only=True):
    events: list[Event]
