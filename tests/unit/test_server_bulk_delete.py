"""``POST /jobs/delete``: xwresults removes many jobs at once. On SQLite (one also on PostgreSQL and
MariaDB); tests/unit/test_domain_bulk_delete.py holds their scenarios on every database through the
server's functions."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

import pytest

from xwcommon import defaults

if TYPE_CHECKING:
    from conftest import XW


async def test_bulk_removal_removes_what_it_may_and_says_why_not_for_the_rest(xw: XW) -> None:
    alice, bob = await xw.add_user("alice"), await xw.add_user("bob")
    await xw.insert_app(alice, "alices")  # private app: alice's jobs are 0700
    await xw.insert_app(xw.admin, "public")  # public app: its jobs are 0755, readable by all
    mine = [await xw.submit(alice, "alices") for _ in range(3)]
    bobs = await xw.insert_app(bob, "bobs")
    assert bobs["access_rights"] == "0700"
    bobs_job = await xw.submit(bob, "bobs")
    public_job = await xw.submit(xw.admin, "public")
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
    answer = await xw.ok("POST", "/jobs/delete", token=alice, json={"uids": uids})
    assert answer["deleted"] == [mine[0]["uid"], mine[1]["uid"], mine[2]["uid"]]
    missing = {m["uid"]: m["reason"] for m in answer["missing"]}
    assert set(missing) == {bobs_job["uid"], public_job["uid"], unknown}
    assert missing[unknown] == missing[bobs_job["uid"]] == "no such job"  # unreadable is as absent
    assert "0755" in missing[public_job["uid"]]
    assert (await xw.ok("GET", "/jobs", token=alice, params={"owner": "me"}))["jobs"] == []
    assert (await xw.job(bobs_job["uid"]))["status"] == "PENDING"
    assert (await xw.job(public_job["uid"]))["status"] == "PENDING"
    # again: all gone already, nothing fails
    again = await xw.ok("POST", "/jobs/delete", token=alice, json={"uids": [mine[0]["uid"]]})
    assert again == {"deleted": [], "missing": [{"uid": mine[0]["uid"], "reason": "no such job"}]}
    assert await xw.ok("POST", "/jobs/delete", token=alice, json={"uids": []}) == {
        "deleted": [],
        "missing": [],
    }


@pytest.mark.every_database
async def test_bulk_removal_aborts_running_jobs_and_removes_results(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    jobs = [await xw.submit(xw.admin, "work") for _ in range(2)]
    host = await xw.register()
    got = {a["job_uid"]: a["task_uid"] for a in await xw.request_work(host, capacity=2)}
    done, running = jobs[0]["uid"], jobs[1]["uid"]
    content = b"result of the first job"
    result = await xw.ok(
        "POST",
        f"/work/tasks/{got[done]}/result",
        token=xw.worker,
        data=content,
        params={"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)},
    )
    report = {"status": "COMPLETED", "exit_code": 0, "result_uid": result["result_uid"]}
    await xw.ok("POST", f"/work/tasks/{got[done]}/report", token=xw.worker, json=report)
    answer = await xw.ok("POST", "/jobs/delete", token=xw.admin, json={"uids": [done, running]})
    assert answer == {"deleted": [done, running], "missing": []}
    assert (await xw.call("GET", f"/data/{result['result_uid']}", token=xw.admin)).status == 404
    assert await xw.tasks(done) == [] and await xw.tasks(running) == []
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": [got[running]]}
    )
    assert beat["cancel"] == [got[running]]
    r = await xw.call(
        "POST", f"/work/tasks/{got[running]}/report", token=xw.worker, json={"status": "COMPLETED"}
    )
    assert r.status == 404
    await xw.assert_healthy()


@pytest.mark.parametrize("how", ["bulk", "one"])
async def test_a_result_another_job_reads_as_input_stays(xw: XW, how: str) -> None:
    await xw.insert_app(xw.admin, "work")
    first = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    content = b"intermediate"
    result = await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/result",
        token=xw.worker,
        data=content,
        params={"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)},
    )
    report = {"status": "COMPLETED", "exit_code": 0, "result_uid": result["result_uid"]}
    await xw.ok("POST", f"/work/tasks/{a['task_uid']}/report", token=xw.worker, json=report)
    second = await xw.submit(xw.admin, "work", stdin_uid=result["result_uid"])
    if how == "bulk":
        answer = await xw.ok("POST", "/jobs/delete", token=xw.admin, json={"uids": [first["uid"]]})
        assert answer["deleted"] == [first["uid"]]
    else:
        await xw.ok("DELETE", f"/jobs/{first['uid']}", token=xw.admin)
    assert (await xw.call("GET", f"/jobs/{first['uid']}", token=xw.admin)).status == 404
    assert (await xw.ok("GET", f"/data/{result['result_uid']}", token=xw.admin))["sha256"]
    assert (await xw.job(second["uid"]))["stdin_uid"] == result["result_uid"]
    await xw.assert_healthy()


async def test_bad_bulk_removals_are_a_400_naming_the_field(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    too_many = [str(uuid.uuid4()) for _ in range(defaults.MAX_BULK_JOBS + 1)]
    for body, field in [
        ({}, "uids"),
        ([], "uids"),
        ({"uids": "x"}, "uids"),
        ({"uids": [job["uid"]], "force": True}, "force"),  # an unknown field is named
        ({"uids": [job["uid"], 5]}, "uids[1]"),
        ({"uids": [job["uid"], "not-a-uid"]}, "uids[1]"),
        ({"uids": too_many}, "uids"),
    ]:
        r = await xw.call("POST", "/jobs/delete", token=xw.admin, json=body)
        assert r.status == 400 and field in r.body["message"], (str(body)[:80], r)
    r = await xw.call("POST", "/jobs/delete", token=xw.worker, json={"uids": [job["uid"]]})
    assert r.status == 403
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    await xw.assert_healthy()
