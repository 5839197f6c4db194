"""Access rights, the rights ladder, delegation, disabled hosts and worker kinds (docs/api.md,
"Access rights"), against a real server over HTTPS on SQLite (two also on PostgreSQL and
MariaDB); tests/unit/test_domain_access.py holds their scenarios on every database through the
server's functions.

The cast: ``admin`` (SUPER, no group); ``dave`` (ADVANCED, group g1); ``alice`` and ``bob``
(STANDARD, group g1); ``carol`` (STANDARD, no group); the public worker ``worker`` (WORKER,
no group) and a group worker ``gworker`` (WORKER, group g1).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from xwserver.db.models import User, UserGroup

if TYPE_CHECKING:
    from conftest import XW


async def put_in_group(xw: XW, login: str, label: str) -> None:
    """Make ``login`` a member of the user group ``label`` (created if need be), in the database."""
    async with xw.srv.sessions.begin() as session:
        group = (
            await session.execute(select(UserGroup).where(UserGroup.label == label))
        ).scalar_one_or_none()
        if group is None:
            import uuid

            group = UserGroup(uid=str(uuid.uuid4()), label=label, created_at=time.time())
            session.add(group)
            await session.flush()
        await session.execute(update(User).where(User.login == login).values(group_id=group.id))


async def user(xw: XW, login: str, rights: str = "STANDARD", group: str | None = None) -> str:
    token = await xw.add_user(login, rights)
    if group:
        await put_in_group(xw, login, group)  # before the token's first use: no cached caller yet
    return token


@dataclass
class Cast:
    dave: str
    alice: str
    bob: str
    carol: str
    gworker: str


async def cast(xw: XW) -> Cast:
    return Cast(
        dave=await user(xw, "dave", "ADVANCED", "g1"),
        alice=await user(xw, "alice", "STANDARD", "g1"),
        bob=await user(xw, "bob", "STANDARD", "g1"),
        carol=await user(xw, "carol", "STANDARD"),
        gworker=await user(xw, "gworker", "WORKER", "g1"),
    )


async def insert_app(xw: XW, token: str, name: str, rights: str | None = None) -> dict[str, Any]:
    d = await xw.upload(token, f"#!/bin/sh\n# {name}\n".encode(), name=name)
    body: dict[str, Any] = {"name": name, "binaries": [{"os": "any", "cpu": "any", "data_uid": d["uid"]}]}
    if rights is not None:
        body["access_rights"] = rights
    return dict(await xw.ok("POST", "/apps", token=token, json=body))


def uids(items: list[dict[str, Any]]) -> set[str]:
    return {i["uid"] for i in items}


async def status(xw: XW, method: str, path: str, token: str, **kw: Any) -> int:
    return (await xw.call(method, path, token=token, **kw)).status


# -- apps ----------------------------------------------------------------------------------------------
async def test_app_rights_are_chosen_by_advanced_users_only_and_decide_who_sees_and_runs(xw: XW) -> None:
    c = await cast(xw)
    pub = await insert_app(xw, xw.admin, "pub")
    grp = await insert_app(xw, c.dave, "grp", "0750")
    priv = await insert_app(xw, c.alice, "a-priv", "0755")  # a STANDARD user asks in vain
    assert (pub["access_rights"], grp["access_rights"], priv["access_rights"]) == ("0755", "0750", "0700")

    seen = {
        name: {a["name"] for a in (await xw.ok("GET", "/apps", token=tok))["apps"]}
        for name, tok in [("admin", xw.admin), ("alice", c.alice), ("bob", c.bob), ("carol", c.carol)]
    }
    assert seen == {
        "admin": {"pub", "grp", "a-priv"},
        "alice": {"pub", "grp", "a-priv"},
        "bob": {"pub", "grp"},
        "carol": {"pub"},
    }
    assert await status(xw, "GET", "/apps/a-priv", c.bob) == 404
    assert await status(xw, "GET", f"/apps/{grp['uid']}", c.carol) == 404
    # submitting needs the EXEC bit: group members run group apps, others do not even see them
    assert (await xw.submit(c.bob, "grp"))["access_rights"] == "0750"
    assert await status(xw, "POST", "/jobs", c.carol, json={"app": "grp"}) == 404
    assert await status(xw, "POST", "/jobs", c.bob, json={"app": "a-priv"}) == 404
    readable_only = await insert_app(xw, c.dave, "look-only", "0744")
    r = await xw.call("POST", "/jobs", token=c.carol, json={"app": readable_only["uid"]})
    assert r.status == 403 and "may not execute" in r.body["message"]
    # removal needs the write bit: a group member may read grp but not remove it
    r = await xw.call("DELETE", "/apps/grp", token=c.alice)
    assert r.status == 403
    assert await status(xw, "DELETE", "/apps/look-only", c.dave) == 200
    await xw.assert_healthy()


# -- data --------------------------------------------------------------------------------------------------
async def test_data_lists_and_gets_follow_the_read_bits(xw: XW) -> None:
    c = await cast(xw)
    public = await xw.upload(c.alice, b"p", name="public")
    group = await xw.upload(c.alice, b"g", name="group", access_rights="0750")
    private = await xw.upload(c.alice, b"s", name="private", access_rights="0700")
    expected = {
        "alice": {public["uid"], group["uid"], private["uid"]},
        "bob": {public["uid"], group["uid"]},
        "carol": {public["uid"]},
        "admin": {public["uid"], group["uid"], private["uid"]},
    }
    for name, tok in [("alice", c.alice), ("bob", c.bob), ("carol", c.carol), ("admin", xw.admin)]:
        listed = uids((await xw.ok("GET", "/data", token=tok))["data"])
        assert listed == expected[name], name
        for d in (public, group, private):
            want = 200 if d["uid"] in expected[name] else 404
            assert await status(xw, "GET", f"/data/{d['uid']}", tok) == want, (name, d["name"])
            assert await status(xw, "GET", f"/data/{d['uid']}/content", tok) == want, (name, d["name"])
            assert await status(xw, "GET", f"/objects/{d['uid']}", tok) == want, (name, d["name"])
    mine = await xw.ok("GET", "/data", token=c.bob, params={"owner": "me"})
    assert mine["data"] == []
    alices = await xw.ok("GET", "/data", token=c.bob, params={"owner": public["owner_uid"]})
    assert uids(alices["data"]) == {public["uid"], group["uid"]}


async def test_removing_data_needs_the_write_bit(xw: XW) -> None:
    c = await cast(xw)
    shared = await xw.upload(c.alice, b"1", name="group-writable", access_rights="0770")
    readonly = await xw.upload(c.alice, b"2", name="read-only")
    anyone = await xw.upload(c.alice, b"3", name="world-writable", access_rights="0777")
    assert await status(xw, "DELETE", f"/data/{readonly['uid']}", c.bob) == 403
    assert await status(xw, "DELETE", f"/data/{shared['uid']}", c.carol) == 404  # not even readable
    assert await status(xw, "DELETE", f"/data/{shared['uid']}", c.bob) == 200
    assert await status(xw, "DELETE", f"/data/{anyone['uid']}", c.carol) == 200
    assert await status(xw, "GET", f"/data/{readonly['uid']}", c.alice) == 200


# -- jobs and tasks ------------------------------------------------------------------------------------------
@pytest.mark.every_database
async def test_jobs_and_tasks_are_seen_by_whoever_may_read_their_app(xw: XW) -> None:
    c = await cast(xw)
    await insert_app(xw, xw.admin, "pub")
    await insert_app(xw, c.alice, "a-priv")
    public_job = await xw.submit(c.alice, "pub")
    private_job = await xw.submit(c.alice, "a-priv")
    assert (public_job["access_rights"], private_job["access_rights"]) == ("0755", "0700")
    host = await xw.register(c.alice, name="alices-pc")  # a private worker: runs both
    assert len(await xw.request_work(host, capacity=5, token=c.alice)) == 2

    for tok, jobs in [(c.alice, 2), (c.bob, 1), (c.carol, 1), (xw.admin, 2)]:
        listed = (await xw.ok("GET", "/jobs", token=tok))["jobs"]
        assert len(listed) == jobs
        tasks = (await xw.ok("GET", "/tasks", token=tok))["tasks"]
        assert {t["job_uid"] for t in tasks} == uids(listed)
    assert await status(xw, "GET", f"/jobs/{private_job['uid']}", c.bob) == 404
    assert await status(xw, "GET", f"/jobs/{public_job['uid']}", c.bob) == 200
    assert await status(xw, "DELETE", f"/jobs/{public_job['uid']}", c.bob) == 403  # 0755: no write
    assert await status(xw, "DELETE", f"/jobs/{private_job['uid']}", c.bob) == 404
    assert (await xw.ok("GET", "/jobs", token=c.carol, params={"owner": "me"}))["jobs"] == []
    [private_task] = (await xw.ok("GET", "/tasks", token=c.alice, params={"job": private_job["uid"]}))[
        "tasks"
    ]
    assert await status(xw, "GET", f"/objects/{private_task['uid']}", c.bob) == 404
    got = await xw.ok("GET", f"/objects/{private_task['uid']}", token=c.alice)
    assert (got["kind"], got["object"]["job_uid"]) == ("task", private_job["uid"])
    assert await status(xw, "DELETE", f"/jobs/{public_job['uid']}", c.alice) == 200


# -- objects by UID -----------------------------------------------------------------------------------------
async def test_every_kind_of_object_is_found_by_uid_when_readable(xw: XW) -> None:
    c = await cast(xw)
    app = await insert_app(xw, c.alice, "a-priv")
    job = await xw.submit(c.alice, "a-priv")
    host = await xw.register(c.alice)
    [a] = await xw.request_work(host, token=c.alice)
    async with xw.srv.sessions() as session:
        g1 = (await session.execute(select(UserGroup.uid).where(UserGroup.label == "g1"))).scalar_one()
        logins = dict((await session.execute(select(User.login, User.uid))).all())
    objects = {
        "app": app["uid"],
        "job": job["uid"],
        "task": a["task_uid"],
        "host": host,
        "user": logins["alice"],
        "usergroup": g1,
    }
    for kind, uid in objects.items():
        got = await xw.ok("GET", f"/objects/{uid}", token=c.alice)
        assert (got["kind"], got["object"]["uid"]) == (kind, uid)
        assert (await xw.ok("GET", f"/objects/{uid}", token=xw.admin))["kind"] == kind
        assert await status(xw, "GET", f"/objects/{uid}", c.carol) == 404, kind
    group = await xw.ok("GET", f"/objects/{g1}", token=c.bob)
    assert (group["object"]["label"], group["object"]["members"]) == ("g1", 4)
    assert (await xw.ok("GET", f"/objects/{logins['carol']}", token=c.carol))["object"]["login"] == "carol"
    host_json = (await xw.ok("GET", f"/objects/{host}", token=c.alice))["object"]
    assert (host_json["access_rights"], host_json["enabled"]) == ("0700", True)
    assert await status(xw, "GET", "/objects/00000000-0000-4000-8000-000000000000", xw.admin) == 404
    assert await status(xw, "GET", "/objects/not-a-uid", xw.admin) == 400


# -- chmod ----------------------------------------------------------------------------------------------------
async def test_chmod_changes_data_and_hosts_for_their_owner_or_super_only(xw: XW) -> None:
    c = await cast(xw)
    d = await xw.upload(c.alice, b"x", name="x")

    async def chmod(uid: str, rights: Any, token: str) -> Any:
        return await xw.call("POST", f"/objects/{uid}/chmod", token=token, json={"rights": rights})

    steps = [("g-rx", "0705"), ("o=", "0700"), ("a+r", "0744"), ("0x750", "0750"), ("u-w,g+w,o+x", "0571")]
    for rights, shown in steps:
        r = await chmod(d["uid"], rights, c.alice)
        assert r.status == 200, r
        assert (r.body["kind"], r.body["object"]["access_rights"]) == ("data", shown)
    r = await chmod(d["uid"], "0755", c.bob)  # readable by bob (group bit), not his
    assert r.status == 403 and "owner" in r.body["message"]
    r = await chmod(d["uid"], "0700", xw.admin)
    assert r.status == 200 and r.body["object"]["access_rights"] == "0700"
    assert (await chmod(d["uid"], "0777", c.bob)).status == 404  # no longer even readable
    r = await chmod(d["uid"], "u+q", c.alice)
    assert r.status == 400 and "like 0755" in r.body["message"]
    assert (await xw.call("POST", f"/objects/{d['uid']}/chmod", token=c.alice, json={})).status == 400
    assert (await xw.ok("GET", f"/data/{d['uid']}", token=c.alice))["access_rights"] == "0700"

    app = await insert_app(xw, c.alice, "a-priv")
    job = await xw.submit(c.alice, "a-priv")
    r = await chmod(app["uid"], "0755", c.alice)
    assert r.status == 409 and r.body["message"] == "an application's rights never change after insertion"
    r = await chmod(job["uid"], "0755", xw.admin)
    assert r.status == 409 and r.body["message"] == "a job's rights are its application's"

    host = await xw.register(c.alice)
    r = await chmod(host, "0755", c.alice)
    assert r.status == 200 and r.body["object"]["access_rights"] == "0755"
    assert host in uids((await xw.ok("GET", "/hosts", token=c.carol))["hosts"])
    assert (await chmod(host, "0700", c.carol)).status == 403
    await xw.assert_healthy()


# -- the rights ladder --------------------------------------------------------------------------------------
async def test_a_worker_identity_may_only_use_the_worker_calls(xw: XW) -> None:
    await insert_app(xw, xw.admin, "pub")
    d = await xw.upload(xw.admin, b"x")
    job = await xw.submit(xw.admin, "pub")
    host = await xw.register()
    refused = [
        ("GET", "/jobs"),
        ("GET", f"/jobs/{job['uid']}"),
        ("GET", "/apps"),
        ("GET", "/apps/pub"),
        ("GET", "/data"),
        ("GET", f"/data/{d['uid']}"),
        ("GET", f"/data/{d['uid']}/content"),  # public, but not an input of a task it holds: 404
        ("GET", "/tasks"),
        ("GET", "/hosts"),
        ("GET", f"/objects/{job['uid']}"),
        ("POST", f"/objects/{d['uid']}/chmod"),
        ("POST", f"/hosts/{host}/disable"),
        ("POST", f"/hosts/{host}/enable"),
    ]
    for method, path in refused:
        r = await xw.call(
            method, path, token=xw.worker, json={"rights": "0777"} if method == "POST" else None
        )
        if path.endswith("/content"):
            assert r.status == 404, (method, path, r)
            continue
        assert r.status == 403, (method, path, r)
        assert r.body["message"].endswith("needs STANDARD rights; worker has WORKER"), r.body
    assert (await xw.ok("GET", "/users/me", token=xw.worker))["rights"] == "WORKER"
    assert len(await xw.request_work(host)) == 1
    assert (await xw.ok("GET", f"/data/{d['uid']}", token=xw.admin))["access_rights"] == "0755"


async def test_hosts_are_managed_by_advanced_users(xw: XW) -> None:
    c = await cast(xw)
    public_host = await xw.register(name="public")
    alices = await xw.register(c.alice, name="alices")
    carols = await xw.register(c.carol, name="carols")
    everyone = {public_host, alices, carols}
    assert uids((await xw.ok("GET", "/hosts", token=c.dave))["hosts"]) == everyone
    assert uids((await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]) == everyone
    assert uids((await xw.ok("GET", "/hosts", token=c.carol))["hosts"]) == {public_host, carols}
    for path in (f"/hosts/{public_host}/disable", f"/hosts/{alices}/enable"):
        r = await xw.call("POST", path, token=c.alice)
        assert r.status == 403 and "needs ADVANCED rights" in r.body["message"], r
    got = await xw.ok("POST", f"/hosts/{alices}/disable", token=c.dave)
    assert (got["uid"], got["enabled"]) == (alices, False)
    assert (await xw.ok("POST", f"/hosts/{alices}/enable", token=c.dave))["enabled"] is True
    assert await status(xw, "POST", "/hosts/00000000-0000-4000-8000-000000000000/disable", c.dave) == 404


# -- disabling a host ------------------------------------------------------------------------------------------
async def test_a_disabled_host_hands_its_tasks_back_and_is_refused_until_enabled(xw: XW) -> None:
    await insert_app(xw, xw.admin, "pub")
    job = await xw.submit(xw.admin, "pub", max_retry=0)
    host = await xw.register(name="bad")
    [a] = await xw.request_work(host)
    other = await xw.register(name="good")

    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    after = await xw.job(job["uid"])
    assert (after["status"], after["retry"]) == ("PENDING", 0)
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["ABORTED"]
    disabled = f"host {host} is disabled by an administrator"
    calls = [
        ("/work/request", {"host_uid": host, "capacity": 1, "wait_s": 0}),
        ("/work/heartbeat", {"host_uid": host, "task_uids": [a["task_uid"]]}),
        (f"/work/tasks/{a['task_uid']}/report", {"status": "COMPLETED", "exit_code": 0}),
        ("/work/release", {"host_uid": host, "task_uids": [a["task_uid"]]}),
    ]
    for path, body in calls:
        r = await xw.call("POST", path, token=xw.worker, json=body)
        assert (r.status, r.body["message"]) == (403, disabled), path
    r = await xw.call(
        "POST", f"/work/tasks/{a['task_uid']}/result", token=xw.worker, data=b"zip", params={"size": 3}
    )
    assert (r.status, r.body["message"]) == (403, disabled)

    [again] = await xw.request_work(other)  # the job went elsewhere, no retry spent
    assert again["job_uid"] == job["uid"]
    assert (await xw.job(job["uid"]))["retry"] == 0
    await xw.ok("POST", f"/hosts/{host}/enable", token=xw.admin)
    await xw.submit(xw.admin, "pub")
    assert len(await xw.request_work(host)) == 1
    await xw.assert_healthy()


async def test_disabling_a_host_answers_its_waiting_work_request(xw: XW) -> None:
    await insert_app(xw, xw.admin, "pub")
    host = await xw.register()
    waiting = asyncio.create_task(
        xw.call(
            "POST", "/work/request", token=xw.worker, json={"host_uid": host, "capacity": 1, "wait_s": 20}
        )
    )
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    job = await xw.submit(xw.admin, "pub")
    r = await asyncio.wait_for(waiting, 10)
    assert r.status == 403 and "disabled by an administrator" in r.body["message"]
    assert time.monotonic() - started < 5
    assert (await xw.job(job["uid"]))["status"] == "PENDING"


# -- delegation ----------------------------------------------------------------------------------------------------
async def test_a_worker_reads_only_the_inputs_its_own_identity_may_read(xw: XW) -> None:
    c = await cast(xw)
    await insert_app(xw, xw.admin, "pub")
    bobs = await xw.upload(c.bob, b"bob's input", name="in")  # public by default
    job = await xw.submit(c.carol, "pub", stdin_uid=bobs["uid"])
    host = await xw.register()
    [a] = await xw.request_work(host)
    path = f"/data/{bobs['uid']}/content"
    assert (await xw.call("GET", path, token=xw.worker)).body == b"bob's input"
    await xw.ok("POST", f"/objects/{bobs['uid']}/chmod", token=c.bob, json={"rights": "0700"})
    r = await xw.call("GET", path, token=xw.worker)
    assert r.status == 403 and bobs["uid"] in r.body["message"] and "may not read" in r.body["message"]
    binary = await xw.call("GET", f"/data/{a['binary']['data_uid']}/content", token=xw.worker)
    assert binary.status == 200  # the app's binary: the worker was given the job to run it
    r = await xw.call(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "ERROR", "message": f"may not read the stdin (data {bobs['uid']})"},
    )
    assert r.status == 200
    assert (await xw.job(job["uid"], c.carol))["status"] == "ERROR"
    assert (await xw.call("GET", path, token=xw.worker)).status == 404  # no longer held


# -- worker kinds ----------------------------------------------------------------------------------------------------
@pytest.mark.every_database
async def test_each_worker_kind_runs_exactly_the_jobs_it_may(xw: XW) -> None:
    c = await cast(xw)
    await insert_app(xw, xw.admin, "pub")
    await insert_app(xw, c.dave, "grp", "0750")
    await insert_app(xw, c.alice, "a-priv")
    await insert_app(xw, c.carol, "c-priv")
    specs = {
        "admin public": (xw.admin, "pub"),
        "alice public": (c.alice, "pub"),
        "alice group": (c.alice, "grp"),
        "alice private": (c.alice, "a-priv"),
        "carol public": (c.carol, "pub"),
        "carol private": (c.carol, "c-priv"),
    }
    workers = {
        "public": xw.worker,  # WORKER, no group: public jobs
        "group g1": c.gworker,  # WORKER in g1: its members' group and public jobs
        "alice's": c.alice,  # a STANDARD identity: its owner's jobs only
        "carol's": c.carol,
    }
    expected = {
        "public": {"admin public", "alice public", "carol public"},
        "group g1": {"alice public", "alice group"},
        "alice's": {"alice public", "alice group", "alice private"},
        "carol's": {"carol public", "carol private"},
    }
    for worker, token in workers.items():
        jobs = {(await xw.submit(owner, app))["uid"]: name for name, (owner, app) in specs.items()}
        host = await xw.register(token, name=worker.replace("'", ""))
        got = await xw.request_work(host, capacity=20, token=token)
        assert {jobs[a["job_uid"]] for a in got} == expected[worker], worker
        assert len(got) == len(expected[worker])
        for uid in jobs:  # clear the table for the next worker
            await xw.ok("DELETE", f"/jobs/{uid}", token=xw.admin)
    await xw.assert_healthy()
