"""Accounting: the CPU time and peak memory a job used, as the kernel counted them (wait4).

Run with both runners: under bubblewrap the figures must still be the job's own (where bwrap
cannot run, skipped locally with the reason, failed in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwworker.executor import Executor
from xwworker.sandbox import BubblewrapRunner, LocalRunner, Runner, probe_bwrap

SHA = "0" * 64


@pytest.fixture(params=["local", "bubblewrap"])
def runner(request: pytest.FixtureRequest) -> Runner:
    if request.param == "local":
        return LocalRunner()
    bwrap, why = probe_bwrap()
    if bwrap is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox must run in CI: {why}")
        pytest.skip(f"bubblewrap cannot run here: {why}")
    return BubblewrapRunner(bwrap)


def run_args(tmp_path: Path, body: str) -> tuple[Assignment, Path]:
    binary = tmp_path / "cache" / "app.py"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/usr/bin/env python3\n" + body)
    assignment = Assignment(
        task_uid="0a11c0de-0000-4000-8000-00000000acc7",
        job_uid="0a11c0de-0000-4000-8000-0000000000b1",
        seq=1,
        app_name="burner",
        args=[],
        lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid="0a11c0de-0000-4000-8000-0000000000da", sha256=SHA),
    )
    return assignment, binary


async def test_a_job_burning_one_cpu_second_reports_it_within_20_percent(
    tmp_path: Path, runner: Runner
) -> None:
    a, binary = run_args(
        tmp_path,
        "import time\nstart = time.process_time()\nwhile time.process_time() - start < 1.0:\n    pass\n",
    )
    outcome = await Executor(tmp_path / "work", runner).run(a, binary)

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    acct = outcome.accounting
    assert acct is not None
    cpu_s = acct["cpu_user_s"] + acct["cpu_system_s"]
    assert 0.8 <= cpu_s <= 1.2, acct
    assert acct["wall_s"] >= cpu_s * 0.9
    assert acct["wall_s"] <= outcome.wall_time_s


async def test_the_peak_memory_of_a_job_allocating_100_mb_is_at_least_100_mb(
    tmp_path: Path, runner: Runner
) -> None:
    a, binary = run_args(
        tmp_path,
        "import time\n"
        "block = bytearray(110 * 1024 * 1024)\n"
        "block[::4096] = b'x' * len(block[::4096])\n"
        # held a moment: when the worker itself is larger than the job, the figure is what
        # the executor saw of the job while it ran
        "time.sleep(0.5)\n",
    )
    outcome = await Executor(tmp_path / "work", runner).run(a, binary)

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    assert outcome.accounting is not None
    assert outcome.accounting["max_rss_bytes"] >= 100 * 1024 * 1024


async def test_a_small_job_is_not_charged_with_the_workers_own_memory(tmp_path: Path, runner: Runner) -> None:
    ballast = bytearray(200 * 1024 * 1024)  # the worker is large when it starts the job
    ballast[::4096] = b"x" * len(ballast[::4096])
    a, binary = run_args(tmp_path, "import time\ntime.sleep(0.5)\n")
    outcome = await Executor(tmp_path / "work", runner).run(a, binary)
    del ballast

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    assert outcome.accounting is not None
    assert 0 < outcome.accounting["max_rss_bytes"] < 100 * 1024 * 1024


async def test_a_job_that_cannot_start_has_no_accounting(tmp_path: Path) -> None:
    a, binary = run_args(tmp_path, "")
    binary.write_bytes(b"\x00\x01 neither a script nor an executable")
    outcome = await Executor(tmp_path / "work").run(a, binary)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.accounting is None
