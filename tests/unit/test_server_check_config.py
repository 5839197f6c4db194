"""``xwserver check-config``: misspelled keys named with the nearest known one, and the address
the server binds, with a warning when no other machine could reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from xwserver.cli import bind_address, loopback_warning, main
from xwserver.settings import ServerSettings

URL = "https://localhost:14998"


@pytest.fixture
def server_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    home = tmp_path / "server"
    assert main(["init", "--home", str(home), "--url", URL, "--admin-password", "s3cret-admin"]) == 0
    capsys.readouterr()
    return home


def _append(home: Path, text: str) -> None:
    conf = home / "conf" / "xwserver.conf"
    conf.write_text(conf.read_text() + text)


def test_the_written_config_checks_clean(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--home", str(server_home)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"url {URL}, binds localhost:14998" in captured.out


def test_a_misspelled_key_is_named_with_the_nearest_known_key_and_exits_1(
    server_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(server_home, "max_retri=1\nport.tcp=4321\nXWdbName=xtremweb\n")
    settings = ServerSettings.load(server_home)
    assert settings.max_retry == 3  # the misspelled key set nothing
    assert main(["check-config", "--home", str(server_home)]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'max_retri' is ignored; did you mean 'max_retry'?" in err
    assert "port.tcp" not in err and "XWdbName" not in err  # XWHEP's keys without meaning here
    assert "1 unknown key(s)" in err
    # every other command warns too, and still runs
    assert main(["status", "--home", str(server_home)]) == 3
    assert "xwserver: warning: " in capsys.readouterr().err


def test_an_invalid_value_exits_2(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(server_home, "lease_s=soon\n")
    assert main(["check-config", "--home", str(server_home)]) == 2
    assert "lease_s: expected a number, got 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "listen", "warned"),
    [
        ("https://localhost:4325", None, False),  # this machine only, as asked
        ("https://127.0.0.1:4325", None, False),
        ("https://xw.example.org:4325", "127.0.0.1", True),
        ("https://xw.example.org:4325", "localhost", True),
        ("https://xw.example.org:4325", "0.0.0.0", False),
        ("https://192.0.2.7:4325", None, False),
    ],
)
def test_a_loopback_bind_under_a_url_naming_another_host_is_warned(
    tmp_path: Path, url: str, listen: str | None, warned: bool
) -> None:
    settings = ServerSettings(home=tmp_path, url=url, listen=listen)
    warning = loopback_warning(settings)
    assert (warning is not None) == warned, warning
    if warning:
        assert f"binds {bind_address(settings)}, a loopback address" in warning
        assert "server.listen=0.0.0.0" in warning


def test_bind_address_shows_ipv6_in_brackets(tmp_path: Path) -> None:
    assert bind_address(ServerSettings(home=tmp_path, url="https://[::1]:4400")) == "[::1]:4400"
    assert bind_address(ServerSettings(home=tmp_path, url=URL, listen="0.0.0.0")) == "0.0.0.0:14998"
