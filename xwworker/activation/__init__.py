"""Activation policies: when may the volunteer's machine compute?

A policy is one small module in this package defining one :class:`ActivationPolicy`
subclass with the ``names`` it answers to in ``activator.class`` (ours and XWHEP's). Adding a
policy means adding one file here: :func:`load_policy` imports every module of the package,
and subclasses register themselves.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    3. ``close()`` is called once when the worker stops.
    """

    #: names accepted in ``activator.class`` (case-insensitive); empty for abstract classes
    names: ClassVar[tuple[str, ...]] = ()
    #: how often (seconds) the worker re-asks a policy that said no
    check_interval_s: float = 5.0

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

    def close(self) -> None:
        """Release what the policy holds (threads, devices); called once at stop."""

    def describe(self) -> str:
        return type(self).__name__


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_policies() -> list[str]:
    _import_all()
    return sorted(ActivationPolicy._registry)


def load_policy(settings: WorkerSettings) -> ActivationPolicy:
    """The policy named by ``activator.class``, built from the settings."""
    _import_all()
    cls = ActivationPolicy._registry.get(settings.activator.strip().lower())
    if cls is None:
        raise ConfigError(
            f"activator.class: unknown activation policy {settings.activator!r}; "
            f"use one of {', '.join(available_policies())}"
        )
    return cls.from_settings(settings)


__all__ = ["ActivationPolicy", "available_policies", "load_policy"]
