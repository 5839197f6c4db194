"""XWHEP-style properties files and the typed readers of their values."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from xwcommon.config import (
    as_bool,
    as_float,
    as_int,
    load_properties,
    parse_properties,
    resolve_path,
    write_properties,
)
from xwcommon.errors import ConfigError


def test_both_separators_comments_and_blank_lines() -> None:
    text = """
# a comment
! also a comment (Java properties)
login=alice
password : s3cret
   dispatcher.servers = https://a.example:4325 b.example
ca.file:ca.pem

"""
    assert parse_properties(text) == {
        "login": "alice",
        "password": "s3cret",
        "dispatcher.servers": "https://a.example:4325 b.example",
        "ca.file": "ca.pem",
    }


def test_the_first_separator_cuts_so_values_keep_theirs() -> None:
    props = parse_properties(
        "db.url=postgresql+asyncpg://u:p@h:5432/db\nurl: https://h:4325/x=y\nempty=\nhash=a#b\n"
    )
    assert props == {
        "db.url": "postgresql+asyncpg://u:p@h:5432/db",
        "url": "https://h:4325/x=y",
        "empty": "",
        "hash": "a#b",
    }


def test_a_later_key_wins() -> None:
    assert parse_properties("a=1\na=2\n") == {"a": "2"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("login=alice\njust some words\n", 2),
        ("# header\n\n=value\n", 3),
        (":value\n", 1),
        ("a=1\nb=2\nc=3\nno separator here\n", 4),
    ],
)
def test_an_error_names_the_source_and_the_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as err:
        parse_properties(text, source="xwrc")
    assert f"xwrc:{line}:" in err.value.message
    assert repr(text.splitlines()[line - 1]) in err.value.message


def test_loading_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.conf"):
        load_properties(tmp_path / "nope.conf")


def test_loading_names_the_file_in_line_errors(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text("ok=1\nbroken\n")
    with pytest.raises(ConfigError, match=r"x\.conf:2:"):
        load_properties(conf)


def test_written_properties_read_back_and_are_private(tmp_path: Path) -> None:
    conf = tmp_path / "xwrc"
    values = {"login": "alice", "password": "p=a:s#s", "dispatcher.servers": "https://a:1 https://b:2"}
    write_properties(conf, values, header="client config\nkeep private")
    assert load_properties(conf) == values
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert conf.read_text().startswith("# client config\n# keep private\n")
    assert [p.name for p in tmp_path.iterdir()] == ["xwrc"]  # no temporary file left


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    assert resolve_path("ca.pem", tmp_path) == tmp_path / "ca.pem"
    assert resolve_path("/etc/ca.pem", tmp_path) == Path("/etc/ca.pem")
    assert resolve_path("~/ca.pem", tmp_path) == Path.home() / "ca.pem"


@pytest.mark.parametrize(("text", "value"), [("true", True), ("YES", True), (" on ", True), ("1", True)])
def test_booleans_true(text: str, value: bool) -> None:
    assert as_bool(text, key="k") is value


@pytest.mark.parametrize("text", ["false", "No", "off", "0"])
def test_booleans_false(text: str) -> None:
    assert as_bool(text, key="k") is False


def test_typed_values_name_the_key_when_wrong() -> None:
    with pytest.raises(ConfigError, match="^workpool.size: expected true or false"):
        as_bool("maybe", key="workpool.size")
    with pytest.raises(ConfigError, match="^workpool.size: expected an integer, got 'four'"):
        as_int("four", key="workpool.size")
    with pytest.raises(ConfigError, match="^workpool.size: must be at least 1, got 0"):
        as_int("0", key="workpool.size", minimum=1)
    with pytest.raises(ConfigError, match="^lease_s: expected a number"):
        as_float("1m", key="lease_s")
    with pytest.raises(ConfigError, match="^lease_s: must be at least 0"):
        as_float("-1", key="lease_s", minimum=0.0)
    assert as_int(" 42 ", key="k") == 42
    assert as_float("2.5", key="k") == 2.5
