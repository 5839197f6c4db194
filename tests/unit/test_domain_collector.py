"""The collector on every database, through the server's functions: it removes what nothing
references (a lost task's result), and nothing else (a reported result, a running task's).
Each test mirrors one of tests/unit/test_server_collector.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import time

from helpers import domain as d

from xwserver import data, leases
from xwserver.collector import collect_garbage
from xwserver.state import Server


def _later(srv: Server) -> float:
    return time.time() + srv.settings.gc_grace_s + 1


async def test_a_lost_tasks_result_is_collected_and_a_reported_one_is_kept(domain: Server) -> None:
    """Mirrors test_a_lost_tasks_result_is_collected_and_a_reported_one_is_kept."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    lost_job = await d.submit(srv, admin, "work")
    kept_job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    lost, kept = await d.request_work(srv, host, capacity=2)
    uploads = {}
    for a, content in ((lost, b"result of a lost task"), (kept, b"result that was reported")):
        uploads[a.task_uid] = await d.upload_result(srv, a.task_uid, content)
    await d.report(srv, kept.task_uid, exit_code=0, result_uid=uploads[kept.task_uid])
    # the first task is lost before it reports: its job goes back to PENDING
    await leases.reap(srv, now=d.later(srv))
    files_before = len(d.store_files(srv))

    assert await collect_garbage(srv) == (0, 0)  # nothing is old enough yet
    # later: the lost task's result (row and file) goes, the reported one stays
    assert await collect_garbage(srv, now=_later(srv)) == (1, 1)
    assert len(d.store_files(srv)) == files_before - 1

    listed = {x["uid"] for x in await data.list_data(srv, admin)}
    assert uploads[lost.task_uid] not in listed
    assert uploads[kept.task_uid] in listed
    assert (await d.job(srv, kept_job["uid"]))["result_uid"] == uploads[kept.task_uid]
    assert (await d.job(srv, lost_job["uid"]))["status"] == "PENDING"
    assert await d.content(srv, admin, uploads[kept.task_uid]) == b"result that was reported"
    # the app's binary and everything else referenced is still there
    assert await collect_garbage(srv, now=_later(srv)) == (0, 0)


async def test_a_running_tasks_result_is_never_collected(domain: Server) -> None:
    """Mirrors test_a_running_tasks_result_is_never_collected."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    result_uid = await d.upload_result(srv, a.task_uid, b"partial")
    assert await collect_garbage(srv, now=_later(srv)) == (0, 0)
    assert await d.report(srv, a.task_uid, exit_code=0, result_uid=result_uid) == "COMPLETED"
