"""User levels and access bits, in our spelling and XWHEP's."""

from __future__ import annotations

import pytest

from xwcommon.errors import BadRequest
from xwcommon.levels import (
    GROUP,
    PRIVATE,
    PUBLIC,
    UserLevel,
    apply_access_rights,
    format_access_rights,
    parse_access_rights,
)


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


@pytest.mark.parametrize(
    ("text", "current", "bits"),
    [
        ("u+r", 0o000, 0o400),
        ("g-w", 0o777, 0o757),
        ("o+x", 0o700, 0o701),
        ("a+r", 0o000, 0o444),
        ("ugo+rwx", 0o000, 0o777),
        ("go=rx", 0o777, 0o755),
        ("o=", 0o755, 0o750),
        ("u+rw-x", 0o700, 0o600),
        ("u=rwx,g=rx,o=", 0o000, 0o750),
        ("g+r, o+r", 0o700, 0o744),  # spaces around the commas are forgiven
        ("+x", 0o644, 0o755),  # no "who" means all, as chmod without a umask
        ("U+R", 0o000, 0o400),
        ("0750", 0o777, 0o750),  # absolute forms ignore the current bits
        ("0x700", 0o755, 0o700),
    ],
)
def test_symbolic_access_rights_change_the_current_bits(text: str, current: int, bits: int) -> None:
    assert apply_access_rights(text, current) == bits
    assert parse_access_rights(text, current) == bits


def test_a_symbolic_change_without_current_bits_starts_from_none() -> None:
    assert parse_access_rights("u+rwx,g+rx") == 0o750


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("u+q", "'u+q' is not who"),
        ("z+r", "'z+r' is not who"),
        ("u", "'u' is not who"),
        ("u+r,,g+r", "'' is not who"),
        ("0999", "three digits"),
        ("", "empty"),
    ],
)
def test_a_bad_symbolic_change_says_what_is_wrong_and_shows_an_example(text: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        apply_access_rights(text, 0o755)
    assert says in info.value.message
    assert "like 0755" in info.value.message and "u+rwx" in info.value.message


@pytest.mark.parametrize("value", [True, None, 7.5, ["0755"]])
def test_access_rights_of_another_type_are_a_bad_request(value: object) -> None:
    with pytest.raises(BadRequest, match="access rights"):
        parse_access_rights(value)  # type: ignore[arg-type]
