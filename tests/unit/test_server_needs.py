"""Declared needs: an app's network, a job's memory and disk; the claim matches them to what a
work request says the host has free. On SQLite (one also on PostgreSQL and MariaDB);
tests/unit/test_domain_needs.py holds their scenarios on every database through the server's
functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import XW

GIB = 1 << 30


async def _app(xw: XW, name: str, needs_network: bool | None = None) -> dict[str, Any]:
    d = await xw.upload(xw.admin, b"#!/bin/sh\necho hi\n", name=name)
    body: dict[str, Any] = {"name": name, "binaries": [{"os": "any", "cpu": "any", "data_uid": d["uid"]}]}
    if needs_network is not None:
        body["needs_network"] = needs_network
    return dict(await xw.ok("POST", "/apps", token=xw.admin, json=body))


async def _ask(xw: XW, host: str, capacity: int = 10, **resources: Any) -> list[str]:
    """The job UIDs a work request with these resources gets."""
    body = {"host_uid": host, "capacity": capacity, "wait_s": 0, **resources}
    return [
        a["job_uid"]
        for a in (await xw.ok("POST", "/work/request", token=xw.worker, json=body))["assignments"]
    ]


async def test_an_app_declares_whether_it_needs_the_network_and_its_jobs_copy_it(xw: XW) -> None:
    plain = await _app(xw, "plain")
    online = await _app(xw, "online", needs_network=True)
    assert plain["needs_network"] is False and online["needs_network"] is True
    assert (await xw.ok("GET", "/apps/online", token=xw.admin))["needs_network"] is True
    job = await xw.submit(xw.admin, "online")
    assert job["needs_network"] is True
    assert (await xw.submit(xw.admin, "plain"))["needs_network"] is False
    # the app changes later; the job keeps the copy it took at submission
    again = await _app(xw, "online", needs_network=False)
    assert again["needs_network"] is False and again["uid"] == online["uid"]
    assert (await xw.job(job["uid"]))["needs_network"] is True
    # adding binaries without saying keeps the app's value
    assert (await _app(xw, "plain"))["needs_network"] is False


async def test_a_job_stores_its_declared_memory_and_disk(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work", min_memory_bytes=2 * GIB, min_disk_bytes=5 * GIB)
    assert (job["min_memory_bytes"], job["min_disk_bytes"]) == (2 * GIB, 5 * GIB)
    shown = await xw.job(job["uid"])
    assert (shown["min_memory_bytes"], shown["min_disk_bytes"], shown["needs_network"]) == (
        2 * GIB,
        5 * GIB,
        False,
    )
    plain = await xw.submit(xw.admin, "work")
    assert (plain["min_memory_bytes"], plain["min_disk_bytes"]) == (0, 0)
    bulk = await xw.ok(
        "POST", "/jobs/bulk", token=xw.admin, json={"jobs": [{"app": "work", "min_disk_bytes": 7}] * 2}
    )
    assert [j["min_disk_bytes"] for j in bulk["jobs"]] == [7, 7]


async def test_bad_needs_are_a_400_naming_the_field(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    for key in ("min_memory_bytes", "min_disk_bytes"):
        for bad in (-1, "1", 1.5, True, 2**63, [1]):
            r = await xw.call("POST", "/jobs", token=xw.admin, json={"app": "work", key: bad})
            assert r.status == 400 and key in r.body["message"], (key, bad, r)
    r = await xw.call(
        "POST",
        "/jobs/bulk",
        token=xw.admin,
        json={"jobs": [{"app": "work"}, {"app": "work", "min_disk_bytes": -5}]},
    )
    assert r.status == 400 and "job #1" in r.body["message"] and "min_disk_bytes" in r.body["message"], r
    d = await xw.upload(xw.admin, b"x")
    bad_flags: list[Any] = ["yes", 1, [True]]
    for flag in bad_flags:
        body = {
            "name": "net",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": d["uid"]}],
            "needs_network": flag,
        }
        r = await xw.call("POST", "/apps", token=xw.admin, json=body)
        assert r.status == 400 and "needs_network" in r.body["message"], (flag, r)
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []
    host = await xw.register()
    bad_resources: list[tuple[str, Any]] = [
        ("free_memory_bytes", -1),
        ("free_memory_bytes", "8G"),
        ("free_disk_bytes", 1.5),  # 1.0 is an integer (the wire takes integral numbers)
        ("free_disk_bytes", False),
        ("network", "no"),
        ("network", 0),
    ]
    for key, bad in bad_resources:
        request = {"host_uid": host, "wait_s": 0, key: bad}
        r = await xw.call("POST", "/work/request", token=xw.worker, json=request)
        assert r.status == 400 and key in r.body["message"], (key, bad, r)
    await xw.assert_healthy()


@pytest.mark.every_database
async def test_the_claim_gives_only_jobs_that_fit_the_free_memory_and_disk(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    big_memory = await xw.submit(xw.admin, "work", min_memory_bytes=4 * GIB)
    big_disk = await xw.submit(xw.admin, "work", min_disk_bytes=50 * GIB)
    host = await xw.register()
    assert await _ask(xw, host, free_memory_bytes=1 * GIB, free_disk_bytes=1 * GIB) == []
    assert await _ask(xw, host, free_memory_bytes=4 * GIB, free_disk_bytes=1 * GIB) == [big_memory["uid"]]
    # a free amount not said is no limit
    [a] = (
        await xw.ok(
            "POST",
            "/work/request",
            token=xw.worker,
            json={"host_uid": host, "wait_s": 0, "free_memory_bytes": 0},
        )
    )["assignments"]
    assert a["job_uid"] == big_disk["uid"]
    assert (a["min_disk_bytes"], a["min_memory_bytes"], a["needs_network"]) == (50 * GIB, 0, False)


async def test_a_host_without_network_gets_no_job_that_needs_it(xw: XW) -> None:
    await _app(xw, "online", needs_network=True)
    await _app(xw, "offline")
    online = await xw.submit(xw.admin, "online")
    host = await xw.register()
    assert await _ask(xw, host, network=False) == []
    offline = await xw.submit(xw.admin, "offline")
    assert await _ask(xw, host, network=False) == [offline["uid"]]
    other = await xw.register(name="online-host")
    body = {"host_uid": other, "wait_s": 0, "network": True}
    [a] = (await xw.ok("POST", "/work/request", token=xw.worker, json=body))["assignments"]
    assert a["job_uid"] == online["uid"] and a["needs_network"] is True


async def test_a_work_request_that_says_nothing_gets_any_job(xw: XW) -> None:
    """The benchmark's simulated workers send no resources: no filter for them."""
    await _app(xw, "online", needs_network=True)
    jobs = [
        await xw.submit(xw.admin, "online", min_memory_bytes=2**62, min_disk_bytes=2**62),
        await xw.submit(xw.admin, "online"),
    ]
    host = await xw.register()
    assert await _ask(xw, host) == [j["uid"] for j in jobs]
