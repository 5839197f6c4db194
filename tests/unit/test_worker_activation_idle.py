"""The idle policy: an injected idle-time source, and the machine where none exists."""

from __future__ import annotations

import os

from xwworker.activation.idle import IdleActivator, IdleSource, InputDevices


def test_computes_only_after_the_idle_threshold() -> None:
    idle = {"s": 0.0}
    p = IdleActivator(30, lambda now: idle["s"])
    assert p.unavailable is None
    assert not p.allows(0)
    idle["s"] = 29.9
    assert not p.allows(1)
    idle["s"] = 30
    assert p.allows(2)
    assert p.describe() == "idle >= 30s (injected): active, idle 30s"
    idle["s"] = 0.5  # the owner touched the mouse
    assert not p.allows(3)
    assert "inactive" in p.describe()


def test_the_source_is_asked_with_the_injected_time() -> None:
    last_input = 1000.0
    source: IdleSource = lambda now: now - last_input  # noqa: E731
    p = IdleActivator(60, source)
    assert not p.allows(1059)
    assert p.allows(1060)


def test_with_no_idle_source_it_says_why_and_never_computes() -> None:
    p = IdleActivator(30, detect=lambda: (None, "no X11, no /dev/input, no logind"))
    assert p.unavailable == "cannot tell keyboard/mouse idle time: no X11, no /dev/input, no logind"
    assert not p.allows(0)
    assert not p.allows(10**9)
    assert p.describe() == "idle >= 30s: unavailable, never computing"


def test_a_source_that_fails_later_stops_computing_and_says_so() -> None:
    def broken(now: float) -> float:
        raise OSError("xprintidle: cannot open display")

    p = IdleActivator(30, broken)
    assert not p.allows(0)
    assert "cannot open display" in p.describe()


def test_input_devices_see_events_queued_since_the_last_check() -> None:
    read_fd, write_fd = os.pipe()  # stands in for an event device: readable bytes are events
    os.set_blocking(read_fd, False)
    devices = InputDevices([])
    devices.fds = [read_fd]
    try:
        assert devices(100.0) == 0.0  # nothing known before the first look
        assert devices(130.0) == 30.0
        os.write(write_fd, b"x" * 24)
        assert devices(140.0) == 0.0
        assert devices(175.0) == 35.0
    finally:
        devices.close()
        os.close(write_fd)
