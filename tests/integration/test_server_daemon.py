"""``xwserver start|status|stop|restart`` on a real server process, as an operator runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from xwserver import daemon as server_daemon
from xwserver.settings import ServerSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gone(pid: int) -> bool:
    """Exited; a zombie counts (the init of a container may take its time to reap it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def xwserver(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "xwserver", *args], capture_output=True, text=True, timeout=90, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"xwserver {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "server"
    xwserver("init", "--home", str(home), "--url", f"https://localhost:{_free_port()}")
    yield home
    xwserver("stop", "--home", str(home), "--timeout", "5", check=False)


def test_start_returns_once_the_server_answers_and_stop_ends_it(home: Path) -> None:
    out = xwserver("start", "--home", str(home)).stdout
    settings = ServerSettings.load(home)
    pid = int(settings.pid_file.read_text())
    assert f"running (pid {pid}) at {settings.url}" in out
    assert server_daemon.answers(settings)  # over TLS pinned to the deployment CA

    status = xwserver("status", "--home", str(home))
    assert f"pid {pid}" in status.stdout

    assert f"stopped (pid {pid})" in xwserver("stop", "--home", str(home)).stdout
    assert _gone(pid)
    assert not settings.pid_file.exists()
    assert xwserver("status", "--home", str(home), check=False).returncode == 3
    assert "xwserver stopped" in (settings.log_dir / "xwserver.log").read_text()  # a graceful exit


def test_a_second_server_on_the_same_home_is_refused(home: Path) -> None:
    xwserver("start", "--home", str(home))
    pid = int(ServerSettings.load(home).pid_file.read_text())
    assert f"running (pid {pid})" in xwserver("start", "--home", str(home)).stdout  # start is idempotent
    console = xwserver("console", "--home", str(home), check=False)
    assert console.returncode == 1
    assert f"already running (pid {pid}" in console.stderr
    assert int(ServerSettings.load(home).pid_file.read_text()) == pid


def test_a_killed_server_leaves_a_stale_pid_file_that_start_replaces(home: Path) -> None:
    xwserver("start", "--home", str(home))
    settings = ServerSettings.load(home)
    pid = int(settings.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    try:
        psutil.Process(pid).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass

    status = xwserver("status", "--home", str(home), check=False)
    assert status.returncode == 3 and "stale" in status.stdout
    xwserver("start", "--home", str(home))
    new_pid = int(settings.pid_file.read_text())
    assert new_pid != pid and server_daemon.answers(settings)


def test_restart_gives_a_new_process_that_answers(home: Path) -> None:
    xwserver("start", "--home", str(home))
    settings = ServerSettings.load(home)
    pid = int(settings.pid_file.read_text())
    xwserver("restart", "--home", str(home))
    new_pid = int(settings.pid_file.read_text())
    assert new_pid != pid
    assert _gone(pid)
    assert server_daemon.answers(settings)


def test_a_server_that_cannot_start_is_reported_with_its_output(home: Path) -> None:
    settings = ServerSettings.load(home)
    with socket.socket() as taken:  # someone else holds the port
        taken.bind(("127.0.0.1", settings.port))
        taken.listen()
        proc = xwserver("start", "--home", str(home), "--timeout", "20", check=False)
    assert proc.returncode == 1
    assert "exited with status" in proc.stderr
    assert "address already in use" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert not settings.pid_file.exists()
