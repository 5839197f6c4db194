"""Real worker processes against a real server: a restarted worker logs in with its host
credential (not its password), a killed one shows as lost in xwworkers, and xwrmhost
removes it."""

from __future__ import annotations

import json
import stat
from typing import Any

from helpers.deployment import FAST_LEASES, Deployment, MakeDeployment
from helpers.waiting import wait_until


def _hosts(dep: Deployment) -> dict[str, dict[str, Any]]:
    out = dep.client("--xwworkers", "--xwformat", "json").stdout
    return {h["uid"]: h for h in json.loads(out)}


def test_a_restarted_worker_logs_in_with_its_host_key_not_its_password(deployment: MakeDeployment) -> None:
    dep = deployment(**FAST_LEASES)
    first = dep.start_worker()
    key_file = first.tmpdir / "xwworker.hostkey"
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 40
    assert first.stop() == 0

    # the same state folder with a wrong password: only the host key can log it in
    again = dep.start_worker(tmpdir=first.tmpdir, password="not the password any more")
    assert again.host_uid == first.host_uid
    assert "refused login" not in again.log_text() and "failed login" not in dep.describe()
    assert _hosts(dep)[again.host_uid]["state"] == "active"
    assert again.stop() == 0

    # its key void (the identity's password changed), the wrong password stops it
    dep.client("--xwpasswd", "worker", "a brand new password")
    third = dep.start_worker(tmpdir=first.tmpdir, password="not the password any more", wait_registered=False)
    wait_until(lambda: not third.alive, timeout_s=30, what="the worker to give up", describe=dep.describe)
    assert "refused login 'worker'" in third.log_text()
    assert not key_file.exists()  # a refused key is forgotten


def test_a_killed_worker_shows_as_lost_and_an_advanced_user_removes_it(deployment: MakeDeployment) -> None:
    dep = deployment(**FAST_LEASES, host_lost_heartbeats=3)
    worker = dep.start_worker()
    assert _hosts(dep)[worker.host_uid]["state"] == "active"
    worker.kill()
    wait_until(
        lambda: _hosts(dep)[worker.host_uid]["state"] == "lost",
        timeout_s=15,
        what="the killed worker's host to show as lost",
        describe=dep.describe,
    )
    text = dep.client("--xwworkers").stdout
    assert "lost" in text and worker.host_uid in text
    removed = json.loads(dep.client("--xwrmhost", worker.host_uid, "--xwformat", "json").stdout)
    assert removed == [{"uid": worker.host_uid, "kind": "host"}]
    assert worker.host_uid not in _hosts(dep)
    again = dep.client("--xwrmhost", worker.host_uid, check=False)
    assert again.returncode == 4 and worker.host_uid in again.stderr  # not found
