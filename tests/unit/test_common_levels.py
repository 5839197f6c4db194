"""User levels and access bits, in our spelling and XWHEP's."""

from __future__ import annotations

import pytest

from xwcommon.errors import BadRequest
from xwcommon.levels import GROUP, PRIVATE, PUBLIC, UserLevel, format_access_rights, parse_access_rights


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("0755", 0o755),
        ("755", 0o755),
        ("0x755", 0o755),  # XWHEP wrote them like this
        ("0X755", 0o755),
        ("0o755", 0o755),
        (" 0700 ", 0o700),
        ("0750", 0o750),
        ("000", 0),
        ("0777", 0o777),
        (0o750, 0o750),
        (0, 0),
    ],
)
def test_access_rights_are_parsed_in_every_spelling(text: str | int, bits: int) -> None:
    assert parse_access_rights(text) == bits


@pytest.mark.parametrize(
    "text", ["", "rwxr-xr-x", "0999", "0758", "1755", "07555", "75", "0x", "-755", "0x7 55", -1, 0o1000]
)
def test_invalid_access_rights_are_a_bad_request(text: str | int) -> None:
    with pytest.raises(BadRequest, match="access rights"):
        parse_access_rights(text)


def test_the_three_named_modes_and_their_display() -> None:
    assert (PRIVATE, GROUP, PUBLIC) == (0o700, 0o750, 0o755)
    assert [format_access_rights(b) for b in (PRIVATE, GROUP, PUBLIC, 0)] == ["0700", "0750", "0755", "0000"]
    for bits in (0, 0o7, 0o700, 0o755, 0o777):
        assert parse_access_rights(format_access_rights(bits)) == bits


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("WORKER", UserLevel.WORKER),
        ("standard", UserLevel.STANDARD),
        ("STANDARD_USER", UserLevel.STANDARD),
        ("advanced_user", UserLevel.ADVANCED),
        ("SUPER", UserLevel.SUPER),
        ("ADMINISTRATOR", UserLevel.SUPER),
        (" super_user ", UserLevel.SUPER),
    ],
)
def test_user_levels_parse_in_our_and_xwhep_names(text: str, level: UserLevel) -> None:
    assert UserLevel.parse(text) is level


@pytest.mark.parametrize("text", ["", "ROOT", "guest", "WORKERS"])
def test_an_unknown_user_level_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest, match="unknown user rights"):
        UserLevel.parse(text)


def test_levels_are_a_ladder() -> None:
    assert UserLevel.WORKER < UserLevel.STANDARD < UserLevel.ADVANCED < UserLevel.SUPER
