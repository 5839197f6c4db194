"""A real worker process runs its jobs in the sandbox: the volunteer's files stay out of reach.

The sandbox itself is tested in tests/unit/test_worker_sandbox.py; this checks that the
worker program uses it, and says so loudly when told not to.
"""

from __future__ import annotations

import os
import shutil

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
