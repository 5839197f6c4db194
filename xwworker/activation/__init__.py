"""Activation policies: when may the volunteer's machine compute?

A policy is one small module in this package defining one :class:`ActivationPolicy`
subclass with the ``names`` it answers to in ``activator.class`` (ours and XWHEP's). Adding a
policy means adding one file here: :func:`load_policy` imports every module of the package,
and subclasses register themselves.

``activator.class`` names one policy (``date``, or XWHEP's ``xtremweb.worker.DateActivator``)
or combines several: ``all:date,cpu`` computes only when every listed policy allows,
``any:date,idle`` when at least one does (see :mod:`.combine`). ``battery.enable=true`` adds
``battery`` to whatever is configured, as ``all:<configured>,battery``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import ClassVar

from xwcommon.errors import ConfigError

from ..settings import WorkerSettings


class ActivationPolicy:
    """Base class of activation policies; every hook is a documented no-op or default.

    Lifecycle, as the worker drives it:

    1. ``from_settings(settings)`` builds the policy once at start; read your own keys from
       ``settings.extra`` and raise :class:`ConfigError` naming the key when one is wrong.
    2. ``allows(now)`` is asked before every work request and every ``check_interval_s``
       seconds while the worker is idle; ``now`` is wall-clock time (``time.time()``).
       While it answers False the worker asks for no work.
    3. ``set_job_pids(pids)`` is called before each ``allows`` with the root pids of the
       worker's own process trees (the worker itself, hence bubblewrap and every job), for
       policies that must tell the worker's own load from the owner's.
    4. ``describe()`` is a short state string (what the policy watches and its last answer)
       that the worker logs and sends with its heartbeats.
    5. ``close()`` is called once when the worker stops.

    ``unavailable`` is None, or says why the policy cannot observe what it needs on this
    machine (no idle-time source, say); the worker logs it at start. Such a policy never
    pretends: it answers what its docstring says it answers when blind.
    """

    #: names accepted in ``activator.class`` (case-insensitive); empty for abstract classes
    names: ClassVar[tuple[str, ...]] = ()
    #: how often (seconds) the worker re-asks a policy that said no
    check_interval_s: float = 5.0
    #: None, or why this policy cannot see what it needs here (logged by the worker at start)
    unavailable: str | None = None

    _registry: ClassVar[dict[str, type[ActivationPolicy]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.names:
            ActivationPolicy._registry[name.lower()] = cls

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> ActivationPolicy:
        return cls()

    def allows(self, now: float) -> bool:
        """True when the machine may compute at wall-clock time ``now``."""
        return True

    def set_job_pids(self, pids: Iterable[int]) -> None:
        """The roots of the worker's own process trees (its jobs); ignored by most policies."""

    def close(self) -> None:
        """Release what the policy holds (threads, devices); called once at stop."""

    def describe(self) -> str:
        """A short state string for logs and heartbeats."""
        return type(self).__name__


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_policies() -> list[str]:
    _import_all()
    return sorted(ActivationPolicy._registry)


def load_policy(settings: WorkerSettings) -> ActivationPolicy:
    """The policy named by ``activator.class``, built from the settings.

    With ``battery.enable=true`` the result is ``all:<configured>,battery``.
    """
    _import_all()
    policy = build_policy(settings.activator, settings)
    if settings.battery_enable and "battery" not in _names_in(settings.activator):
        from .combine import AllOf

        policy = AllOf([policy, build_policy("battery", settings)])
    return policy


#: the name the issue and the docs use; the same function
policy_from_settings = load_policy


def build_policy(spec: str, settings: WorkerSettings) -> ActivationPolicy:
    """One policy from an ``activator.class`` value: a name, or ``all:a,b`` / ``any:a,b``."""
    _import_all()
    from .combine import COMBINATORS

    head, sep, rest = spec.strip().partition(":")
    if sep and head.strip().lower() in COMBINATORS:
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) < 1 or not all(parts):
            raise ConfigError(
                f"activator.class: {spec!r} lists no policy or an empty one; "
                f"write e.g. {head.strip()}:date,cpu"
            )
        return COMBINATORS[head.strip().lower()]([build_policy(p, settings) for p in parts])
    cls = ActivationPolicy._registry.get(spec.strip().lower())
    if cls is None:
        raise ConfigError(
            f"activator.class: unknown activation policy {spec!r}; "
            f"use one of {', '.join(available_policies())}, or all:a,b / any:a,b"
        )
    return cls.from_settings(settings)


def _names_in(spec: str) -> set[str]:
    head, sep, rest = spec.strip().partition(":")
    parts = rest.split(",") if sep else [spec]
    return {
        ActivationPolicy._registry[p.strip().lower()].names[0]
        for p in parts
        if p.strip().lower() in ActivationPolicy._registry
    }


__all__ = [
    "ActivationPolicy",
    "available_policies",
    "build_policy",
    "load_policy",
    "policy_from_settings",
]
