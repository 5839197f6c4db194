"""Attacks on access rights: each is refused with a clear error and changes nothing."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import XW


async def _app(xw: XW, token: str, name: str, rights: str | None = None) -> Any:
    d = await xw.upload(token, b"#!/bin/sh\n", name=name)
    body: dict[str, Any] = {"name": name, "binaries": [{"os": "any", "cpu": "any", "data_uid": d["uid"]}]}
    if rights is not None:
        body["access_rights"] = rights
    return await xw.ok("POST", "/apps", token=token, json=body)


async def test_a_standard_user_asking_for_a_public_app_gets_a_private_one(xw: XW) -> None:
    mallory = await xw.add_user("mallory", "STANDARD")
    for rights in ("0755", "0777", "0x755", "a+rwx"):
        app = await _app(xw, mallory, f"trojan-{len(rights)}-{rights[-1]}", rights)
        assert app["access_rights"] == "0700"
    await xw.submit(mallory, "trojan-4-5")
    public_host = await xw.register()
    assert await xw.request_work(public_host, capacity=10) == []  # no public worker runs it
    other = await xw.add_user("victim", "STANDARD")
    assert (await xw.ok("GET", "/apps", token=other))["apps"] == []
    await xw.assert_healthy()


async def test_chmod_of_another_users_object_is_refused_and_changes_nothing(xw: XW) -> None:
    alice = await xw.add_user("alice", "STANDARD")
    mallory = await xw.add_user("mallory", "ADVANCED")  # even ADVANCED: chmod is owner or SUPER
    d = await xw.upload(alice, b"mine", name="mine")
    secret = await xw.upload(alice, b"secret", name="secret", access_rights="0700")
    host = await xw.register(alice)
    for uid, expected in [(d["uid"], 403), (host, 403), (secret["uid"], 404)]:
        for rights in ("0777", "o+w", "a+rwx"):
            r = await xw.call("POST", f"/objects/{uid}/chmod", token=mallory, json={"rights": rights})
            assert r.status == expected, (uid, rights, r)
    assert (await xw.ok("GET", f"/data/{d['uid']}", token=alice))["access_rights"] == "0755"
    assert (await xw.ok("GET", f"/data/{secret['uid']}", token=alice))["access_rights"] == "0700"
    assert (await xw.ok("GET", f"/objects/{host}", token=alice))["object"]["access_rights"] == "0700"
    assert (await xw.call("DELETE", f"/data/{d['uid']}", token=mallory)).status == 403
    assert (await xw.call("GET", f"/data/{secret['uid']}/content", token=mallory)).status == 404
    await xw.assert_healthy()


async def test_a_worker_token_cannot_list_anything(xw: XW) -> None:
    await _app(xw, xw.admin, "work")
    await xw.submit(xw.admin, "work")
    for path in ("/jobs", "/apps", "/data", "/tasks", "/hosts", "/users", "/usergroups"):
        r = await xw.call("GET", path, token=xw.worker)
        assert r.status == 403, (path, r)
        assert "needs STANDARD rights" in r.body["message"]
    for method, path, body in [
        ("POST", "/jobs", {"app": "work"}),
        ("POST", "/apps", {"name": "x", "binaries": []}),
        ("POST", "/users", {"login": "x", "password": "x", "rights": "SUPER"}),
    ]:
        r = await xw.call(method, path, token=xw.worker, json=body)
        assert r.status == 403, (path, r)
    assert len((await xw.ok("GET", "/jobs", token=xw.admin))["jobs"]) == 1
    await xw.assert_healthy()


async def _two_workers(xw: XW) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
    """Two WORKER identities with a host each; the first holds a job with a (public) input."""
    await _app(xw, xw.admin, "work")
    secret = await xw.upload(xw.admin, b"the input", name="in")
    job = await xw.submit(xw.admin, "work", stdin_uid=secret["uid"])
    host = await xw.register()
    [held] = await xw.request_work(host)
    thief = await xw.add_user("thief", "WORKER")
    return thief, host, await xw.register(thief, name="thief"), held, job


async def test_a_worker_cannot_complete_a_task_it_does_not_hold(xw: XW) -> None:
    thief, _host, _thief_host, held, job = await _two_workers(xw)
    task = held["task_uid"]
    r = await xw.call(
        "POST", f"/work/tasks/{task}/report", token=thief, json={"status": "COMPLETED", "exit_code": 0}
    )
    assert r.status == 404
    archive = b"forged"
    r = await xw.call(
        "POST",
        f"/work/tasks/{task}/result",
        token=thief,
        data=archive,
        params={"sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive)},
    )
    assert r.status == 404
    r = await xw.call(
        "POST",
        "/work/request",
        token=thief,
        json={
            "host_uid": _thief_host,
            "wait_s": 0,  # no long-poll: the thief's report is what is tried here
            "reports": [{"task_uid": task, "status": "COMPLETED", "exit_code": 0}],
        },
    )
    assert r.status == 200 and r.body["reported"][0]["error"] == "task_gone"
    after = await xw.job(job["uid"])
    assert (after["status"], after["exit_code"], after["result_uid"]) == ("RUNNING", None, None)
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["RUNNING"]
    await xw.assert_healthy()


async def test_a_worker_cannot_read_the_inputs_of_another_workers_task(xw: XW) -> None:
    thief, _host, _thief_host, held, _job = await _two_workers(xw)
    for ref in (held["stdin"], held["binary"]):
        r = await xw.call("GET", f"/data/{ref['data_uid']}/content", token=thief)
        assert r.status == 404 and r.body["error"] == "not_found", r
        assert (await xw.call("GET", f"/data/{ref['data_uid']}", token=thief)).status == 403
    ok = await xw.call("GET", f"/data/{held['stdin']['data_uid']}/content", token=xw.worker)
    assert ok.body == b"the input"  # the holder may
    await xw.assert_healthy()


async def test_a_disabled_host_can_neither_request_nor_heartbeat_nor_report(xw: XW) -> None:
    _thief, host, _thief_host, held, job = await _two_workers(xw)
    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    task = held["task_uid"]
    attempts = [
        ("/work/request", {"host_uid": host, "capacity": 4, "wait_s": 0}),
        ("/work/heartbeat", {"host_uid": host, "task_uids": [task]}),
        (f"/work/tasks/{task}/report", {"status": "COMPLETED", "exit_code": 0}),
        ("/work/register", {"name": "again", "host_uid": host, "os": "linux", "cpu": "x86_64"}),
    ]
    for path, body in attempts[:3]:
        r = await xw.call("POST", path, token=xw.worker, json=body)
        assert r.status == 403 and "disabled by an administrator" in r.body["message"], (path, r)
    # re-registering the same host does not re-enable it
    await xw.call("POST", attempts[3][0], token=xw.worker, json=attempts[3][1])
    r = await xw.call("POST", "/work/request", token=xw.worker, json=attempts[0][1])
    assert r.status == 403
    r = await xw.call("GET", f"/data/{held['stdin']['data_uid']}/content", token=xw.worker)
    assert r.status == 404  # its task was handed back: no delegation left
    after = await xw.job(job["uid"])
    assert (after["status"], after["retry"]) == ("PENDING", 0)
    await xw.assert_healthy()


async def test_a_standard_user_cannot_disable_hosts_nor_a_worker_enable_its_own(xw: XW) -> None:
    alice = await xw.add_user("alice", "STANDARD")
    host = await xw.register()
    assert (await xw.call("POST", f"/hosts/{host}/disable", token=alice)).status == 403
    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    assert (await xw.call("POST", f"/hosts/{host}/enable", token=xw.worker)).status == 403
    assert (await xw.ok("GET", f"/objects/{host}", token=xw.admin))["object"]["enabled"] is False
    await xw.assert_healthy()
