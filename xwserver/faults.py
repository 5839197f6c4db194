"""Fault-injection points that only tests enable: the server dies at an exact moment.

A chaos test that kills at random can pass while a race stays open; these points kill the
process exactly where a race would hurt (between a commit and its answer). They are off
unless the environment variable ``XW_FAULTS`` names them when the server starts, e.g.
``XW_FAULTS=after_claim_commit:3`` (die at the third time the point is reached), so a
deployment never pays more than one dictionary lookup for them.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

#: after a claim committed its assignments, before the work request is answered
AFTER_CLAIM_COMMIT = "after_claim_commit"
#: after reports were applied and committed, before the work request is answered
AFTER_REPORT_COMMIT = "after_report_commit"
POINTS = frozenset({AFTER_CLAIM_COMMIT, AFTER_REPORT_COMMIT})


def _parse(text: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"XW_FAULTS: unknown fault point {name!r}; known: {', '.join(sorted(POINTS))}")
        armed[name] = int(count) if count else 1
    return armed


_armed = _parse(os.environ.get("XW_FAULTS", ""))


def point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if a test armed ``name`` and its count is reached."""
    if not _armed:
        return
    left = _armed.get(name)
    if left is None:
        return
    if left > 1:
        _armed[name] = left - 1
        return
    log.critical("fault injection: dying at %s", name)
    os.kill(os.getpid(), signal.SIGKILL)
