"""``GET /usage``: what users and user groups used over a period (``xwusage``)."""

from __future__ import annotations

from typing import Literal

from . import Answer, Bytes, Seconds


class UsageRow(Answer, kw_only=True):
    """One user's (``scope`` user) or one user group's (``scope`` group) use of the period.

    ``jobs``: jobs submitted in the period; ``tasks``: attempts that ended in it, with their
    ``cpu_s`` (user + system) and ``wall_s``; ``bytes_up``: data the user stored in it (inputs,
    binaries); ``bytes_down``: results computed for the user's jobs in it."""

    scope: Literal["user", "group"]
    #: the user's login, or the group's label ("" for users in no group)
    name: str
    #: the user's group label ("" if none); for a group row, its label again
    group: str
    users: int
    jobs: int
    tasks: int
    cpu_s: Seconds
    wall_s: Seconds
    bytes_up: Bytes
    bytes_down: Bytes


class UsageReport(Answer, kw_only=True):
    """Every user the caller may see (a SUPER user: all of them, and their groups; any other
    user: itself), over ``since`` (None: from the start) to ``until``."""

    since: str | None
    until: str
    usage: list[UsageRow]
