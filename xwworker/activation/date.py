"""Compute at set days and hours (XWHEP's ``DateActivator``), or when a cron expression matches.

``activator.date`` takes one of two forms.

**XWHEP's grammar**, as its manual documents it: gaps separated by commas (or semicolons,
as XWHEP also accepted), each ``DAYS [HOURS]``.

- ``DAYS`` is ``*``, one day, or a range ``N-M``. Days are ``1``..``7`` with 1 = Sunday, or
  names and three-letter abbreviations in any case (``sun``, ``Sunday``, ``THU``).
- ``HOURS`` is ``*``, one hour ``N`` (N:00 to N:59) or a range ``N-M`` (N:00 to M:59), hours
  0..23. A gap without hours means whole days.
- A range whose end comes before its start wraps: days ``Thu-Tue`` (``5-3``) are Thursday to
  Tuesday through the weekend, hours ``18-3`` are 18:00 to 03:59 the next morning. (XWHEP
  compared ``first <= today <= last`` and so never ran on a wrapping day range.)

The manual's prose for two examples is one day off against its own table: with 1 = Sunday,
``2-Thu *`` is Monday to Thursday (as XWHEP's source says) and ``4-2`` Wednesday to Monday.
We follow the table; write ``3-Thu`` or ``5-3`` for what the prose says.

A night belongs to the day it starts on: ``Thu-Tue 18-3`` is active from Thursday 18:00 to
Friday 03:59, ..., from Tuesday 18:00 to Wednesday 03:59, and *not* on Thursday 00:00-03:59
(that is Wednesday's night). XWHEP checked the day and the hour separately and so ran on
Thursday's early morning and not on Wednesday's; we follow what its manual says instead.

**A standard 5-field cron expression** (``minute hour day-of-month month day-of-week``, as
croniter reads it, 0 = Sunday there): active during every minute the expression matches, so
``* 9-17 * * 1-5`` is weekdays 09:00-17:59 and ``*/10 * * * *`` one minute in ten. Write
``cron:`` before it to force this reading; without it, a value of exactly five
space-separated fields that croniter accepts is taken as cron.

Times are the machine's local time unless a ``tz`` is given (tests give UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from xwcommon.errors import ConfigError

from ..settings import WorkerSettings
from . import ActivationPolicy

KEY = "activator.date"

#: XWHEP's day numbers: 1 = Sunday ... 7 = Saturday
_DAY_NAMES = {
    "sun": 1,
    "sunday": 1,
    "mon": 2,
    "monday": 2,
    "tue": 3,
    "tuesday": 3,
    "wed": 4,
    "wednesday": 4,
    "thu": 5,
    "thursday": 5,
    "fri": 6,
    "friday": 6,
    "sat": 7,
    "saturday": 7,
}
ALL_DAYS = frozenset(range(1, 8))


@dataclass(frozen=True)
class Gap:
    """One comma-separated part of an XWHEP date: these days, from ``first_hour`` to ``last_hour``.

    ``last_hour < first_hour`` is a night that runs past midnight into the next day.
    """

    days: frozenset[int]
    first_hour: int = 0
    last_hour: int = 23

    def contains(self, xw_day: int, hour: int) -> bool:
        if self.first_hour <= self.last_hour:
            return xw_day in self.days and self.first_hour <= hour <= self.last_hour
        if hour >= self.first_hour:  # the evening of a night that starts today
            return xw_day in self.days
        if hour <= self.last_hour:  # the morning after a night that started yesterday
            return (xw_day - 2) % 7 + 1 in self.days
        return False


def xwhep_day(dt: datetime) -> int:
    """XWHEP's day number of ``dt``: 1 = Sunday ... 7 = Saturday."""
    return (dt.weekday() + 1) % 7 + 1


def _wrapping_range(first: int, last: int, low: int, high: int) -> frozenset[int]:
    if first <= last:
        return frozenset(range(first, last + 1))
    return frozenset(range(first, high + 1)) | frozenset(range(low, last + 1))


def _day(text: str, where: str) -> int:
    t = text.strip().lower()
    if t.isdigit() and 1 <= int(t) <= 7:
        return int(t)
    if t in _DAY_NAMES:
        return _DAY_NAMES[t]
    raise ConfigError(f"{KEY}: {text!r} in {where!r} is not a day; use 1 (Sunday) to 7 (Saturday) or a name")


def _hour(text: str, where: str) -> int:
    t = text.strip()
    if t.isdigit() and 0 <= int(t) <= 23:
        return int(t)
    raise ConfigError(f"{KEY}: {text!r} in {where!r} is not an hour from 0 to 23")


def _parse_gap(text: str) -> Gap:
    fields = text.split()
    if not 1 <= len(fields) <= 2:
        raise ConfigError(f"{KEY}: {text!r} must be 'DAYS' or 'DAYS HOURS' (e.g. 'Thu-Tue 18-3')")
    days_text = fields[0]
    if days_text == "*":
        days = ALL_DAYS
    elif "-" in days_text:
        first, _, last = days_text.partition("-")
        days = _wrapping_range(_day(first, text), _day(last, text), 1, 7)
    else:
        days = frozenset({_day(days_text, text)})
    hours_text = fields[1] if len(fields) == 2 else "*"
    if hours_text == "*":
        return Gap(days)
    if "-" in hours_text:
        first, _, last = hours_text.partition("-")
        return Gap(days, _hour(first, text), _hour(last, text))
    h = _hour(hours_text, text)
    return Gap(days, h, h)


def parse_xwhep(text: str) -> list[Gap]:
    """The gaps of an XWHEP ``activator.date``; raises ConfigError naming the key."""
    parts = [p.strip() for p in re.split(r"[,;]", text)]
    if not all(parts):
        raise ConfigError(f"{KEY}: {text!r} has an empty part between commas")
    return [_parse_gap(p) for p in parts]


def _looks_like_cron(text: str) -> bool:
    if len(text.split()) != 5 or re.search(r"[,;]\s|;", text):
        return False
    try:
        from croniter import croniter
    except ImportError:
        return False
    return bool(croniter.is_valid(text))


class DateActivator(ActivationPolicy):
    """Computes during the days and hours of ``activator.date`` (see the module docstring)."""

    names = ("date", "dateactivator", "xtremweb.worker.DateActivator")
    check_interval_s = 30.0

    def __init__(self, spec: str, *, tz: tzinfo | None = None) -> None:
        self.spec = spec.strip()
        self.tz = tz
        self.cron: str | None = None
        self.gaps: list[Gap] = []
        self._last: bool | None = None
        if not self.spec:
            raise ConfigError(f"{KEY}: missing; the date policy needs e.g. {KEY}=Thu-Tue 18-3")
        forced = self.spec.lower().startswith("cron:")
        if forced or _looks_like_cron(self.spec):
            self.cron = self.spec[5:].strip() if forced else self.spec
            self._check_cron()
        else:
            self.gaps = parse_xwhep(self.spec)

    def _check_cron(self) -> None:
        try:
            from croniter import croniter
        except ImportError:
            raise ConfigError(
                f"{KEY}: cron expressions need the croniter package (pip install croniter)"
            ) from None
        if self.cron is None or not croniter.is_valid(self.cron) or len(self.cron.split()) != 5:
            raise ConfigError(f"{KEY}: {self.cron!r} is not a 5-field cron expression")

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> DateActivator:
        return cls(settings.activator_date)

    def allows(self, now: float) -> bool:
        dt = datetime.fromtimestamp(now, self.tz)
        if self.cron is not None:
            from croniter import croniter

            # croniter.match looks at the minute, so a minute that matches is active throughout
            self._last = bool(croniter.match(self.cron, dt.replace(second=0, microsecond=0)))
        else:
            day = xwhep_day(dt)
            self._last = any(g.contains(day, dt.hour) for g in self.gaps)
        return self._last

    def describe(self) -> str:
        kind = "cron" if self.cron is not None else "date"
        state = {None: "", True: ": active", False: ": inactive"}[self._last]
        return f"{kind} {self.cron or self.spec!r}{state}"
