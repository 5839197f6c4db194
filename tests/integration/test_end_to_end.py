"""The main path with real processes on every database: init, start, worker, app, jobs, results."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.deployment import Deployment, MakeDeployment, python_program

#: real processes, many jobs or waits for leases: seconds each
pytestmark = pytest.mark.slow

N_JOBS = 10

#: sum of the squares of 1..n, n from the first argument or else from standard input
SUM_OF_SQUARES = python_program(
    """
import sys

words = sys.argv[1:] or sys.stdin.read().split()
n = int(words[0])
print(sum(i * i for i in range(1, n + 1)))
"""
)


def sum_of_squares(n: int) -> int:
    return n * (n + 1) * (2 * n + 1) // 6


def _start(deployment: MakeDeployment, database: str | None) -> Deployment:
    dep = deployment(database)
    dep.start_worker(workpool_size=2)
    dep.send_app("squares", SUM_OF_SQUARES)
    return dep


def test_jobs_submitted_by_the_client_are_computed_by_a_worker_and_their_results_fetched(
    database: str | None, deployment: MakeDeployment
) -> None:
    dep = _start(deployment, database)
    inputs = {dep.submit("squares", str(n)): n for n in range(1, N_JOBS + 1)}
    assert len(inputs) == N_JOBS  # every submission made a new job

    jobs = dep.wait_for_jobs(inputs, timeout_s=60)
    assert {uid: j["status"] for uid, j in jobs.items()} == dict.fromkeys(inputs, "COMPLETED")
    assert all(j["exit_code"] == 0 and j["retry"] == 0 for j in jobs.values())

    dep.client("--xwresults", *inputs)  # xwresults UID1 UID2 …: one ResultsOf_<UID> each
    for uid, n in inputs.items():
        folder = dep.workdir / f"ResultsOf_{uid}"
        assert (dep.workdir / f"ResultsOf_{uid}.zip").is_file()
        assert (folder / "stdout.txt").read_text() == f"{sum_of_squares(n)}\n"
        assert (folder / "stderr.txt").read_text() == ""

    # as XWHEP does, a job whose result was downloaded and checked is removed from the server
    listed = {j["uid"] for j in dep.client_json("--xwworks")}
    assert listed.isdisjoint(inputs)


def test_a_redirected_standard_input_becomes_the_jobs_standard_input(
    database: str | None, deployment: MakeDeployment, tmp_path: Path
) -> None:
    dep = _start(deployment, database)
    given = tmp_path / "n.txt"
    given.write_text("12\n")
    uid = dep.submit("squares", stdin=given, timeout_s=30)  # xwsendwork squares < n.txt

    job = dep.wait_for_jobs([uid], timeout_s=60)[uid]
    assert job["status"] == "COMPLETED", job
    assert job["stdin_uid"], "the job was submitted without its standard input"
    assert (dep.results(uid) / "stdout.txt").read_text() == f"{sum_of_squares(12)}\n"
