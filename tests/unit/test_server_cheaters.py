"""Cheating volunteers: 20% of the hosts return a wrong result for every task. With a
quorum of 2 out of 3 copies no wrong result is accepted; with adaptive trust, the honest
hosts' jobs go out alone once their records are long. The workers are the test speaking
the worker protocol (a cheat is not a patched worker: it is another program on the wire)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from xwcommon.protocol.work import WorkAnswer
from xwserver import validation
from xwserver.db.models import Host, Job, Task

if TYPE_CHECKING:
    from conftest import XW

JOBS = 500
HOSTS = 10
CHEATERS = 2


def _result(text: str) -> dict[str, str]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("stdout.txt", text)
    content = out.getvalue()
    return {"content_b64": base64.b64encode(content).decode(), "sha256": hashlib.sha256(content).hexdigest()}


async def _volunteer(xw: XW, host: str, cheat: bool, left: dict[str, int], rng: random.Random) -> int:
    """Ask for work, compute (or make up) each answer, report it with the next request; stop
    when every job is over. Returns how many copies it ran."""
    reports: list[dict[str, Any]] = []
    ran = 0
    while left["jobs"] > 0 or reports:
        body = await xw.ok(
            "POST",
            "/work/request",
            token=xw.worker,
            json={"host_uid": host, "capacity": 2, "wait_s": 0, "reports": reports, "held": []},
        )
        answer = WorkAnswer.from_wire(body)
        left["jobs"] -= sum(r.job_status in ("COMPLETED", "ERROR") for r in answer.reported)
        reports = []
        for a in answer.assignments:
            n = int(a.args[0])
            truth = f"{n * n}\n"
            # a cheat's answer is its own: broken hosts do not agree with each other
            text = f"{n * n + rng.randint(1, 10**6)} from {host}\n" if cheat else truth
            reports.append(
                {
                    "task_uid": a.task_uid,
                    "status": "COMPLETED",
                    "exit_code": 0,
                    "result_inline": _result(text),
                }
            )
            ran += 1
        if not answer.assignments and not reports:
            await asyncio.sleep(0.02)
    return ran


async def _run_fleet(xw: XW, n: int = JOBS) -> tuple[dict[str, Any], list[str]]:
    await xw.insert_app(xw.admin, "square")
    jobs = [{"app": "square", "args": [str(i)], "min_quorum": 2, "target_results": 3} for i in range(n)]
    for start in range(0, n, 250):
        await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": jobs[start : start + 250]})
    hosts = [await xw.register(name=f"v{i}") for i in range(HOSTS)]
    cheats = set(hosts[:CHEATERS])
    left = {"jobs": n}
    rng = random.Random(13)
    ran = await asyncio.wait_for(
        asyncio.gather(*(_volunteer(xw, h, h in cheats, left, rng) for h in hosts)), timeout=240
    )
    return {"ran": sum(ran)}, sorted(cheats)


async def _outcome(xw: XW) -> dict[str, Any]:
    async with xw.srv.engine.connect() as conn:
        rows = (
            await conn.execute(select(Job.id, Job.args, Job.status, Job.result_data_id, Job.trusted))
        ).all()
        digests = dict(
            (await conn.execute(select(Task.job_id, Task.digest).where(Task.validity == "valid"))).all()
        )
        streaks = dict((await conn.execute(select(Host.uid, Host.valid_streak))).all())
        copies = (await conn.execute(select(Task.id))).all()
    wrong = 0
    for job_id, args, status, _result_id, _trusted in rows:
        assert status == "COMPLETED", (job_id, status)
        n = int(args.strip('[]"'))
        good = zipfile_digest(f"{n * n}\n")
        wrong += digests.get(job_id) != good
    return {
        "wrong": wrong,
        "alone": sum(bool(r.trusted) for r in rows),
        "copies_per_job": len(copies) / len(rows),
        "streaks": streaks,
    }


def zipfile_digest(text: str) -> str:
    return hashlib.sha256(f"stdout.txt\0{hashlib.sha256(text.encode()).hexdigest()}\n".encode()).hexdigest()


def test_the_digest_the_test_expects_is_the_servers(tmp_path: Any) -> None:
    path = tmp_path / "r.zip"
    path.write_bytes(base64.b64decode(_result("49\n")["content_b64"]))
    assert validation.result_digest(path) == zipfile_digest("49\n")


@pytest.mark.slow
async def test_no_wrong_result_is_accepted_from_a_fifth_of_cheating_hosts_and_honest_hosts_earn_trust(
    xw: XW,
) -> None:
    ran, cheats = await _run_fleet(xw)
    out = await _outcome(xw)
    assert out["wrong"] == 0, out
    assert all(out["streaks"][c] == 0 for c in cheats), out["streaks"]
    honest = [s for h, s in out["streaks"].items() if h not in cheats]
    assert min(honest) >= validation.TRUST_AFTER, out["streaks"]
    # the honest records paid off: jobs went out alone, so fewer than 3 copies a job in all
    assert out["alone"] > JOBS // 10, out
    assert out["copies_per_job"] < 3, out
    assert ran["ran"] == round(out["copies_per_job"] * JOBS)  # every copy sent was run and reported


@pytest.mark.slow
@pytest.mark.parametrize("server_conf", [{"trust_after": "0"}])
async def test_with_adaptive_trust_off_every_job_gets_its_three_copies(xw: XW) -> None:
    await _run_fleet(xw, 200)
    out = await _outcome(xw)
    assert out["wrong"] == 0 and out["alone"] == 0, out
    assert out["copies_per_job"] >= 3, out
