"""The collector removes what nothing references, and nothing else. On SQLite (one also on
PostgreSQL and MariaDB); tests/unit/test_domain_collector.py holds their scenarios on every
database through the server's functions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from xwserver import leases
from xwserver.collector import collect_garbage

if TYPE_CHECKING:
    from conftest import XW


def _later(xw: XW) -> float:
    return time.time() + xw.settings.gc_grace_s + 1


@pytest.mark.every_database
async def test_a_lost_tasks_result_is_collected_and_a_reported_one_is_kept(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    lost_job = await xw.submit(xw.admin, "work")
    kept_job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    lost, kept = await xw.request_work(host, capacity=2)
    uploads = {}
    for a, content in ((lost, b"result of a lost task"), (kept, b"result that was reported")):
        body = await xw.ok("POST", f"/work/tasks/{a['task_uid']}/result", token=xw.worker, data=content)
        uploads[a["task_uid"]] = body["result_uid"]
    await xw.ok(
        "POST",
        f"/work/tasks/{kept['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": uploads[kept["task_uid"]]},
    )
    # the first task is lost before it reports: its job goes back to PENDING
    await leases.reap(xw.srv, now=time.time() + xw.settings.lease_s + 1)
    files_before = len(xw.store_files())

    assert await collect_garbage(xw.srv) == (0, 0)  # nothing is old enough yet
    # later: the lost task's result (row and file) goes, the reported one stays
    assert await collect_garbage(xw.srv, now=_later(xw)) == (1, 1)
    assert len(xw.store_files()) == files_before - 1

    listed = {d["uid"] for d in (await xw.ok("GET", "/data", token=xw.admin))["data"]}
    assert uploads[lost["task_uid"]] not in listed
    assert uploads[kept["task_uid"]] in listed
    assert (await xw.job(kept_job["uid"]))["result_uid"] == uploads[kept["task_uid"]]
    assert (await xw.job(lost_job["uid"]))["status"] == "PENDING"
    kept_result = await xw.call("GET", f"/data/{uploads[kept['task_uid']]}/content", token=xw.admin)
    assert kept_result.status == 200 and kept_result.body == b"result that was reported"
    # the app's binary and everything else referenced is still there
    assert await collect_garbage(xw.srv, now=_later(xw)) == (0, 0)


async def test_a_running_tasks_result_is_never_collected(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    body = await xw.ok("POST", f"/work/tasks/{a['task_uid']}/result", token=xw.worker, data=b"partial")
    assert await collect_garbage(xw.srv, now=_later(xw)) == (0, 0)
    report = await xw.call(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": body["result_uid"]},
    )
    assert report.status == 200
