"""Task accounting: what a worker measured for a task rides on its report and shows on the task.

Run through the ``xw`` fixture (a real server over HTTPS) on SQLite, one also on PostgreSQL and
MariaDB; tests/unit/test_domain_accounting.py holds their scenarios on every database through the
server's functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import XW

ACCOUNTING = {"cpu_user_s": 1.25, "cpu_system_s": 0.5, "wall_s": 3.0, "max_rss_bytes": 123_456_789}


async def _running(xw: XW) -> tuple[str, str, str]:
    """(job uid, host uid, task uid) of one job a fresh host holds."""
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    return job["uid"], host, a["task_uid"]


async def _task(xw: XW, job_uid: str) -> dict[str, Any]:
    [task] = await xw.tasks(job_uid)
    return task


@pytest.mark.every_database
async def test_a_report_stores_the_accounting_shown_on_the_task(xw: XW) -> None:
    job, _host, task = await _running(xw)
    body = {"status": "COMPLETED", "exit_code": 0, "accounting": ACCOUNTING}
    assert await xw.ok("POST", f"/work/tasks/{task}/report", token=xw.worker, json=body) == {
        "job_status": "COMPLETED"
    }
    shown = await _task(xw, job)
    assert shown["accounting"] == ACCOUNTING
    assert isinstance(shown["accounting"]["max_rss_bytes"], int)
    via_object = await xw.ok("GET", f"/objects/{task}", token=xw.admin)
    assert via_object["object"]["accounting"] == ACCOUNTING


async def test_a_task_without_accounting_shows_null_and_a_partial_one_nulls_the_rest(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    first = await xw.submit(xw.admin, "work")
    second = await xw.submit(xw.admin, "work")
    host = await xw.register()
    running = await xw.request_work(host, capacity=2)
    assert (await _task(xw, first["uid"]))["accounting"] is None  # nothing reported yet
    reports = [
        {"task_uid": running[0]["task_uid"], "status": "COMPLETED", "exit_code": 0},
        {"task_uid": running[1]["task_uid"], "status": "ERROR", "accounting": {"wall_s": 2}},
    ]
    answer = await xw.ok(
        "POST", "/work/request", token=xw.worker, json={"host_uid": host, "wait_s": 0, "reports": reports}
    )
    assert [r.get("job_status") for r in answer["reported"]] == ["COMPLETED", "ERROR"]
    by_job = {a["job_uid"]: a for a in running}
    assert set(by_job) == {first["uid"], second["uid"]}
    assert (await _task(xw, running[0]["job_uid"]))["accounting"] is None
    assert (await _task(xw, running[1]["job_uid"]))["accounting"] == {
        "cpu_user_s": None,
        "cpu_system_s": None,
        "wall_s": 2.0,
        "max_rss_bytes": None,
    }


async def test_accounting_rides_on_a_work_request_report(xw: XW) -> None:
    job, host, task = await _running(xw)
    report = {"task_uid": task, "status": "COMPLETED", "exit_code": 0, "accounting": ACCOUNTING}
    answer = await xw.ok(
        "POST", "/work/request", token=xw.worker, json={"host_uid": host, "wait_s": 0, "reports": [report]}
    )
    assert answer["reported"] == [{"task_uid": task, "job_status": "COMPLETED"}]
    assert (await _task(xw, job))["accounting"] == ACCOUNTING


BAD_ACCOUNTING = [
    ("fast", "accounting"),
    ([1, 2], "accounting"),
    ({"cpu_user_s": -0.1}, "accounting.cpu_user_s"),
    ({"cpu_system_s": "1"}, "accounting.cpu_system_s"),
    ({"wall_s": True}, "accounting.wall_s"),
    ({"wall_s": 1e300}, "accounting.wall_s"),
    ({"max_rss_bytes": 1.5}, "accounting.max_rss_bytes"),
    ({"max_rss_bytes": -1}, "accounting.max_rss_bytes"),
    ({"max_rss_bytes": 2**63}, "accounting.max_rss_bytes"),
    ({"gpu_s": 1}, "gpu_s"),
]


async def test_bad_accounting_is_a_400_naming_the_key_and_changes_nothing(xw: XW) -> None:
    job, host, task = await _running(xw)
    for accounting, field in BAD_ACCOUNTING:
        body = {"status": "COMPLETED", "exit_code": 0, "accounting": accounting}
        r = await xw.call("POST", f"/work/tasks/{task}/report", token=xw.worker, json=body)
        assert r.status == 400 and field in r.body["message"], (accounting, r)
        piggy = {"host_uid": host, "wait_s": 0, "reports": [{"task_uid": task, **body}]}
        r = await xw.call("POST", "/work/request", token=xw.worker, json=piggy)
        message = r.body["message"]
        assert r.status == 400 and "reports[0]" in message and field in message, (accounting, r)
    assert (await _task(xw, job))["status"] == "RUNNING"
    assert (await xw.job(job))["status"] == "RUNNING"
    await xw.assert_healthy()


async def test_a_non_finite_number_is_refused(xw: XW) -> None:
    job, _host, task = await _running(xw)
    for raw in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"status": "COMPLETED", "accounting": {"wall_s": ' + raw + b"}}"
        r = await xw.call(
            "POST",
            f"/work/tasks/{task}/report",
            token=xw.worker,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 400 and "accounting.wall_s" in r.body["message"], r
    assert (await _task(xw, job))["accounting"] is None
    await xw.assert_healthy()
