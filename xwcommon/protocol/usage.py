"""``GET /usage``: what users and user groups used over a period (``xwusage``)."""

from __future__ import annotations

from typing import Literal

from . import Answer, Bytes, Seconds

_YEAR = r"[1-8][0-9]{3}"
#: leap years among 1000-8999: by 4 but not by 100, or by 400
_LEAP_YEAR = (
    r"([1-8][0-9](0[48]|[2468][048]|[13579][26])|(1[26]|2[048]|3[26]|4[048]|5[26]|6[048]|7[26]|8[048])00)"
)
_DAY = (
    rf"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
    rf"|{_LEAP_YEAR}-02-29)"
)
_TIME = r"T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
#: a moment of a usage period: an ISO 8601 date, or date and time (UTC unless an offset is
#: given), years 1000 to 8999. Exactly the calendar's dates: whatever matches is a moment
#: the server takes, so the OpenAPI document and the server agree on every string.
MOMENT_PATTERN = rf"^{_DAY}({_TIME})?$(?!\n)"


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
