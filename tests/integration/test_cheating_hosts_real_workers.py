"""Real workers beside a cheat: four real ``xwworker`` processes and one host that returns a
wrong result for every task it gets (this test speaking the worker protocol: another
program on the wire, not a patched worker), so a fifth of the hosts cheat. 500 jobs with a
quorum of 2 out of 3 copies: no wrong result is accepted, and the honest hosts' records
grow until they get jobs alone (adaptive trust)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.deployment import Deployment

from xwcommon.config import load_properties, resolve_path
from xwcommon.platforms import local_cpu, local_os
from xwcommon.protocol.work import Registered, Registration, WorkAnswer, WorkRequest
from xwcommon.transport import Transport

pytestmark = pytest.mark.slow

JOBS = 500
#: a shell script: a Python one costs each of the ~1,200 copies ~20 ms of CPU more to start
SQUARE = """#!/bin/sh
echo $(($1 * $1))
"""


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        d.init()
        d.start_server()
        d.workdir.mkdir(parents=True, exist_ok=True)
        yield d
    finally:
        d.close()


def _wrong(n: int) -> dict[str, str]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("stdout.txt", f"{n * n + 1}\n")
        archive.writestr("stderr.txt", "")
    content = out.getvalue()
    return {"content_b64": base64.b64encode(content).decode(), "sha256": hashlib.sha256(content).hexdigest()}


class Cheat:
    """A host that answers every task it gets with a wrong square, after about the time a
    real job takes (a cheat that answered at once would take the first copy of every job,
    which is a test of speed, not of validation: then no job may go out alone, and none does)."""

    def __init__(self, dep: Deployment) -> None:
        props = load_properties(dep.worker_conf)
        self.transport_args = (
            props["dispatcher.servers"],
            resolve_path(props.get("ca.file") or props["path.certfile"], dep.worker_conf.parent),
            props["login"],
            props["password"],
        )
        self.stop = threading.Event()
        self.host_uid = ""
        self.ran = 0
        self.registered = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), name="cheat", daemon=True)

    async def run(self) -> None:
        async with Transport(*self.transport_args) as t:
            reg = Registration(
                name="cheat",
                os=local_os(),
                cpu=local_cpu(),
                cores=2,
                memory_bytes=4 << 30,
                disk_free_bytes=50 << 30,
                version="cheat",
                held=[],
            )
            self.host_uid = Registered.from_wire(
                await t.request("POST", "/work/register", json=reg.to_wire())
            ).host_uid
            self.registered.set()
            reports: list[dict[str, object]] = []
            while not self.stop.is_set():
                msg = WorkRequest(host_uid=self.host_uid, capacity=2, wait_s=0 if reports else 1.0)
                body = await t.request(
                    "POST", "/work/request", json={**msg.to_wire(), "reports": reports, "held": []}
                )
                answer = WorkAnswer.from_wire(body)
                reports = [
                    {
                        "task_uid": a.task_uid,
                        "status": "COMPLETED",
                        "exit_code": 0,
                        "result_inline": _wrong(int(a.args[0])),
                    }
                    for a in answer.assignments
                ]
                self.ran += len(reports)
                if reports:
                    await asyncio.sleep(0.15)  # "running" them


def test_a_fifth_of_cheating_hosts_gets_no_wrong_result_accepted_beside_real_workers(dep: Deployment) -> None:
    dep.send_app("square", SQUARE)
    macro = dep.workdir / "jobs.macro"
    macro.write_text(
        "".join(f"--xwsendwork square {i} --xwquorum 2 --xwreplicas 3 --xwnostdin\n" for i in range(JOBS))
    )
    uids = [line.rsplit("/", 1)[1] for line in dep.client("--xwmacro", str(macro)).stdout.split()]
    assert len(uids) == JOBS
    cheat = Cheat(dep)
    cheat.thread.start()
    assert cheat.registered.wait(30), "the cheat could not register"
    for _ in range(4):
        dep.start_worker(workpool_size=2)
    try:
        final = dep.wait_for_jobs(uids, timeout_s=400)
    finally:
        cheat.stop.set()
        cheat.thread.join(30)
    assert {j["status"] for j in final.values()} == {"COMPLETED"}, final
    db = dep.database()
    cheat_id = db.scalar("SELECT id FROM hosts WHERE uid = :u", u=cheat.host_uid)
    assert cheat.ran > 0  # it did get copies to cheat on
    # no result of the cheat's was accepted: every valid copy ran on an honest host
    assert db.scalar("SELECT count(*) FROM tasks WHERE host_id = :h AND validity = 'valid'", h=cheat_id) == 0
    assert db.scalar("SELECT count(*) FROM tasks WHERE host_id = :h AND validity = 'invalid'", h=cheat_id) > 0
    assert db.scalar("SELECT valid_streak FROM hosts WHERE id = :h", h=cheat_id) == 0
    # the honest hosts earned trust: some jobs went out alone, fewer than 3 copies a job in all
    alone = db.scalar("SELECT count(*) FROM jobs WHERE trusted")
    copies = db.scalar("SELECT count(*) FROM tasks")
    assert alone > 0 and copies < 3 * JOBS, (alone, copies)
    # and the results say so: a sample of them, downloaded as a user does
    for uid in uids[:: JOBS // 5]:
        n = int(dep.api.job(uid)["args"][0])
        assert (dep.results(uid) / "stdout.txt").read_text().strip() == str(n * n)
    print(f"cheat ran {cheat.ran} copies; {alone} jobs alone; {copies / JOBS:.2f} copies per job")
