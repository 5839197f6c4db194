"""Bounded waits: every wait in these tests has a deadline, so a hang fails instead of hanging."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when a condition did not come true before its deadline."""


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    tolerate: tuple[type[BaseException], ...] = (OSError,),
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Exceptions of the ``tolerate`` kinds (e.g. a server that is restarting) count as
    "not yet". On timeout raise :class:`WaitTimeout` naming ``what``, the last value or
    error seen and, if given, ``describe()`` (logs, states) to explain the hang.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except tolerate as exc:
            last = exc
        if time.monotonic() >= deadline:
            details = f"\n{describe()}" if describe is not None else ""
            raise WaitTimeout(
                f"timed out after {timeout_s:.0f}s waiting for {what}; last seen: {last!r}{details}"
            )
        time.sleep(interval_s)
