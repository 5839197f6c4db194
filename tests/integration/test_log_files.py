"""Where the server and the worker write their logs, and how the logs rotate: the server's
under logrotate with the file installers/ ships, the worker's by itself."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.deployment import MakeDeployment
from helpers.waiting import wait_until

from xwworker.cli import log_file_handler

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "installers" / "logrotate" / "xwserver"
EXAMPLE_HOME = "/var/lib/xtremweb/server"


def test_the_server_says_where_it_logs_and_keeps_logging_after_logrotate_moved_its_logs(
    deployment: MakeDeployment, tmp_path: Path
) -> None:
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not Path(logrotate).exists():
        pytest.skip("logrotate is not installed")
    dep = deployment()
    log, access = dep.log_dir / "xwserver.log", dep.log_dir / "access.log"
    assert f"logging to {log} (requests: {access})" in log.read_text()
    dep.api.version()
    wait_until(
        lambda: access.exists() and "/api/v1/version" in access.read_text(), timeout_s=10, what="access log"
    )

    conf = tmp_path / "logrotate.conf"
    text = SHIPPED.read_text()
    assert EXAMPLE_HOME in text
    conf.write_text(text.replace(EXAMPLE_HOME, str(dep.home)))
    conf.chmod(0o644)
    done = subprocess.run(
        [logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (dep.log_dir / "xwserver.log.1").is_file() and (dep.log_dir / "access.log.1").is_file()

    dep.api.call("GET", "/users/me")  # a request after the rotation lands in a new access.log
    wait_until(
        lambda: access.exists() and "/api/v1/users/me" in access.read_text(),
        timeout_s=10,
        what="new access log",
    )
    assert "/api/v1/users/me" not in (dep.log_dir / "access.log.1").read_text()
    dep.stop_server()
    assert "xwserver stopped" in log.read_text()  # the server reopened the moved log


def test_the_worker_says_where_it_logs(deployment: MakeDeployment) -> None:
    dep = deployment()
    worker = dep.start_worker()
    wait_until(lambda: "log " in worker.log_text(), timeout_s=20, what="the worker's start line")
    [line] = [x for x in worker.log_text().splitlines() if "xwworker" in x and "starting:" in x]
    assert line.rstrip().endswith(f"log {worker.tmpdir / 'xwworker.log'}")
    assert line in (worker.tmpdir / "xwworker.log").read_text()


def test_the_worker_log_rotates_at_its_size_keeping_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "xwworker.log"
    handler = log_file_handler(path, max_bytes=2_000, backups=3)
    logger = logging.getLogger("test.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("line %04d %s", i, "x" * 60)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["xwworker.log", "xwworker.log.1", "xwworker.log.2", "xwworker.log.3"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "line 0199" in path.read_text()
