"""A real worker process runs its jobs in the sandbox: the volunteer's files stay out of reach.

The sandbox itself is tested in tests/unit/test_worker_sandbox.py; this checks that the
worker program uses it, and says so loudly when told not to.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest
from helpers.deployment import MakeDeployment, python_program

PROBE = python_program(
    """
import sys

path = sys.argv[1]
try:
    with open(path) as fh:
        print("read:", fh.read().strip())
except OSError as exc:
    print("denied:", type(exc).__name__)
"""
)


def _bwrap_or_skip() -> None:
    if shutil.which("bwrap") is None:
        reason = "bubblewrap (bwrap) is not installed; .ci/run installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_a_job_cannot_read_the_volunteers_files(deployment: MakeDeployment) -> None:
    _bwrap_or_skip()
    dep = deployment()
    secret = dep.root / "volunteer-secret.txt"
    secret.write_text("the volunteer's own secret\n")
    worker = dep.start_worker()
    dep.send_app("probe", PROBE)
    uid = dep.submit("probe", str(secret))

    dep.wait_for_jobs([uid], timeout_s=60)
    out = (dep.results(uid) / "stdout.txt").read_text()
    assert out.startswith("denied:"), out
    assert "the volunteer's own secret" not in out
    assert "bubblewrap sandbox" in worker.log_text()


def test_a_worker_without_the_sandbox_says_so_and_the_job_sees_everything(deployment: MakeDeployment) -> None:
    dep = deployment()
    secret = dep.root / "volunteer-secret.txt"
    secret.write_text("the volunteer's own secret\n")
    worker = dep.start_worker(**{"sandbox.enable": "false"})
    dep.send_app("probe", PROBE)
    uid = dep.submit("probe", str(secret))

    dep.wait_for_jobs([uid], timeout_s=60)
    assert (dep.results(uid) / "stdout.txt").read_text() == "read: the volunteer's own secret\n"
    assert "jobs run WITHOUT a sandbox" in worker.log_text()


NET_PROBE = python_program(
    """
import socket, sys

try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("connected")
except OSError as exc:
    print("no network:", type(exc).__name__)
"""
)


def _listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server, server.getsockname()[1]


def test_only_apps_that_declare_it_get_the_network_and_only_where_the_volunteer_allows(
    deployment: MakeDeployment,
) -> None:
    _bwrap_or_skip()
    dep = deployment()
    listener, port = _listener()
    try:
        dep.send_app("offline", NET_PROBE)
        dep.send_app("online", NET_PROBE)
        online = dep.api.call("GET", "/apps/online")
        binaries = [{k: b[k] for k in ("os", "cpu", "data_uid")} for b in online["binaries"]]
        assert dep.api.call("POST", "/apps", {"name": "online", "binaries": binaries, "needs_network": True})[
            "needs_network"
        ]

        closed = dep.start_worker()  # sandbox.network is off by default
        online_uid = dep.submit("online", str(port))
        offline_uid = dep.submit("offline", str(port))
        dep.wait_for_jobs([offline_uid], timeout_s=60)
        out = (dep.results(offline_uid) / "stdout.txt").read_text()
        assert out.startswith("no network:"), out
        time.sleep(1)
        assert dep.api.job(online_uid)["status"] == "PENDING"  # not for a worker without network
        assert all(t["host_uid"] != closed.host_uid for t in dep.api.tasks(online_uid))

        dep.start_worker(**{"sandbox.network": "true"})
        dep.wait_for_jobs([online_uid], timeout_s=60)
        assert (dep.results(online_uid) / "stdout.txt").read_text() == "connected\n"
    finally:
        listener.close()
