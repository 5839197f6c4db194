"""The default policy: the machine may always compute (XWHEP's ``AlwaysActive``)."""

from __future__ import annotations

from . import ActivationPolicy


class AlwaysActive(ActivationPolicy):
    """Always allows computing; for dedicated machines and for tests."""

    names = ("always", "alwaysactive", "xtremweb.worker.AlwaysActive")

    def allows(self, now: float) -> bool:
        return True
