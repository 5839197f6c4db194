"""Two server processes for one home on PostgreSQL; one is SIGKILLed in the middle of a run.

2,000 short jobs, 3 real workers, ``server.processes=2``: the supervisor starts two server
processes on the same address (SO_REUSEPORT). When one dies, its connections break, the
workers reconnect to the other (the same address), exact leases hand back what the dead
one committed but never answered, and the supervisor starts a new process. Every job ends
COMPLETED exactly once and nothing stays RUNNING.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import psutil
import pytest
from helpers.deployment import MakeDeployment
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow

N_JOBS = 2000
RUN_BOUND_S = 240.0
SETTINGS: dict[str, object] = {
    "server.processes": 2,
    "lease_s": 10,
    "heartbeat_interval_s": 1,
    "reaper_interval_s": 0.5,
}
ECHO = "#!/bin/sh\necho $1\n"


def _servers(supervisor: int) -> list[int]:
    return sorted(p.pid for p in psutil.Process(supervisor).children() if p.status() != psutil.STATUS_ZOMBIE)


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.timeout(RUN_BOUND_S + 60)
def test_two_processes_on_postgresql_complete_every_job_once_when_one_is_killed(
    deployment: MakeDeployment, database: str | None
) -> None:
    dep = deployment(database, **SETTINGS)
    supervisor = dep.server_pid()
    assert supervisor is not None
    servers = wait_until(
        lambda: s if len(s := _servers(supervisor)) == 2 else None, timeout_s=20, what="2 servers"
    )
    dep.send_app("echo", ECHO)
    macro = dep.workdir / "jobs.macro"
    macro.write_text("".join(f"--xwsendwork echo {i}\n" for i in range(N_JOBS)), encoding="utf-8")
    out = dep.client("--xwmacro", str(macro), timeout_s=180).stdout
    uids = [line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("xw://")]
    assert len(uids) == N_JOBS
    started = time.monotonic()
    for k in (2, 3, 4):
        dep.start_worker(workpool_size=k)
    db = dep.database()

    def completed() -> int:
        return int(db.scalar("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'"))

    wait_until(
        lambda: completed() >= N_JOBS // 4, timeout_s=RUN_BOUND_S, interval_s=0.1, what="a quarter done"
    )
    victim = servers[0]
    os.kill(victim, signal.SIGKILL)
    done_at_kill = completed()
    assert done_at_kill < N_JOBS
    # the supervisor starts another in its place
    wait_until(
        lambda: len(s := _servers(supervisor)) == 2 and victim not in s,
        timeout_s=20,
        what="the supervisor to replace the killed server",
    )
    wait_until(
        lambda: completed() == N_JOBS,
        timeout_s=max(1.0, RUN_BOUND_S - (time.monotonic() - started)),
        interval_s=0.2,
        what=f"all {N_JOBS} jobs completed",
        describe=lambda: dep.describe(f"{completed()} completed"),
    )
    print(f"{N_JOBS} jobs in {time.monotonic() - started:.1f}s; server {victim} killed at {done_at_kill}")
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
    assert dep.server_pid() == supervisor and psutil.pid_exists(supervisor)


def test_sqlite_serves_one_process_and_says_so(deployment: MakeDeployment) -> None:
    dep = deployment(start=False, **{"server.processes": 2})
    r = dep.xwserver("start", "--home", str(dep.home), "--timeout", "20", check=False, timeout_s=60)
    assert r.returncode != 0
    assert "SQLite serves one process" in r.stdout + r.stderr
