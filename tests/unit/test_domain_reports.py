"""Reports on every database, through the server's functions: reports riding on work
requests, reports for tasks no longer live, inline results. Each test mirrors one of
tests/unit/test_server_reports.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import hashlib

import pytest
from helpers import domain as d
from sqlalchemy import update

from xwcommon import defaults
from xwcommon.errors import BadRequest, IntegrityError
from xwcommon.protocol.work import InlineResult
from xwserver import data, leases
from xwserver.db.models import Task
from xwserver.state import Server


async def test_a_work_request_carries_reports_and_gets_the_next_job(domain: Server) -> None:
    """Mirrors test_a_work_request_carries_reports_and_gets_the_next_job."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    first = await d.submit(srv, admin, "work")
    second = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    assert a.job_uid == first["uid"]

    ended = d.task_report(a.task_uid, status="ERROR", exit_code=3, message="boom")
    answer = await d.work_request(srv, host, reports=[ended])
    assert [(r.task_uid, r.job_status, r.error) for r in answer.reported] == [(a.task_uid, "ERROR", None)]
    assert [b.job_uid for b in answer.assignments] == [second["uid"]]
    done = await d.job(srv, first["uid"])
    assert (done["status"], done["exit_code"], done["message"]) == ("ERROR", 3, "boom")


async def test_a_report_for_a_task_no_longer_live_is_answered_alone(domain: Server) -> None:
    """Mirrors test_a_report_for_a_task_no_longer_live_is_answered_alone."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    lost_job = await d.submit(srv, admin, "work", max_retry=0)
    kept_job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    lost, kept = await d.request_work(srv, host, capacity=2)
    # the first task's lease runs out: its report must change nothing, the second still counts
    async with srv.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.uid == lost.task_uid).values(lease_expires_at=0))
    await leases.reap(srv)

    answer = await d.work_request(
        srv, host, reports=[d.task_report(lost.task_uid), d.task_report(kept.task_uid)]
    )
    outcome = {r.task_uid: r for r in answer.reported}
    assert outcome[lost.task_uid].error == "task_gone"
    assert outcome[kept.task_uid].job_status == "COMPLETED"
    assert (await d.job(srv, lost_job["uid"]))["status"] == "ERROR"  # retries spent; not completed
    assert (await d.job(srv, kept_job["uid"]))["status"] == "COMPLETED"
    assert answer.assignments == []


async def test_a_small_result_rides_inline_in_the_report_and_is_stored_as_the_jobs_result(
    domain: Server,
) -> None:
    """Mirrors test_a_small_result_rides_inline_in_the_report_and_is_stored_as_the_jobs_result."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    assert await d.report(srv, a.task_uid, result_inline=d.inline(d.EMPTY_ZIP)) == "COMPLETED"
    done = await d.job(srv, job["uid"])
    assert done["status"] == "COMPLETED"
    assert done["result_sha256"] == hashlib.sha256(d.EMPTY_ZIP).hexdigest()
    assert await d.content(srv, admin, done["result_uid"]) == d.EMPTY_ZIP
    # the result belongs to the job's owner, not to the worker that sent it
    shown = await data.render(srv, await data.get_readable(srv, admin, done["result_uid"]))
    assert shown["owner_uid"] == done["owner_uid"] == admin.uid


async def test_a_bad_inline_result_is_refused_and_the_task_stays_live(domain: Server) -> None:
    """Mirrors test_a_bad_inline_result_is_refused_and_the_task_stays_live, for the inline
    results the server itself refuses (what the wire's decoding refuses stays with the HTTP
    test: a body that is not a report never reaches the server's functions)."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    too_big = bytes(defaults.INLINE_RESULT_MAX_BYTES + 1)
    cases: list[tuple[type[Exception], str, InlineResult]] = [
        (BadRequest, "base64", InlineResult(content_b64="not base64!", sha256="0" * 64)),
        (IntegrityError, "sha256", d.inline(b"abc", sha256="0" * 64)),
        (BadRequest, "at most", d.inline(too_big)),
    ]
    for error, named, bad in cases:
        with pytest.raises(error, match=named):
            await d.report(srv, a.task_uid, result_inline=bad)
        assert (await d.job(srv, job["uid"]))["status"] == "RUNNING"
    assert await d.report(srv, a.task_uid, result_inline=d.inline(b"fine")) == "COMPLETED"
    assert (await d.job(srv, job["uid"]))["status"] == "COMPLETED"


async def test_a_bad_result_uid_beside_an_inline_result_refuses_that_report_alone(domain: Server) -> None:
    """Mirrors test_a_bad_result_uid_beside_an_inline_result_refuses_that_report_alone."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    jobs = [(await d.submit(srv, admin, "work"))["uid"] for _ in range(2)]
    host = await d.register(srv)
    with_inline, bogus = await d.request_work(srv, host, capacity=2)
    reports = [
        d.task_report(with_inline.task_uid, result_inline=d.inline(d.EMPTY_ZIP)),
        # names the other task's result: refused for this report, not for the request
        d.task_report(bogus.task_uid, result_uid=with_inline.task_uid),
    ]
    answer = await d.work_request(srv, host, reports=reports)
    outcomes = {o.task_uid: o for o in answer.reported}
    assert outcomes[with_inline.task_uid].job_status == "COMPLETED"
    assert outcomes[bogus.task_uid].error == "bad_request"
    assert "result_uid" in (outcomes[bogus.task_uid].message or "")
    done = await d.job(srv, with_inline.job_uid)
    assert done["result_sha256"] == hashlib.sha256(d.EMPTY_ZIP).hexdigest()
    assert (await d.job(srv, bogus.job_uid))["status"] == "RUNNING"
    assert sorted(jobs) == sorted([with_inline.job_uid, bogus.job_uid])
