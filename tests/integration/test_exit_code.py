"""A job that fails: its exit code and its standard error reach the user."""

from __future__ import annotations

from helpers.deployment import MakeDeployment, python_program

FAILING = python_program(
    """
import sys

print("half done", flush=True)
print("cannot open input.dat: no such file", file=sys.stderr)
sys.exit(3)
"""
)


def test_a_job_that_exits_non_zero_ends_in_error_with_its_exit_code_and_stderr(
    deployment: MakeDeployment,
) -> None:
    dep = deployment()
    dep.start_worker()
    dep.send_app("failing", FAILING)
    uid = dep.submit("failing")

    dep.wait_for_jobs([uid], timeout_s=60)
    listed = {j["uid"]: j for j in dep.client_json("--xwworks", uid)}
    assert listed[uid]["status"] == "ERROR", listed[uid]
    assert listed[uid]["exit_code"] == 3, listed[uid]
    assert listed[uid]["retry"] == 0, "a job that ran and failed is not a lost job to retry"

    folder = dep.results(uid)
    assert "cannot open input.dat: no such file" in (folder / "stderr.txt").read_text()
    assert (folder / "stdout.txt").read_text() == "half done\n"
