"""The cpu policy: hysteresis over a window, with the load and the time injected."""

from __future__ import annotations

import subprocess
import sys
import time

from xwworker.activation.cpu import CpuActivator, PsutilLoad


class Load:
    """A load the test sets; remembers which pids the policy asked to leave out."""

    def __init__(self) -> None:
        self.percent = 0.0
        self.excluded: list[frozenset[int]] = []

    def __call__(self, exclude_pids: frozenset[int]) -> float:
        self.excluded.append(exclude_pids)
        return self.percent


def test_a_short_burst_above_cpuload_does_not_stop_the_worker() -> None:
    load = Load()
    p = CpuActivator(50, window_s=60, sample=load)
    assert p.allows(0)
    load.percent = 90
    assert p.allows(10)
    assert p.allows(69)  # 59 s above: not yet a full window
    load.percent = 10
    assert p.allows(70)
    load.percent = 90
    assert p.allows(75)
    assert p.allows(134)  # the window restarted at 75


def test_a_load_sustained_above_cpuload_for_the_window_stops_the_worker() -> None:
    load = Load()
    p = CpuActivator(50, window_s=60, sample=load)
    load.percent = 80
    assert p.allows(100)
    assert p.allows(130)
    assert not p.allows(160)
    assert "inactive" in p.describe() and "owner load 80%" in p.describe()


def test_the_worker_resumes_only_after_the_load_stays_low_for_the_window() -> None:
    load = Load()
    p = CpuActivator(50, window_s=60, sample=load)
    load.percent = 80
    p.allows(0)
    assert not p.allows(60)
    load.percent = 20
    assert not p.allows(61)
    load.percent = 70  # a blip above the threshold restarts the quiet window
    assert not p.allows(100)
    load.percent = 20
    assert not p.allows(101)
    assert not p.allows(160)
    assert p.allows(161)


def test_exactly_cpuload_is_not_above_it() -> None:
    load = Load()
    p = CpuActivator(50, window_s=0, sample=load)
    load.percent = 50
    assert p.allows(0)
    load.percent = 50.1
    assert not p.allows(1)


def test_the_worker_job_pids_are_left_out_of_the_load() -> None:
    load = Load()
    p = CpuActivator(50, window_s=10, sample=load)
    p.allows(0)
    p.set_job_pids([123, 456])
    p.allows(1)
    p.set_job_pids([])
    p.allows(2)
    assert load.excluded == [frozenset(), frozenset({123, 456}), frozenset()]


def test_settings_carry_cpuload_and_window() -> None:
    p = CpuActivator(25, 5, sample=Load())
    assert (p.cpuload_percent, p.window_s) == (25, 5)
    assert p.check_interval_s <= 5
    assert p.describe() == "cpu <= 25% over 5s: active"


def test_psutil_load_follows_a_real_job_tree_and_stays_a_percentage() -> None:
    job = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sample = PsutilLoad()
        assert sample(frozenset({job.pid})) >= 0.0
        time.sleep(0.3)
        others = sample(frozenset({job.pid}))
        assert 0.0 <= others <= 100.0
        assert job.pid in sample._procs  # measured across calls, so it can be subtracted
        assert sample(frozenset({999_999_999})) >= 0.0  # a pid gone already is ignored
    finally:
        job.kill()
        job.wait()
