"""Client config: lookup order (--xwconfig, $XWCONFIG, ~/.xtremweb/xwrc), keys, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from xwclient.settings import find_config_file, load_settings
from xwcommon.errors import ConfigError

GOOD = "dispatcher.servers=https://a:4325 b:4325\nlogin=alice\npassword=s3cret\nca.file=ca.pem\n"


def write_config(folder: Path, text: str = GOOD, name: str = "xwrc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_text("not parsed here\n")
    path = folder / name
    path.write_text(text)
    return path


def test_explicit_config_wins_over_environment_and_home(tmp_path):
    env = {"XWCONFIG": str(tmp_path / "env.rc")}
    assert find_config_file(tmp_path / "cli.rc", env=env, home=tmp_path) == tmp_path / "cli.rc"


def test_environment_wins_over_home(tmp_path):
    env = {"XWCONFIG": str(tmp_path / "env.rc")}
    assert find_config_file(None, env=env, home=tmp_path) == tmp_path / "env.rc"


def test_home_is_the_last_resort(tmp_path):
    assert find_config_file(None, env={}, home=tmp_path) == tmp_path / ".xtremweb" / "xwrc"
    assert find_config_file(None, env={"XWCONFIG": "  "}, home=tmp_path) == tmp_path / ".xtremweb" / "xwrc"


def test_each_place_is_actually_read_in_order(tmp_path):
    home_rc = write_config(tmp_path / "home" / ".xtremweb", GOOD.replace("alice", "from-home"))
    env_rc = write_config(tmp_path / "env", GOOD.replace("alice", "from-env"))
    cli_rc = write_config(tmp_path / "cli", GOOD.replace("alice", "from-cli"))
    home = tmp_path / "home"
    assert load_settings(None, env={}, home=home).login == "from-home"
    assert load_settings(None, env={"XWCONFIG": str(env_rc)}, home=home).login == "from-env"
    assert load_settings(cli_rc, env={"XWCONFIG": str(env_rc)}, home=home).login == "from-cli"
    assert home_rc.exists()


def test_keys_are_read_and_the_ca_is_relative_to_the_config_folder(tmp_path):
    s = load_settings(write_config(tmp_path / "conf"), env={})
    assert s.servers == ["https://a:4325", "b:4325"]
    assert s.login == "alice" and s.password == "s3cret"
    assert s.ca_file == (tmp_path / "conf" / "ca.pem").resolve()
    assert "s3cret" not in repr(s)


def test_xwhep_path_certfile_is_an_alias_of_ca_file(tmp_path):
    text = GOOD.replace("ca.file=ca.pem", "path.certfile: ca.pem")
    s = load_settings(write_config(tmp_path, text), env={})
    assert s.ca_file.name == "ca.pem"


def test_a_missing_file_names_the_path_and_how_to_give_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"XWCONFIG": str(tmp_path / "nope.rc")}, home=tmp_path)
    assert str(tmp_path / "nope.rc") in str(err.value)
    assert "$XWCONFIG" in str(err.value) and "--xwconfig" in str(err.value)


@pytest.mark.parametrize(
    "drop, key",
    [
        ("dispatcher.servers=https://a:4325 b:4325\n", "dispatcher.servers"),
        ("login=alice\n", "login"),
        ("password=s3cret\n", "password"),
        ("ca.file=ca.pem\n", "ca.file"),
    ],
)
def test_a_missing_key_is_named_with_the_file(tmp_path, drop, key):
    path = write_config(tmp_path, GOOD.replace(drop, ""))
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(path) in str(err.value) and f"key {key}" in str(err.value)


def test_a_ca_file_that_does_not_exist_is_named(tmp_path):
    path = write_config(tmp_path, GOOD.replace("ca.file=ca.pem", "ca.file=keys/missing.pem"))
    with pytest.raises(ConfigError, match=r"ca.file points at .*keys/missing.pem, which does not exist"):
        load_settings(path, env={})


def test_an_empty_password_is_allowed_when_the_key_is_there(tmp_path):
    path = write_config(tmp_path, GOOD.replace("password=s3cret", "password="))
    assert load_settings(path, env={}).password == ""


def test_optional_timings_are_validated(tmp_path):
    s = load_settings(write_config(tmp_path, GOOD + "retry_for_s=2.5\nrequest_timeout_s=9\n"), env={})
    assert (s.retry_for_s, s.request_timeout_s) == (2.5, 9.0)
    with pytest.raises(ConfigError, match="retry_for_s"):
        load_settings(write_config(tmp_path, GOOD + "retry_for_s=soon\n"), env={})
