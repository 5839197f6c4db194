"""Removing many jobs at once (what xwresults does) on every database, through the server's
functions: what may go goes, the rest is named with the reason, running copies stop, results
go unless another job reads them. Each test mirrors one of tests/unit/test_server_bulk_delete.py,
whose HTTP versions run on SQLite."""

from __future__ import annotations

import uuid

import pytest
from helpers import domain as d

from xwcommon.errors import NotFound
from xwserver import data, jobs
from xwserver.state import Server


async def test_bulk_removal_removes_what_it_may_and_says_why_not_for_the_rest(domain: Server) -> None:
    """Mirrors test_bulk_removal_removes_what_it_may_and_says_why_not_for_the_rest."""
    srv = domain
    admin = await d.admin(srv)
    alice, bob = await d.add_user(srv, "alice"), await d.add_user(srv, "bob")
    await d.insert_app(srv, alice, "alices")  # private app: alice's jobs are 0700
    await d.insert_app(srv, admin, "public")  # public app: its jobs are 0755, readable by all
    mine = [await d.submit(srv, alice, "alices") for _ in range(3)]
    bobs = await d.insert_app(srv, bob, "bobs")
    assert bobs["access_rights"] == "0700"
    bobs_job = await d.submit(srv, bob, "bobs")
    public_job = await d.submit(srv, admin, "public")
    unknown = str(uuid.uuid4())
    uids = [
        mine[0]["uid"],
        mine[1]["uri"],
        mine[0]["uid"],
        bobs_job["uid"],
        public_job["uid"],
        unknown,
        mine[2]["uid"],
    ]
    answer = await jobs.delete_many(srv, alice, {"uids": uids})
    assert answer["deleted"] == [mine[0]["uid"], mine[1]["uid"], mine[2]["uid"]]
    missing = {m["uid"]: m["reason"] for m in answer["missing"]}
    assert set(missing) == {bobs_job["uid"], public_job["uid"], unknown}
    assert missing[unknown] == missing[bobs_job["uid"]] == "no such job"  # unreadable is as absent
    assert "0755" in missing[public_job["uid"]]
    assert await d.job_list(srv, alice, owner="me") == {}
    assert (await d.job(srv, bobs_job["uid"]))["status"] == "PENDING"
    assert (await d.job(srv, public_job["uid"]))["status"] == "PENDING"
    # again: all gone already, nothing fails
    again = await jobs.delete_many(srv, alice, {"uids": [mine[0]["uid"]]})
    assert again == {"deleted": [], "missing": [{"uid": mine[0]["uid"], "reason": "no such job"}]}
    assert await jobs.delete_many(srv, alice, {"uids": []}) == {"deleted": [], "missing": []}


async def test_bulk_removal_aborts_running_jobs_and_removes_results(domain: Server) -> None:
    """Mirrors test_bulk_removal_aborts_running_jobs_and_removes_results."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    submitted = [await d.submit(srv, admin, "work") for _ in range(2)]
    host = await d.register(srv)
    got = {a.job_uid: a.task_uid for a in await d.request_work(srv, host, capacity=2)}
    done, running = submitted[0]["uid"], submitted[1]["uid"]
    result_uid = await d.upload_result(srv, got[done], b"result of the first job")
    assert await d.report(srv, got[done], result_uid=result_uid) == "COMPLETED"
    answer = await jobs.delete_many(srv, admin, {"uids": [done, running]})
    assert answer == {"deleted": [done, running], "missing": []}
    with pytest.raises(NotFound):
        await data.get_readable(srv, admin, result_uid)
    assert await jobs.list_tasks(srv, admin, job=done) == []
    assert await jobs.list_tasks(srv, admin, job=running) == []
    assert (await d.heartbeat(srv, host, [got[running]])).cancel == [got[running]]
    with pytest.raises(NotFound):
        await d.report(srv, got[running])


@pytest.mark.parametrize("how", ["bulk", "one"])
async def test_a_result_another_job_reads_as_input_stays(domain: Server, how: str) -> None:
    """Mirrors test_a_result_another_job_reads_as_input_stays."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    first = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    result_uid = await d.upload_result(srv, a.task_uid, b"intermediate")
    assert await d.report(srv, a.task_uid, result_uid=result_uid) == "COMPLETED"
    second = await d.submit(srv, admin, "work", stdin_uid=result_uid)
    if how == "bulk":
        answer = await jobs.delete_many(srv, admin, {"uids": [first["uid"]]})
        assert answer["deleted"] == [first["uid"]]
    else:
        await jobs.delete(srv, admin, first["uid"])
    with pytest.raises(NotFound):
        await d.job(srv, first["uid"])
    assert (await data.get_readable(srv, admin, result_uid)).sha256
    assert await d.content(srv, admin, result_uid) == b"intermediate"
    assert (await d.job(srv, second["uid"]))["stdin_uid"] == result_uid
