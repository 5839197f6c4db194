"""Reports riding on work requests: one call ends tasks and fetches the next. On SQLite (one
also on PostgreSQL and MariaDB); tests/unit/test_domain_reports.py holds their scenarios on
every database through the server's functions."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

import pytest

from xwcommon import defaults
from xwserver import leases

if TYPE_CHECKING:
    from conftest import XW


@pytest.mark.every_database
async def test_a_work_request_carries_reports_and_gets_the_next_job(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    first = await xw.submit(xw.admin, "work")
    second = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    assert a["job_uid"] == first["uid"]

    answer = await xw.ok(
        "POST",
        "/work/request",
        token=xw.worker,
        json={
            "host_uid": host,
            "capacity": 1,
            "wait_s": 0,
            "reports": [{"task_uid": a["task_uid"], "status": "ERROR", "exit_code": 3, "message": "boom"}],
        },
    )
    assert answer["reported"] == [{"task_uid": a["task_uid"], "job_status": "ERROR"}]
    assert [b["job_uid"] for b in answer["assignments"]] == [second["uid"]]
    done = await xw.job(first["uid"])
    assert (done["status"], done["exit_code"], done["message"]) == ("ERROR", 3, "boom")


async def test_a_report_for_a_task_no_longer_live_is_answered_alone(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    lost_job = await xw.submit(xw.admin, "work", max_retry=0)
    kept_job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    lost, kept = await xw.request_work(host, capacity=2)
    # the first task's lease runs out: its report must change nothing, the second still counts
    async with xw.srv.engine.begin() as conn:
        from sqlalchemy import update

        from xwserver.db.models import Task

        await conn.execute(update(Task).where(Task.uid == lost["task_uid"]).values(lease_expires_at=0))
    await leases.reap(xw.srv)

    answer = await xw.ok(
        "POST",
        "/work/request",
        token=xw.worker,
        json={
            "host_uid": host,
            "capacity": 1,
            "wait_s": 0,
            "reports": [
                {"task_uid": lost["task_uid"], "status": "COMPLETED", "exit_code": 0},
                {"task_uid": kept["task_uid"], "status": "COMPLETED", "exit_code": 0},
            ],
        },
    )
    outcome = {r["task_uid"]: r for r in answer["reported"]}
    assert outcome[lost["task_uid"]]["error"] == "task_gone"
    assert outcome[kept["task_uid"]]["job_status"] == "COMPLETED"
    assert (await xw.job(lost_job["uid"]))["status"] == "ERROR"  # retries spent; not completed
    assert (await xw.job(kept_job["uid"]))["status"] == "COMPLETED"
    assert answer["assignments"] == []


async def test_a_malformed_report_refuses_the_whole_request_and_changes_nothing(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    r = await xw.call(
        "POST",
        "/work/request",
        token=xw.worker,
        json={
            "host_uid": host,
            "capacity": 1,
            "wait_s": 0,
            "reports": [
                {"task_uid": a["task_uid"], "status": "COMPLETED", "exit_code": 0},
                {"task_uid": a["task_uid"], "status": "DONE"},
            ],
        },
    )
    assert r.status == 400 and "reports[1]" in r.body["message"] and "status" in r.body["message"]
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"
    await xw.assert_healthy()


def _inline(content: bytes, sha256: str | None = None) -> dict[str, str]:
    return {
        "content_b64": base64.b64encode(content).decode(),
        "sha256": sha256 or hashlib.sha256(content).hexdigest(),
    }


async def test_a_small_result_rides_inline_in_the_report_and_is_stored_as_the_jobs_result(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    content = b"PK\x05\x06" + bytes(18)  # an empty zip archive
    answer = await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": None, "result_inline": _inline(content)},
    )
    assert answer == {"job_status": "COMPLETED"}
    done = await xw.job(job["uid"])
    assert done["status"] == "COMPLETED"
    assert done["result_sha256"] == hashlib.sha256(content).hexdigest()
    got = await xw.call("GET", f"/data/{done['result_uid']}/content", token=xw.admin)
    assert (got.status, got.body) == (200, content)
    # the result belongs to the job's owner, not to the worker that sent it
    data = await xw.ok("GET", f"/data/{done['result_uid']}", token=xw.admin)
    assert data["owner_uid"] == done["owner_uid"]


async def test_a_bad_inline_result_is_refused_and_the_task_stays_live(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    path = f"/work/tasks/{a['task_uid']}/report"
    base = {"status": "COMPLETED", "exit_code": 0}
    too_big = bytes(defaults.INLINE_RESULT_MAX_BYTES + 1)
    cases = [
        ({"content_b64": "not base64!", "sha256": "0" * 64}, "base64"),
        ("just text", "result_inline"),
        ({"content_b64": ""}, "result_inline"),
        (_inline(b"abc", sha256="0" * 64), "sha256"),
        (_inline(too_big), "at most"),
    ]
    for inline, named in cases:
        r = await xw.call("POST", path, token=xw.worker, json={**base, "result_inline": inline})
        assert 400 <= r.status < 500 and named in r.body["message"], (
            named,
            r,
        )
    both = await xw.call(
        "POST",
        path,
        token=xw.worker,
        json={**base, "result_uid": a["task_uid"], "result_inline": _inline(b"x")},
    )
    assert both.status == 400
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"
    await xw.ok("POST", path, token=xw.worker, json={**base, "result_inline": _inline(b"fine")})
    assert (await xw.job(job["uid"]))["status"] == "COMPLETED"


async def test_a_bad_result_uid_beside_an_inline_result_refuses_that_report_alone(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    jobs = [(await xw.submit(xw.admin, "work"))["uid"] for _ in range(2)]
    host = await xw.register()
    inline, bogus = await xw.request_work(host, capacity=2)
    content = b"PK\x05\x06" + bytes(18)  # an empty zip archive
    answer = await xw.ok(
        "POST",
        "/work/request",
        token=xw.worker,
        json={
            "host_uid": host,
            "capacity": 1,
            "wait_s": 0,
            "reports": [
                {"task_uid": inline["task_uid"], "status": "COMPLETED", "result_inline": _inline(content)},
                # names the other task's result: refused for this report, not for the request
                {"task_uid": bogus["task_uid"], "status": "COMPLETED", "result_uid": inline["task_uid"]},
            ],
        },
    )
    outcomes = {o["task_uid"]: o for o in answer["reported"]}
    assert outcomes[inline["task_uid"]]["job_status"] == "COMPLETED"
    assert outcomes[bogus["task_uid"]]["error"] == "bad_request"
    assert "result_uid" in outcomes[bogus["task_uid"]]["message"]
    done = await xw.job(inline["job_uid"])
    assert done["result_sha256"] == hashlib.sha256(content).hexdigest()
    assert (await xw.job(bogus["job_uid"]))["status"] == "RUNNING"
    assert sorted(jobs) == sorted([inline["job_uid"], bogus["job_uid"]])
    await xw.assert_healthy()
