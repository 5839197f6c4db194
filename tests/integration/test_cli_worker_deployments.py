"""A volunteer attached to several projects: one worker per deployment on one host, each
command acting on its own deployment's worker only.

Real ``xwworker`` processes, started in the background as a volunteer would; their
servers do not answer (the worker keeps trying), which is all these tests need: the
state folders, locks and pid files are what is checked. ``TMPDIR`` points the default
``path.tmpdir`` at the test's own folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers.net import free_port

from xwserver import keystore

REPO = Path(__file__).resolve().parents[2]


def xwworker(tmp: Path, *args: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XWWORKER_")}
    env["TMPDIR"] = str(tmp)
    return subprocess.run(
        [sys.executable, "-m", "xwworker", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=REPO,
    )


def conf(folder: Path, name: str, server: str, *, login: str = "worker", extra: str = "") -> Path:
    path = folder / f"{name}.conf"
    path.write_text(
        f"dispatcher.servers={server}\nlogin={login}\npassword=pw\nca.file={folder / 'keys' / 'ca.pem'}\n"
        f"shutdown_grace_s=0\n{extra}"
    )
    return path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder with a deployment CA (nobody answers with its certificates) and a temp folder;
    every worker started from it is stopped at the end, by the pid its command printed."""
    keystore.init_keystore(tmp_path / "keys", ["localhost"])
    (tmp_path / "tmp").mkdir()
    yield tmp_path
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "xwworker" in cmdline and str(tmp_path) in cmdline:
            proc.kill()


def started_pid(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    found = re.search(r"\(pid (\d+)\)", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


def test_two_deployments_public_workers_run_side_by_side_and_each_command_acts_on_its_own(
    site: Path,
) -> None:
    tmp = site / "tmp"
    a = conf(site, "a", f"127.0.0.1:{free_port()}")
    b = conf(site, "b", f"https://localhost:{free_port()}")
    pid_a = started_pid(xwworker(tmp, "start", "--xwconfig", str(a)))
    started_b = xwworker(tmp, "start", "--xwconfig", str(b))
    pid_b = started_pid(started_b)
    assert "already running" not in started_b.stdout
    assert pid_a != pid_b

    # each deployment's state folder, private, under the temp folder of this local user
    folders = sorted(p for p in tmp.glob("xwworker-*/*") if p.is_dir())
    assert len(folders) == 2, folders
    for folder in folders:
        assert folder.stat().st_mode & 0o777 == 0o700
        assert folder.parent.stat().st_mode & 0o777 == 0o700
        assert (folder / "xwworker.deployment").read_text().startswith("worker@https://")

    status_a = xwworker(tmp, "status", "--xwconfig", str(a))
    status_b = xwworker(tmp, "status", "--xwconfig", str(b))
    assert f"(pid {pid_a})" in status_a.stdout and status_a.returncode == 0
    assert f"(pid {pid_b})" in status_b.stdout and status_b.returncode == 0

    paused = xwworker(tmp, "pause", "--xwconfig", str(b))
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert [f.name for f in folders if (f / "paused").exists()] == [
        f.name for f in folders if "localhost_" in f.name
    ]

    stopped_b = xwworker(tmp, "stop", "--xwconfig", str(b))
    assert f"stopped (pid {pid_b})" in stopped_b.stdout
    assert psutil.pid_exists(pid_a) and psutil.Process(pid_a).status() != psutil.STATUS_ZOMBIE
    assert xwworker(tmp, "status", "--xwconfig", str(a)).returncode == 0
    assert xwworker(tmp, "status", "--xwconfig", str(b)).returncode == 3
    assert f"stopped (pid {pid_a})" in xwworker(tmp, "stop", "--xwconfig", str(a)).stdout


def test_a_pid_file_naming_another_deployments_worker_is_never_acted_on(site: Path) -> None:
    tmp = site / "tmp"
    shared_pid = site / "shared.pid"
    a = conf(site, "a", f"127.0.0.1:{free_port()}", extra=f"pid.file={shared_pid}\n")
    b = conf(site, "b", f"127.0.0.1:{free_port()}", extra=f"pid.file={shared_pid}\n")
    pid_a = started_pid(xwworker(tmp, "start", "--xwconfig", str(a)))
    try:
        for verb in ("status", "stop", "start", "console"):
            done = xwworker(tmp, verb, "--xwconfig", str(b))
            assert done.returncode == 2, (verb, done.stdout, done.stderr)
            assert f"names pid {pid_a}, a worker of another deployment" in done.stderr, verb
            assert psutil.Process(pid_a).status() != psutil.STATUS_ZOMBIE, verb
        assert shared_pid.read_text().split()[0] == str(pid_a)
    finally:
        assert f"stopped (pid {pid_a})" in xwworker(tmp, "stop", "--xwconfig", str(a)).stdout


def test_a_state_folder_of_another_deployment_is_refused(site: Path) -> None:
    tmp = site / "tmp"
    shared = site / "state"
    a = conf(site, "a", f"127.0.0.1:{free_port()}", extra=f"path.tmpdir={shared}\n")
    b = conf(site, "b", f"127.0.0.1:{free_port()}", extra=f"path.tmpdir={shared}\n")
    pid_a = started_pid(xwworker(tmp, "start", "--xwconfig", str(a)))
    assert f"stopped (pid {pid_a})" in xwworker(tmp, "stop", "--xwconfig", str(a)).stdout
    # a stopped worker's folder is still its deployment's: it keeps that host identity
    for verb in ("console", "pause"):
        done = xwworker(tmp, verb, "--xwconfig", str(b))
        assert done.returncode == 2, (verb, done.stdout, done.stderr)
        assert "is the state folder of the worker of worker@https://127.0.0.1:" in done.stderr
    assert not (shared / "paused").exists()


def test_pause_of_a_stopped_worker_says_it_is_not_running(site: Path) -> None:
    tmp = site / "tmp"
    a = conf(site, "a", f"127.0.0.1:{free_port()}")
    done = xwworker(tmp, "pause", "--xwconfig", str(a))
    assert done.returncode == 0
    assert "is not running; once started it will compute nothing until `xwworker resume`" in done.stdout
    assert "suspended" not in done.stdout
    resumed = xwworker(tmp, "resume", "--xwconfig", str(a))
    assert resumed.returncode == 0 and "is not running" in resumed.stdout
