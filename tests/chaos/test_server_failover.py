"""Two server homes on one PostgreSQL database; real workers list both; each server in turn
is SIGKILLed during a run of jobs.

The second home is the first one copied (the same CA and server certificate, the same
database) on a port of its own, its data store shared with the first (here a symbolic
link; in production a shared file system). The workers' ``dispatcher.servers`` names both.
Server A is killed while a quarter of the jobs is done: the workers fail over to B at once
(another server of the list is asked without waiting). A is started again; then B is
killed: the workers come back to A and finish. Exact leases and the lease reaper (run by
whichever server holds the advisory lock) hand back what a dead server committed and never
answered. Every job ends COMPLETED exactly once and nothing stays RUNNING.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.deployment import Deployment, MakeDeployment
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow

N_JOBS = 600
RUN_BOUND_S = 150.0
SETTINGS: dict[str, object] = {
    "lease_s": 10,
    "heartbeat_interval_s": 1,
    "reaper_interval_s": 0.5,
}
ECHO = "#!/bin/sh\necho $1\n"


def _second_home(first: Deployment, root: Path) -> Deployment:
    """A copy of ``first``'s home on a port of its own, sharing its database and data store."""
    second = Deployment(root, db_url=first.db_url, settings=first.settings)
    second.admin_password = first.admin_password
    shutil.copytree(first.home / "conf", second.home / "conf")
    shutil.copytree(first.home / "keystore", second.home / "keystore")
    (second.home / "var").mkdir(parents=True)
    os.symlink(first.data_dir, second.data_dir, target_is_directory=True)
    second.workdir.mkdir(parents=True, exist_ok=True)
    text = second.server_conf.read_text(encoding="utf-8").replace(first.url, second.url)
    assert second.url in text, "the copied home must name its own port"
    second.server_conf.write_text(text, encoding="utf-8")
    return second


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.timeout(RUN_BOUND_S + 90)
def test_workers_listing_two_servers_fail_over_and_come_back_and_complete_every_job_once(
    deployment: MakeDeployment, database: str | None, tmp_path: Path
) -> None:
    a = deployment(database, start=False, **SETTINGS)
    b = _second_home(a, tmp_path / "second")
    try:
        # the two servers start side by side: each start is seconds of a process's own work
        with ThreadPoolExecutor(max_workers=2) as pool:
            for starting in [pool.submit(a.start_server), pool.submit(b.start_server)]:
                starting.result()
        a.send_app("echo", ECHO)
        macro = a.workdir / "jobs.macro"
        macro.write_text("".join(f"--xwsendwork echo {i}\n" for i in range(N_JOBS)), encoding="utf-8")
        out = a.client("--xwmacro", str(macro), timeout_s=120).stdout
        uids = [line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("xw://")]
        assert len(uids) == N_JOBS
        db = a.database()

        def completed() -> int:
            return int(db.scalar("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'"))

        started = time.monotonic()
        for k in (1, 2):
            a.start_worker(workpool_size=k, **{"dispatcher.servers": f"{a.url} {b.url}"})

        def left_s() -> float:
            return max(1.0, RUN_BOUND_S - (time.monotonic() - started))

        wait_until(lambda: completed() >= N_JOBS // 4, timeout_s=left_s(), interval_s=0.1, what="a quarter")
        a.kill_server()
        killed_a_at = completed()
        # the workers go on with B
        wait_until(
            lambda: completed() >= killed_a_at + N_JOBS // 8,
            timeout_s=left_s(),
            interval_s=0.1,
            what="jobs completed through B while A is down",
            describe=lambda: b.describe(f"{completed()} completed"),
        )
        a.start_server()
        wait_until(lambda: completed() >= N_JOBS // 2, timeout_s=left_s(), interval_s=0.1, what="half")
        b.kill_server()
        killed_b_at = completed()
        assert killed_b_at < N_JOBS, "the run ended before B was killed: raise N_JOBS"
        # and come back to A
        wait_until(
            lambda: completed() == N_JOBS,
            timeout_s=left_s(),
            interval_s=0.2,
            what=f"all {N_JOBS} jobs completed",
            describe=lambda: a.describe(f"{completed()} completed"),
        )
        print(
            f"{N_JOBS} jobs in {time.monotonic() - started:.1f}s; A killed at {killed_a_at}, "
            f"B killed at {killed_b_at}"
        )
        assert dict(db.rows("SELECT status, count(*) FROM jobs GROUP BY status")) == {"COMPLETED": N_JOBS}
        per_job = Counter(
            uid
            for (uid,) in db.rows(
                "SELECT j.uid FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.status = 'COMPLETED'"
            )
        )
        assert set(per_job) == set(uids)
        assert not {u: n for u, n in per_job.items() if n != 1}, "a job completed more than once"
        assert db.scalar("SELECT count(*) FROM tasks WHERE status = 'RUNNING'") == 0
        logs = "".join(w.log_text() for w in a.workers)
        assert b.url in logs and "unreachable" in logs, "the workers never failed over"
    finally:
        b.close()
