"""The client as XWHEP users type it: ``-h``/``--help`` on every script, ``port.https``,
misspelled keys, ``--xwcheckconfig``, comma-separated UID lists, ``xtremweb.client`` first,
and one line (not one per retry) before the error when the server is down."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.net import free_port

from xwclient.cli import main, parse_args
from xwclient.commands import _listed
from xwclient.scripts import SCRIPTS
from xwclient.settings import load_settings
from xwserver import keystore

BIN = Path(sys.executable).parent
UID_A = "0f0e0d0c-0b0a-4908-8706-050403020100"
UID_B = "1f0e0d0c-0b0a-4908-8706-050403020100"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=None, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_text("not parsed here\n")
    path = folder / "xwrc"
    path.write_text(f"login=alice\npassword=pw\nca.file=ca.pem\n{text}")
    return path


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("word", ["-h", "--help"])
def test_every_command_prints_its_usage_for_help_and_exits_0(name: str, word: str) -> None:
    code, out, err = run(f"--{name}", word)
    assert (code, err) == (0, "")
    assert out.startswith("usage: xwclient --xw")


@pytest.mark.parametrize("script", ["xwsendwork", "xwworks", "xwrm"])
def test_the_installed_scripts_print_their_usage(script: str) -> None:
    done = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"usage: xwclient --{script}" in done.stdout


def test_help_after_a_jobs_application_name_is_the_jobs_argument() -> None:
    inv = parse_args(["--xwsendwork", "myapp", "--help"])
    assert (inv.command, inv.args) == ("sendwork", ["myapp", "--help"])


def test_xwhep_client_program_name_first_is_skipped() -> None:
    for first in ("xtremweb.client", "xtremweb.client.Client"):
        inv = parse_args([first, "--xwworks", UID_A])
        assert (inv.command, inv.args) == ("works", [UID_A])


def test_xwhep_comma_separated_uid_lists_are_split() -> None:
    assert _listed([f"{UID_A},{UID_B}"]) == [UID_A, UID_B]
    assert _listed([f"{UID_A},", UID_B]) == [UID_A, UID_B]  # xwworks A, B
    assert _listed([f"xw://h:4325/{UID_A},{UID_B}"]) == [f"xw://h:4325/{UID_A}", UID_B]
    assert _listed(["alice,bob"]) == ["alice,bob"]  # not UIDs: kept whole


def test_port_https_applies_to_servers_without_a_port(tmp_path: Path) -> None:
    s = load_settings(config(tmp_path, "dispatcher.servers=127.0.0.1 b:4400\nport.https: 54075\n"), env={})
    assert s.servers == ["127.0.0.1:54075", "b:4400"]


def test_misspelled_keys_are_warned_and_checkconfig_exits_1(tmp_path: Path) -> None:
    rc = config(tmp_path, "dispatcher.servers=a\nrequest_timout_s=5\nport.tcp=4321\n")
    assert load_settings(rc, env={}).request_timeout_s == 60.0
    code, out, err = run("--xwcheckconfig", "--xwconfig", str(rc))
    assert code == 1
    assert "unknown key 'request_timout_s' is ignored; did you mean 'request_timeout_s'?" in err
    assert "port.tcp" not in err
    assert "login alice" in out
    clean = config(tmp_path / "clean", "dispatcher.servers=a\n")
    assert run("--xwcheckconfig", "--xwconfig", str(clean))[0] == 0


def test_a_down_server_gives_one_warning_line_then_the_error(tmp_path: Path) -> None:
    keystore.init_keystore(tmp_path / "keys", ["localhost"])
    rc = tmp_path / "xwrc"
    rc.write_text(
        f"dispatcher.servers=127.0.0.1:{free_port()}\nlogin=alice\npassword=pw\n"
        f"ca.file={tmp_path / 'keys' / 'ca.pem'}\nretry_for_s=3\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XWCONFIG"}
    done = subprocess.run(
        [str(BIN / "xwworks"), "--xwconfig", str(rc)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 5
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert "unreachable" in lines[0] and lines[1].startswith("xwworks: error: ")
