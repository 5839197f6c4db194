"""The date policy: every example of XWHEP's manual, wrapping ranges, and cron expressions.

Time is injected: each check builds a UTC timestamp in the week of Sunday 2026-11-22, so
``at("Thu", 18, 30)`` is Thursday 2026-11-26 18:30 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from xwcommon.errors import ConfigError
from xwworker.activation.date import DateActivator

SUNDAY = datetime(2026, 11, 22, tzinfo=UTC)
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]


def at(day: str, hour: int, minute: int = 0) -> float:
    return (SUNDAY + timedelta(days=DAYS.index(day), hours=hour, minutes=minute)).timestamp()


def policy(spec: str) -> DateActivator:
    return DateActivator(spec, tz=UTC)


def active_hours(spec: str) -> dict[str, list[int]]:
    """For each day, the hours at which the policy is active, checked at :00 and :59."""
    p = policy(spec)
    table: dict[str, list[int]] = {}
    for day in DAYS:
        hours = []
        for h in range(24):
            start, end = p.allows(at(day, h, 0)), p.allows(at(day, h, 59))
            assert start == end, f"{spec!r} changes within {day} {h}:00-{h}:59"
            if start:
                hours.append(h)
        table[day] = hours
    return table


ALL = list(range(24))
NONE: list[int] = []


def test_every_day_full_day() -> None:
    assert active_hours("* *") == {d: ALL for d in DAYS}


def test_every_day_from_1_00_to_1_59() -> None:
    assert active_hours("* 1") == {d: [1] for d in DAYS}
    p = policy("* 1")
    assert not p.allows(at("Mon", 0, 59) + 59)
    assert p.allows(at("Mon", 1, 0))
    assert p.allows(at("Mon", 1, 59) + 59)
    assert not p.allows(at("Mon", 2, 0))


def test_every_day_from_11_00_to_17_59() -> None:
    assert active_hours("* 11-17") == {d: list(range(11, 18)) for d in DAYS}


def test_day_1_is_sunday_full_day() -> None:
    assert active_hours("1 *") == {d: ALL if d == "Sun" else NONE for d in DAYS}


def test_a_day_name_alone_means_the_full_day() -> None:
    assert active_hours("Thu") == {d: ALL if d == "Thu" else NONE for d in DAYS}


@pytest.mark.parametrize("spec", ["thu", "THURSDAY", "Thursday *", "5", "5 *", "5-5"])
def test_days_are_names_abbreviations_or_numbers_in_any_case(spec: str) -> None:
    assert active_hours(spec) == active_hours("Thu")


# The manual's prose for the next two examples ("2-Thu *: from tuesday to thursday", "4-2: from
# thursday to tuesday") is one day off against its own table (1 = Sunday, so 2 = Monday and
# 4 = Wednesday); XWHEP's source documents "2-Thu *" as Monday to Thursday and "5-2 *" as
# Thursday to Monday. We follow the table, and test the prose's intent with the right numbers.
def test_a_day_range_mixing_number_and_name_2_is_monday() -> None:
    full = {"Mon", "Tue", "Wed", "Thu"}
    assert active_hours("2-Thu *") == {d: ALL if d in full else NONE for d in DAYS}
    assert active_hours("3-Thu *") == {d: ALL if d in {"Tue", "Wed", "Thu"} else NONE for d in DAYS}


def test_a_day_range_wraps_past_saturday() -> None:
    # 4-2 is Wednesday to Monday; XWHEP compared first <= today <= last and never ran at all
    assert active_hours("4-2") == {d: NONE if d == "Tue" else ALL for d in DAYS}
    # Thursday to Tuesday, as the manual means it: Wednesday is the day off
    assert active_hours("5-3") == {d: NONE if d == "Wed" else ALL for d in DAYS}
    assert active_hours("5-3") == active_hours("Thu-Tue")
    assert active_hours("5-2 *") == {d: NONE if d in {"Tue", "Wed"} else ALL for d in DAYS}


def test_a_wrapping_night_belongs_to_the_day_it_starts_on() -> None:
    # Nights start Thursday..Tuesday at 18:00 and end the next morning at 03:59: so Thursday's
    # early morning (Wednesday's night) is off and Wednesday's early morning (Tuesday's night)
    # is on, which XWHEP, checking day and hour apart, had the wrong way round.
    evening, morning = list(range(18, 24)), [0, 1, 2, 3]
    assert active_hours("Thu-Tue 18-3") == {
        "Sun": morning + evening,
        "Mon": morning + evening,
        "Tue": morning + evening,
        "Wed": morning,
        "Thu": evening,
        "Fri": morning + evening,
        "Sat": morning + evening,
    }
    p = policy("Thu-Tue 18-3")
    assert not p.allows(at("Thu", 17, 59))
    assert p.allows(at("Thu", 18, 0))
    assert p.allows(at("Fri", 3, 59))
    assert not p.allows(at("Fri", 4, 0))
    assert p.allows(at("Wed", 3, 59))
    assert not p.allows(at("Wed", 18, 0))
    assert not p.allows(at("Thu", 0, 30))


def test_two_gaps_are_a_union_nights_and_the_whole_weekend() -> None:
    evening, morning = list(range(18, 24)), [0, 1, 2, 3]
    assert active_hours("Thu-Tue 18-3, Sat-Sun *") == {
        "Sun": ALL,
        "Mon": morning + evening,
        "Tue": morning + evening,
        "Wed": morning,
        "Thu": evening,
        "Fri": morning + evening,
        "Sat": ALL,
    }


def test_gaps_may_also_be_separated_by_semicolons_as_xwhep_accepts() -> None:
    assert active_hours("Thu-Tue 18-3; Sat-Sun *") == active_hours("Thu-Tue 18-3, Sat-Sun *")


def test_a_wrapping_hour_range_every_day_is_one_continuous_night() -> None:
    assert active_hours("* 22-1") == {d: [0, 1, 22, 23] for d in DAYS}


def test_a_night_on_saturday_runs_into_sunday_morning() -> None:
    table = active_hours("Sat 23-0")
    assert table == {"Sun": [0], "Sat": [23], **{d: NONE for d in DAYS[1:6]}}


def test_local_time_is_used_unless_a_zone_is_given() -> None:
    p = DateActivator("* 11-17")
    noon_local = datetime(2026, 11, 24, 12, 0).timestamp()  # naive: the machine's local time
    assert p.allows(noon_local)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "missing"),
        ("Funday", "'Funday' in 'Funday' is not a day"),
        ("8 *", "'8' in '8 \\*' is not a day"),
        ("0", "is not a day"),
        ("* 24", "'24' in '\\* 24' is not an hour"),
        ("* 3-x", "is not an hour"),
        ("Thu 1 2", "must be 'DAYS' or 'DAYS HOURS'"),
        ("Thu,, Fri", "empty part"),
        ("cron: 61 * * * *", "is not a 5-field cron expression"),
    ],
)
def test_a_wrong_date_names_the_key_and_the_culprit(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^activator\.date: .*" + message):
        DateActivator(spec)


# -- cron -----------------------------------------------------------------------------------
def test_a_cron_expression_is_active_during_the_minutes_it_matches() -> None:
    p = policy("* 9-17 * * 1-5")  # cron: 0 = Sunday, so weekdays 09:00-17:59
    assert p.cron == "* 9-17 * * 1-5"
    assert p.allows(at("Mon", 9, 0))
    assert p.allows(at("Fri", 17, 59) + 59)
    assert not p.allows(at("Fri", 18, 0))
    assert not p.allows(at("Mon", 8, 59) + 59)
    assert not p.allows(at("Sat", 12, 0))
    assert not p.allows(at("Sun", 12, 0))


def test_a_cron_minute_is_active_for_the_whole_minute_only() -> None:
    p = policy("*/10 * * * *")
    assert p.allows(at("Wed", 4, 10))
    assert p.allows(at("Wed", 4, 10) + 59.9)
    assert not p.allows(at("Wed", 4, 11))
    assert not p.allows(at("Wed", 4, 19) + 30)
    assert p.allows(at("Wed", 4, 20) + 1)


def test_cron_can_be_forced_with_a_prefix_and_lists_work() -> None:
    p = policy("cron: 0,30 22 * * sat")
    assert p.allows(at("Sat", 22, 30))
    assert not p.allows(at("Sat", 22, 15))
    assert not p.allows(at("Fri", 22, 30))


def test_xwhep_values_are_never_read_as_cron() -> None:
    assert policy("Thu-Tue 18-3, Sat-Sun *").cron is None
    assert policy("1, 2, 3, 4, 5").cron is None
    assert active_hours("1, 2, 3, 4, 5")["Thu"] == ALL


def test_describe_says_the_rule_and_the_last_answer() -> None:
    p = policy("Thu 18-3")
    assert p.describe() == "date 'Thu 18-3'"
    p.allows(at("Thu", 19))
    assert p.describe() == "date 'Thu 18-3': active"
    p.allows(at("Thu", 12))
    assert p.describe() == "date 'Thu 18-3': inactive"
    assert policy("0 * * * *").describe() == "cron '0 * * * *'"
