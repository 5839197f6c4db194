"""The systemd unit of the worker: it runs the real console script with the real options,
restarts on failure as an unprivileged user, leaves bubblewrap working, and systemd accepts it."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from xwworker import settings as worker_settings

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "installers" / "systemd" / "xwworker.service"
README = REPO / "installers" / "README.md"

#: options that would take from bubblewrap what it needs (user namespaces, a fresh /proc),
#: or put seccomp filters on the jobs
BREAKS_BUBBLEWRAP = (
    "PrivateUsers",
    "RestrictNamespaces",
    "ProtectKernelTunables",
    "ProtectKernelLogs",
    "ProcSubset",
    "SystemCallFilter",
    "MemoryDenyWriteExecute",
)


def read_unit(path: Path = UNIT) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(path, encoding="utf-8")
    return unit


def exec_start(unit: configparser.ConfigParser) -> list[str]:
    return shlex.split(unit["Service"]["ExecStart"])


def test_the_unit_runs_the_worker_console_script_with_the_system_config() -> None:
    argv = exec_start(read_unit())
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).is_absolute()
    assert Path(argv[0]).name == "xwworker" and scripts["xwworker"] == "xwworker.cli:main"
    assert argv[1:] == ["console", "--xwconfig", "/etc/xtremweb/xtremweb.worker.conf"]


def test_the_console_script_knows_the_command_and_option_the_unit_uses() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xwworker", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    argv = exec_start(read_unit())
    assert argv[1] in done.stdout and argv[2] in done.stdout


def test_the_unit_restarts_on_failure_as_an_unprivileged_user_with_its_state_in_var_lib() -> None:
    service = read_unit()["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert float(service["RestartSec"]) > 0
    assert service["User"] and service["User"] != "root"
    assert service["NoNewPrivileges"] == "yes"
    state = "/var/lib/" + service["StateDirectory"]
    # the worker's tmpdir is the state directory, through the documented environment override
    assert "path.tmpdir" in worker_settings._KNOWN_KEYS
    env_name = worker_settings.ENV_PREFIX + "path.tmpdir".upper().replace(".", "_")
    assert f"{env_name}={state}" in service["Environment"].split()
    # a stop leaves the worker its grace period to finish or hand back its jobs
    assert service["KillMode"] == "mixed"
    assert float(service["TimeoutStopSec"]) > worker_settings.SHUTDOWN_GRACE_S + worker_settings.KILL_GRACE_S


def test_the_unit_leaves_out_what_would_break_bubblewrap() -> None:
    service = read_unit()["Service"]
    assert [k for k in BREAKS_BUBBLEWRAP if k in service] == []
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()


def test_the_readme_installs_what_the_unit_expects() -> None:
    text = README.read_text()
    service = read_unit()["Service"]
    argv = exec_start(read_unit())
    for needed in (
        "useradd",
        service["User"],
        "systemctl enable --now xwworker",
        str(Path(argv[0]).parent.parent),  # the virtual environment
        argv[3],  # the config file
        "/etc/systemd/system/",
    ):
        assert needed in text, needed


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # systemd checks that the program exists: point the unit at this checkout's console script
    here = Path(sys.executable).parent / "xwworker"
    if not os.access(here, os.X_OK):
        pytest.skip(f"no xwworker console script next to {sys.executable}")
    text = UNIT.read_text().replace(exec_start(read_unit())[0], str(here))
    unit = tmp_path / "xwworker.service"
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
