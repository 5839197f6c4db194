"""Choosing a policy from the settings: names, XWHEP aliases, all:/any: combinations, keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from xwcommon.errors import ConfigError
from xwworker.activation import ActivationPolicy, idle, policy_from_settings
from xwworker.activation.always import AlwaysActive
from xwworker.activation.battery import BatteryActivator
from xwworker.activation.combine import AllOf, AnyOf
from xwworker.activation.cpu import CpuActivator
from xwworker.activation.date import DateActivator
from xwworker.activation.idle import IdleActivator
from xwworker.settings import WorkerSettings

Settings = Callable[..., WorkerSettings]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # idle detection looks at this machine; tests say what it finds
    monkeypatch.setattr(idle, "detect_idle_source", lambda: (None, "nothing here"))
    (tmp_path / "ca.pem").write_text("x")

    def make(**props: str) -> WorkerSettings:
        base = {"dispatcher.servers": "a:1", "login": "w", "password": "p", "ca.file": "ca.pem"}
        return WorkerSettings.from_properties(base | props, base=tmp_path)

    return make


class Fixed(ActivationPolicy):
    def __init__(self, answer: bool, name: str = "fixed") -> None:
        self.answer, self.name, self.asked, self.pids = answer, name, 0, [0]
        self.closed = False

    def allows(self, now: float) -> bool:
        self.asked += 1
        return self.answer

    def set_job_pids(self, pids: object) -> None:
        self.pids = list(pids)  # type: ignore[call-overload]

    def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return self.name


@pytest.mark.parametrize(
    ("value", "cls"),
    [
        ("always", AlwaysActive),
        ("xtremweb.worker.AlwaysActive", AlwaysActive),
        ("xtremweb.worker.DateActivator", DateActivator),
        ("DATE", DateActivator),
        ("xtremweb.worker.CpuActivator", CpuActivator),
        ("cpu", CpuActivator),
        ("xtremweb.worker.MouseKbdActivator", IdleActivator),
        ("idle", IdleActivator),
        ("battery", BatteryActivator),
    ],
)
def test_names_and_xwhep_class_names_choose_the_policy(
    settings: Settings, value: str, cls: type[ActivationPolicy]
) -> None:
    p = policy_from_settings(settings(**{"activator.class": value, "activator.date": "*"}))
    assert type(p) is cls


def test_policy_keys_reach_the_policies(settings: Settings) -> None:
    s = settings(
        **{
            "activator.class": "all:date,cpu,idle",
            "activator.date": "Thu-Tue 18-3",
            "cpuload": "30",
            "cpu.window_s": "12.5",
            "idle.seconds": "120",
        }
    )
    p = policy_from_settings(s)
    assert isinstance(p, AllOf)
    date, cpu, idle_policy = p.policies
    assert isinstance(date, DateActivator) and date.spec == "Thu-Tue 18-3"
    assert isinstance(cpu, CpuActivator) and (cpu.cpuload_percent, cpu.window_s) == (30, 12.5)
    assert isinstance(idle_policy, IdleActivator) and idle_policy.idle_s == 120
    # the worker logs this at start: the idle part cannot see anything here
    assert p.unavailable is not None and "nothing here" in p.unavailable


def test_defaults_follow_xwhep(settings: Settings) -> None:
    s = settings()
    assert (s.activator, s.cpuload_percent, s.cpu_window_s, s.idle_s) == ("always", 50, 60, 30)
    assert s.battery_enable is False
    assert type(policy_from_settings(s)) is AlwaysActive


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"activator.class": "date"}, r"^activator\.date: missing"),
        ({"activator.class": "date", "activator.date": "Thu 25"}, r"^activator\.date: "),
        ({"cpuload": "lots"}, r"^cpuload: expected a number"),
        ({"cpuload": "150"}, r"^cpuload: a percentage"),
        ({"cpu.window_s": "-1"}, r"^cpu\.window_s: must be at least"),
        ({"idle.seconds": "soon"}, r"^idle\.seconds: expected a number"),
        ({"battery.enable": "perhaps"}, r"^battery\.enable: expected true or false"),
        ({"activator.class": "all:"}, r"^activator\.class: 'all:' lists no policy"),
        ({"activator.class": "any:date,,cpu"}, r"^activator\.class: .* empty one"),
        ({"activator.class": "all:always,telepathy"}, r"^activator\.class: unknown .*'telepathy'"),
    ],
)
def test_a_wrong_policy_setting_names_its_key(
    settings: Settings, props: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_from_settings(settings(**props))


def test_all_of_computes_only_when_every_policy_allows() -> None:
    yes, no = Fixed(True, "yes"), Fixed(False, "no")
    assert AllOf([Fixed(True), Fixed(True)]).allows(0)
    p = AllOf([no, yes])
    assert not p.allows(0)
    assert yes.asked == 1  # every policy is asked, so samplers keep their history
    assert p.describe() == "all(no, yes)"


def test_any_of_computes_when_one_policy_allows() -> None:
    assert AnyOf([Fixed(False), Fixed(True)]).allows(0)
    assert not AnyOf([Fixed(False), Fixed(False)]).allows(0)


def test_combinations_pass_job_pids_and_close_to_every_policy() -> None:
    a, b = Fixed(True), Fixed(True)
    p = AnyOf([a, b])
    p.set_job_pids(iter([7, 8]))
    p.close()
    assert a.pids == b.pids == [7, 8]
    assert a.closed and b.closed


def test_a_date_or_idle_combination_from_the_config(settings: Settings) -> None:
    s = settings(**{"activator.class": "any:date,idle", "activator.date": "Sat-Sun"})
    p = policy_from_settings(s)
    assert isinstance(p, AnyOf)
    saturday_noon = datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()
    monday_noon = datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp()
    date = p.policies[0]
    assert isinstance(date, DateActivator)
    date.tz = UTC
    assert p.allows(saturday_noon)  # the weekend, though idle time is unknown
    assert not p.allows(monday_noon)  # a weekday and idle detection unavailable


def test_battery_enable_adds_battery_to_the_configured_policy(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xwworker.activation import battery

    on_battery = SimpleNamespace(power_plugged=False, percent=50.0)
    monkeypatch.setattr(battery, "psutil_battery", lambda: on_battery)
    monkeypatch.setattr(
        BatteryActivator, "from_settings", classmethod(lambda cls, s: cls(battery.psutil_battery))
    )
    p = policy_from_settings(settings(**{"battery.enable": "true"}))
    assert isinstance(p, AllOf)
    assert [type(x) for x in p.policies] == [AlwaysActive, BatteryActivator]
    assert not p.allows(0)
    on_battery.power_plugged = True
    assert p.allows(1)
    # already in the combination: not added twice
    p = policy_from_settings(settings(**{"battery.enable": "yes", "activator.class": "all:always,battery"}))
    assert isinstance(p, AllOf) and len(p.policies) == 2


def test_the_environment_overrides_policy_keys(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    conf = tmp_path / "w.conf"
    conf.write_text("dispatcher.servers=a\nlogin=w\npassword=p\nca.file=ca.pem\ncpuload=40\n")
    s = WorkerSettings.load(conf, environ={"XWWORKER_CPULOAD": "20", "XWWORKER_IDLE_SECONDS": "5"})
    assert (s.cpuload_percent, s.idle_s) == (20, 5)
    assert "cpuload" not in s.extra
