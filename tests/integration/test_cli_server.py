"""``xwserver`` as an operator uses it: status, graceful stop, a careful init, private keys, access log."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers.api import ApiError
from helpers.deployment import Deployment, MakeDeployment, running_deployment
from helpers.waiting import wait_until

#: Common Log Format: host ident authuser [date] "request" status bytes
CLF = re.compile(
    r"^\S+ \S+ \S+ \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"[A-Z]+ \S+ HTTP/\d\.\d" \d{3} (\d+|-)$'
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A running server for the tests that only look at it (the stop test has its own)."""
    with running_deployment(tmp_path_factory.mktemp("cli-server")) as d:
        yield d


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_status_says_the_server_runs_with_its_pid_and_url(running: Deployment) -> None:
    dep = running
    pid = dep.server_pid()

    done = dep.xwserver("status", "--home", str(dep.home))

    assert done.returncode == 0
    assert "running" in done.stdout and "not running" not in done.stdout, done.stdout
    assert f"pid {pid}" in done.stdout, done.stdout
    assert dep.url in done.stdout, done.stdout


def test_stop_ends_the_server_gracefully_and_removes_its_pid_file(deployment: MakeDeployment) -> None:
    dep = deployment()
    pid = dep.server_pid()
    assert pid is not None and dep.pid_file.exists()

    done = dep.stop_server()

    assert done.returncode == 0, done.stderr
    assert f"stopped (pid {pid})" in done.stdout, done.stdout
    wait_until(lambda: not psutil.pid_exists(pid), timeout_s=10, what=f"pid {pid} to exit")
    assert not dep.pid_file.exists()
    assert "xwserver stopped" in (dep.log_dir / "xwserver.log").read_text()  # it shut down, not killed
    status = dep.xwserver("status", "--home", str(dep.home), check=False)
    assert status.returncode == 3 and "not running" in status.stdout, status


def test_init_on_an_existing_home_refuses_without_force_and_keeps_the_keys(running: Deployment) -> None:
    dep = running
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(dep.keystore.iterdir())}
    confs = {p: p.read_bytes() for p in (dep.server_conf, dep.admin_conf, dep.worker_conf)}

    done = dep.xwserver("init", "--home", str(dep.home), "--url", dep.url, check=False)

    assert done.returncode != 0
    assert "--force" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(dep.keystore.iterdir())}
    assert after == before, "init without --force touched the keystore"
    assert {p: p.read_bytes() for p in confs} == confs, "init without --force touched the configs"


def test_private_keys_and_configs_holding_passwords_are_private(running: Deployment) -> None:
    dep = running
    for key in ("ca.key", "server.key"):
        assert _mode(dep.keystore / key) == 0o600, key
    for conf in (dep.admin_conf, dep.worker_conf, dep.server_conf):
        assert _mode(conf) & 0o077 == 0, f"{conf.name} is readable by others: {oct(_mode(conf))}"
    assert _mode(dep.keystore) & 0o077 == 0


def test_the_server_keeps_an_access_log_in_common_log_format(running: Deployment) -> None:
    dep = running
    dep.client("--xwversion")
    dep.client("--xwworks")
    with pytest.raises(ApiError) as missing:
        dep.api.job("3f6c1c54-0000-4000-8000-000000000000")
    assert missing.value.status == 404

    log = dep.log_dir / "access.log"

    def lines() -> list[str]:
        """The complete lines written so far."""
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        return text.split("\n")[:-1]

    # a request is logged once answered: the log may lag the client a little
    wait_until(
        lambda: (
            any(" 404 " in line for line in lines())
            and any('"POST /api/v1/login HTTP/1.1" 200 ' in line for line in lines())
        ),
        timeout_s=10,
        what="the login and the 404 in the access log",
        describe=lambda: "\n".join(lines()),
    )
    bad = [line for line in lines() if not CLF.match(line)]
    assert not bad, f"not in Common Log Format: {bad[:5]}"
    assert dep.admin_password not in log.read_text(encoding="utf-8")
