"""Stop computing while the machine runs on battery.

Off unless chosen: ``activator.class=battery`` alone, inside a combination, or
``battery.enable=true`` which adds it to whatever ``activator.class`` says. The sensor is an
injected callable answering like ``psutil.sensors_battery()``: None when the machine has no
battery (a desktop: always on mains), else an object with ``power_plugged`` (True, False, or
None when the system cannot tell, taken as mains so that a broken sensor does not stop a
desktop for good) and ``percent``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..settings import WorkerSettings
from . import ActivationPolicy

BatterySensor = Callable[[], Any]


def psutil_battery() -> Any:
    import psutil

    sensor = getattr(psutil, "sensors_battery", None)
    return sensor() if sensor is not None else None


class BatteryActivator(ActivationPolicy):
    """Computes on mains power, not on battery."""

    names = ("battery", "onmains", "batteryactivator")
    check_interval_s = 15.0

    def __init__(self, sensor: BatterySensor = psutil_battery) -> None:
        self._sensor = sensor
        self._state = "not checked yet"

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> BatteryActivator:
        return cls()

    def allows(self, now: float) -> bool:
        battery = self._sensor()
        if battery is None:
            self._state = "no battery: on mains"
            return True
        plugged = getattr(battery, "power_plugged", None)
        percent = getattr(battery, "percent", None)
        level = f" ({percent:.0f}%)" if isinstance(percent, int | float) else ""
        if plugged is False:
            self._state = f"on battery{level}: inactive"
            return False
        self._state = f"on mains{level}" if plugged else f"power source unknown{level}: active"
        return True

    def describe(self) -> str:
        return f"battery: {self._state}"
