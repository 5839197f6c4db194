"""Task accounting on every database, through the server's functions: what a worker
measured for a task rides on its report and shows on the task. Each test mirrors one of
tests/unit/test_server_accounting.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

from typing import Any

from helpers import domain as d

from xwcommon.protocol.work import Accounting
from xwserver import jobs, objects
from xwserver.state import Server

ACCOUNTING = {"cpu_user_s": 1.25, "cpu_system_s": 0.5, "wall_s": 3.0, "max_rss_bytes": 123_456_789}


async def _running(srv: Server) -> tuple[str, str, str]:
    """(job uid, host uid, task uid) of one job a fresh host holds."""
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    return job["uid"], host, a.task_uid


async def _task(srv: Server, job_uid: str) -> dict[str, Any]:
    """``GET /tasks?job=``: the job's one task."""
    [task] = await jobs.list_tasks(srv, await d.admin(srv), job=job_uid)
    return task


async def test_a_report_stores_the_accounting_shown_on_the_task(domain: Server) -> None:
    """Mirrors test_a_report_stores_the_accounting_shown_on_the_task."""
    srv = domain
    job, _host, task = await _running(srv)
    assert await d.report(srv, task, accounting=Accounting(**ACCOUNTING)) == "COMPLETED"
    shown = await _task(srv, job)
    assert shown["accounting"] == ACCOUNTING
    assert isinstance(shown["accounting"]["max_rss_bytes"], int)
    via_object = await objects.get(srv, await d.admin(srv), task)
    assert via_object["object"]["accounting"] == ACCOUNTING


async def test_a_task_without_accounting_shows_null_and_a_partial_one_nulls_the_rest(domain: Server) -> None:
    """Mirrors test_a_task_without_accounting_shows_null_and_a_partial_one_nulls_the_rest."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    first = await d.submit(srv, admin, "work")
    second = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    running = await d.request_work(srv, host, capacity=2)
    assert (await _task(srv, first["uid"]))["accounting"] is None  # nothing reported yet
    reports = [
        d.task_report(running[0].task_uid, accounting=None),
        d.task_report(running[1].task_uid, status="ERROR", accounting=Accounting(wall_s=2)),
    ]
    answer = await d.work_request(srv, host, reports=reports)
    assert [r.job_status for r in answer.reported] == ["COMPLETED", "ERROR"]
    assert {a.job_uid for a in running} == {first["uid"], second["uid"]}
    assert (await _task(srv, running[0].job_uid))["accounting"] is None
    assert (await _task(srv, running[1].job_uid))["accounting"] == {
        "cpu_user_s": None,
        "cpu_system_s": None,
        "wall_s": 2.0,
        "max_rss_bytes": None,
    }


async def test_accounting_rides_on_a_work_request_report(domain: Server) -> None:
    """Mirrors test_accounting_rides_on_a_work_request_report."""
    srv = domain
    job, host, task = await _running(srv)
    answer = await d.work_request(
        srv, host, reports=[d.task_report(task, accounting=Accounting(**ACCOUNTING))]
    )
    assert [(r.task_uid, r.job_status, r.error) for r in answer.reported] == [(task, "COMPLETED", None)]
    assert (await _task(srv, job))["accounting"] == ACCOUNTING
