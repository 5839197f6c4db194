"""Combinations: ``all:date,cpu`` (every policy allows) and ``any:date,idle`` (one does).

The syntax is ``activator.class=<all|any>:<policy>,<policy>,...``; each ``<policy>`` is any
name ``activator.class`` accepts, XWHEP's class names included. Combinations do not nest
(commas would be ambiguous); ``all:`` of one policy is that policy. Every policy is asked at
every check, even after the answer is known, so that sampling policies (``cpu``) keep a
continuous history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import ActivationPolicy


class Combination(ActivationPolicy):
    """Several policies asked together; subclasses say how their answers combine."""

    #: ``all`` or ``any``, as written in ``activator.class``
    word = ""

    def __init__(self, policies: Sequence[ActivationPolicy]) -> None:
        self.policies = list(policies)
        self.check_interval_s = min((p.check_interval_s for p in self.policies), default=5.0)
        reasons = [f"{p.describe()}: {p.unavailable}" for p in self.policies if p.unavailable]
        self.unavailable = "; ".join(reasons) or None

    def allows(self, now: float) -> bool:
        answers = [p.allows(now) for p in self.policies]
        return self.combine(answers)

    def combine(self, answers: list[bool]) -> bool:
        raise NotImplementedError

    def set_job_pids(self, pids: Iterable[int]) -> None:
        pids = list(pids)
        for p in self.policies:
            p.set_job_pids(pids)

    def close(self) -> None:
        for p in self.policies:
            p.close()

    def describe(self) -> str:
        inner = ", ".join(p.describe() for p in self.policies)
        return f"{self.word}({inner})"


class AllOf(Combination):
    """Computes only while every listed policy allows."""

    word = "all"

    def combine(self, answers: list[bool]) -> bool:
        return all(answers)


class AnyOf(Combination):
    """Computes while at least one listed policy allows."""

    word = "any"

    def combine(self, answers: list[bool]) -> bool:
        return any(answers)


#: the words ``activator.class`` accepts before the colon
COMBINATORS: dict[str, type[Combination]] = {"all": AllOf, "any": AnyOf}
