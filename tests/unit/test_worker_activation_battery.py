"""The battery policy, with an injected sensor answering like psutil.sensors_battery()."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from xwworker.activation.battery import BatteryActivator


def sensor(value: Any) -> BatteryActivator:
    return BatteryActivator(lambda: value)


def test_on_battery_it_stops() -> None:
    p = sensor(SimpleNamespace(power_plugged=False, percent=71.0))
    assert not p.allows(0)
    assert p.describe() == "battery: on battery (71%): inactive"


def test_on_mains_it_computes() -> None:
    p = sensor(SimpleNamespace(power_plugged=True, percent=40.0))
    assert p.allows(0)
    assert p.describe() == "battery: on mains (40%)"


def test_a_machine_without_a_battery_is_always_on_mains() -> None:
    p = sensor(None)
    assert p.allows(0)
    assert p.describe() == "battery: no battery: on mains"


def test_an_unknown_power_source_is_taken_as_mains_and_said() -> None:
    p = sensor(SimpleNamespace(power_plugged=None, percent=None))
    assert p.allows(0)
    assert "unknown" in p.describe()


def test_unplugging_and_plugging_back_follow_the_sensor() -> None:
    state = SimpleNamespace(power_plugged=True, percent=90.0)
    p = BatteryActivator(lambda: state)
    assert p.allows(0)
    state.power_plugged = False
    assert not p.allows(1)
    state.power_plugged = True
    assert p.allows(2)
