"""Sessions and groups of jobs (XWHEP's), and jobs bound to one host. On SQLite (one also on
PostgreSQL and MariaDB); tests/unit/test_domain_jobsets.py holds their scenarios on every database
through the server's functions."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from xwserver import collector

if TYPE_CHECKING:
    from conftest import XW

#: (path, kind as GET /objects/{uid} names it, the job spec field)
KINDS = [("/sessions", "session", "session_uid"), ("/groups", "group", "group_uid")]


async def _create(xw: XW, path: str, token: str, name: str = "run 1", **extra: Any) -> dict[str, Any]:
    return dict(await xw.ok("POST", path, token=token, json={"name": name, **extra}, expect=201))


@pytest.mark.parametrize(("path", "kind", "field"), KINDS)
async def test_a_set_is_created_shown_listed_and_counts_its_jobs(
    xw: XW, path: str, kind: str, field: str
) -> None:
    alice = await xw.add_user("alice")
    created = await _create(xw, path, alice, "nightly run")
    me = await xw.ok("GET", "/users/me", token=alice)
    assert created["name"] == "nightly run" and created["owner_uid"] == me["uid"]
    assert created["access_rights"] == "0700" and created["job_counts"] == {}
    assert created["uri"].endswith("/" + created["uid"]) and created["created_at"].endswith("Z")
    await xw.insert_app(alice, "work")
    jobs = [await xw.submit(alice, "work", **{field: created["uid"]}) for _ in range(3)]
    assert all(j[field] == created["uid"] for j in jobs)
    outside = await xw.submit(alice, "work")
    assert outside["session_uid"] is None and outside["group_uid"] is None
    # one of them runs on alice's own (private) worker
    host = await xw.register(token=alice)
    await xw.request_work(host, token=alice)
    shown = await xw.ok("GET", f"{path}/{created['uid']}", token=alice)
    assert shown["job_counts"] == {"PENDING": 2, "RUNNING": 1}
    assert await xw.ok("GET", f"/objects/{created['uid']}", token=alice) == {"kind": kind, "object": shown}
    key = path.strip("/")
    assert [s["uid"] for s in (await xw.ok("GET", path, token=alice))[key]] == [created["uid"]]
    # listed jobs by set, alone or with a status
    listed = await xw.ok("GET", "/jobs", token=alice, params={kind: created["uid"]})
    assert sorted(j["uid"] for j in listed["jobs"]) == sorted(j["uid"] for j in jobs)
    running = await xw.ok("GET", "/jobs", token=alice, params={kind: created["uid"], "status": "RUNNING"})
    assert len(running["jobs"]) == 1
    assert (await xw.ok("GET", "/jobs", token=alice, params={kind: created["uri"]}))["jobs"] == listed["jobs"]
    r = await xw.call("GET", "/jobs", token=alice, params={kind: "nope"})
    assert r.status == 400 and kind in r.body["message"]


async def test_sessions_and_groups_of_jobs_are_not_user_groups(xw: XW) -> None:
    session = await _create(xw, "/sessions", xw.admin)
    group = await _create(xw, "/groups", xw.admin)
    assert (await xw.ok("GET", "/usergroups", token=xw.admin))["usergroups"] == []
    assert [s["uid"] for s in (await xw.ok("GET", "/sessions", token=xw.admin))["sessions"]] == [
        session["uid"]
    ]
    assert [g["uid"] for g in (await xw.ok("GET", "/groups", token=xw.admin))["groups"]] == [group["uid"]]
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work", session_uid=session["uri"], group_uid=group["uid"])
    assert (job["session_uid"], job["group_uid"]) == (session["uid"], group["uid"])
    both = await xw.ok(
        "GET", "/jobs", token=xw.admin, params={"session": session["uid"], "group": group["uid"]}
    )
    assert [j["uid"] for j in both["jobs"]] == [job["uid"]]
    assert (await xw.job(job["uid"]))["session_uid"] == session["uid"]


@pytest.mark.parametrize(("path", "kind", "field"), KINDS)
async def test_others_see_only_what_the_access_bits_allow(xw: XW, path: str, kind: str, field: str) -> None:
    alice, bob = await xw.add_user("alice"), await xw.add_user("bob")
    private = await _create(xw, path, alice, "private")
    shared = await _create(xw, path, alice, "shared", access_rights="0755")
    open_ = await _create(xw, path, alice, "open", access_rights="0777")
    assert shared["access_rights"] == "0755"
    key = path.strip("/")
    assert {s["uid"] for s in (await xw.ok("GET", path, token=bob))[key]} == {shared["uid"], open_["uid"]}
    assert len((await xw.ok("GET", path, token=xw.admin))[key]) == 3  # SUPER sees all
    r = await xw.call("GET", f"{path}/{private['uid']}", token=bob)
    assert r.status == 404
    r = await xw.call("GET", f"/objects/{private['uid']}", token=bob)
    assert r.status == 404
    await xw.insert_app(bob, "bobs")
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", field: private["uid"]})
    assert r.status == 404 and field in r.body["message"], r
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", field: shared["uid"]})
    assert r.status == 403 and field in r.body["message"] and "0755" in r.body["message"], r
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", field: "not-a-uid"})
    assert r.status == 400 and field in r.body["message"], r
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", field: 7})
    assert r.status == 400 and field in r.body["message"], r
    bulk = {"jobs": [{"app": "bobs", field: open_["uid"]}, {"app": "bobs", field: private["uid"]}]}
    r = await xw.call("POST", "/jobs/bulk", token=bob, json=bulk)
    assert r.status == 404 and field in r.body["message"], r
    assert (await xw.ok("GET", "/jobs", token=bob))["jobs"] == []  # all or nothing
    job = await xw.submit(bob, "bobs", **{field: open_["uid"]})  # writable by others
    assert job[field] == open_["uid"]
    # only the owner or SUPER removes it
    r = await xw.call("DELETE", f"{path}/{shared['uid']}", token=bob)
    assert r.status == 403, r
    r = await xw.call("DELETE", f"{path}/{private['uid']}", token=bob)
    assert r.status == 404, r
    await xw.ok("DELETE", f"{path}/{private['uid']}", token=xw.admin)
    # chmod as for data and hosts
    changed = await xw.ok("POST", f"/objects/{shared['uid']}/chmod", token=alice, json={"rights": "o-rx"})
    assert changed["object"]["access_rights"] == "0750"
    assert {s["uid"] for s in (await xw.ok("GET", path, token=bob))[key]} == {open_["uid"]}
    await xw.assert_healthy()


@pytest.mark.every_database
@pytest.mark.parametrize(("path", "kind", "field"), KINDS)
async def test_removing_a_set_removes_its_jobs_in_one_go(xw: XW, path: str, kind: str, field: str) -> None:
    target = await _create(xw, path, xw.admin)
    await xw.insert_app(xw.admin, "work")
    inside = [await xw.submit(xw.admin, "work", **{field: target["uid"]}) for _ in range(3)]
    outside = await xw.submit(xw.admin, "work")
    host = await xw.register()
    got = await xw.request_work(host, capacity=2)
    by_job = {a["job_uid"]: a["task_uid"] for a in got}
    # one finishes with a result, one is still running
    done, running = inside[0]["uid"], inside[1]["uid"]
    content = b"PK\x05\x06" + bytes(18)

    result = await xw.ok(
        "POST",
        f"/work/tasks/{by_job[done]}/result",
        token=xw.worker,
        data=content,
        params={"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)},
    )
    await xw.ok(
        "POST",
        f"/work/tasks/{by_job[done]}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": result["result_uid"]},
    )
    # removed by its URI, percent-encoded as the client's xwrm sends it
    await xw.ok("DELETE", f"{path}/{quote(target['uri'], safe='')}", token=xw.admin)
    for job in inside:
        assert (await xw.call("GET", f"/jobs/{job['uid']}", token=xw.admin)).status == 404
    assert (await xw.call("GET", f"/data/{result['result_uid']}", token=xw.admin)).status == 404
    assert (await xw.call("GET", f"{path}/{target['uid']}", token=xw.admin)).status == 404
    assert (await xw.call("GET", f"/objects/{target['uid']}", token=xw.admin)).status == 404
    assert (await xw.job(outside["uid"]))["status"] == "PENDING"
    # the running one's worker is told to stop
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": [by_job[running]]}
    )
    assert beat["cancel"] == [by_job[running]]
    # the result's file is left to the collector
    assert any(p.read_bytes() == content for p in xw.store_files())
    await collector.collect_garbage(xw.srv, now=2**40)
    assert not any(p.read_bytes() == content for p in xw.store_files())
    await xw.assert_healthy()


async def test_a_set_name_is_required_and_checked(xw: XW) -> None:
    for path, _kind, _field in KINDS:
        for body, field in [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": 3}, "name"),
            ({"name": "a\nb"}, "name"),
            ({"name": "x" * 256}, "name"),
            ({"name": "ok", "access_rights": "0999"}, "access_rights"),
            ({"name": "ok", "owner": "me"}, "owner"),
            ([], "name"),
        ]:
            r = await xw.call("POST", path, token=xw.admin, json=body)
            assert r.status == 400 and field in r.body["message"], (path, body, r)
        assert (await xw.ok("GET", path, token=xw.admin))[path.strip("/")] == []
        r = await xw.call("GET", f"{path}/not-a-uid", token=xw.admin)
        assert r.status == 400
        r = await xw.call("DELETE", f"{path}/00000000-0000-4000-8000-000000000000", token=xw.admin)
        assert r.status == 404
        r = await xw.call("POST", path, token=xw.worker, json={"name": "w"})
        assert r.status == 403
    await xw.assert_healthy()


async def test_a_user_owning_a_set_cannot_be_removed(xw: XW) -> None:
    alice = await xw.add_user("alice")
    session = await _create(xw, "/sessions", alice)
    r = await xw.call("DELETE", "/users/alice", token=xw.admin)
    assert r.status == 409 and "sessions" in r.body["message"], r
    await xw.ok("DELETE", f"/sessions/{session['uid']}", token=alice)
    await _create(xw, "/groups", alice)
    r = await xw.call("DELETE", "/users/alice", token=xw.admin)
    assert r.status == 409 and "groups" in r.body["message"], r


# -- jobs bound to one host -----------------------------------------------------------------------------
async def test_a_job_bound_to_a_host_goes_to_that_host_only(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    chosen, other = await xw.register(name="chosen"), await xw.register(name="other")
    bound = await xw.submit(xw.admin, "work", expected_host_uid=chosen)
    assert bound["expected_host_uid"] == chosen
    assert (await xw.job(bound["uid"]))["expected_host_uid"] == chosen
    assert await xw.request_work(other, capacity=5) == []
    free = await xw.submit(xw.admin, "work")
    assert [a["job_uid"] for a in await xw.request_work(other, capacity=5)] == [free["uid"]]
    assert [a["job_uid"] for a in await xw.request_work(chosen, capacity=5)] == [bound["uid"]]


async def test_a_job_may_only_be_bound_to_a_host_its_submitter_may_read(xw: XW) -> None:
    alice, bob = await xw.add_user("alice"), await xw.add_user("bob")
    public_host = await xw.register()  # a public worker's host: 0755, readable by all
    alices_host = await xw.register(token=alice)  # a private worker's: 0700
    await xw.insert_app(bob, "bobs")
    job = await xw.submit(bob, "bobs", expected_host_uid=public_host)
    assert job["expected_host_uid"] == public_host
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", "expected_host_uid": alices_host})
    assert r.status == 404 and "expected_host_uid" in r.body["message"], r
    for bad in ("nope", 5, ["x"]):
        r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", "expected_host_uid": bad})
        assert r.status == 400 and "expected_host_uid" in r.body["message"], r
    unknown = "00000000-0000-4000-8000-000000000000"
    r = await xw.call("POST", "/jobs", token=bob, json={"app": "bobs", "expected_host_uid": unknown})
    assert r.status == 404 and "expected_host_uid" in r.body["message"], r
    await xw.assert_healthy()
