"""Declared needs on every database, through the server's functions: an app's network, a
job's memory and disk, and the claim matching them to what a work request says the host has
free. Each test mirrors one of tests/unit/test_server_needs.py, whose HTTP versions run on
SQLite."""

from __future__ import annotations

from typing import Any

from helpers import domain as d

from xwserver import apps
from xwserver.state import Server

GIB = 1 << 30


async def _ask(srv: Server, host: str, capacity: int = 10, **resources: Any) -> list[str]:
    """The job UIDs a work request with these resources gets."""
    return [a.job_uid for a in await d.request_work(srv, host, capacity, **resources)]


async def test_an_app_declares_whether_it_needs_the_network_and_its_jobs_copy_it(domain: Server) -> None:
    """Mirrors test_an_app_declares_whether_it_needs_the_network_and_its_jobs_copy_it."""
    srv = domain
    admin = await d.admin(srv)
    plain = await d.insert_app(srv, admin, "plain")
    online = await d.insert_app(srv, admin, "online", needs_network=True)
    assert plain["needs_network"] is False and online["needs_network"] is True
    assert (await apps.get(srv, admin, "online"))["needs_network"] is True
    job = await d.submit(srv, admin, "online")
    assert job["needs_network"] is True
    assert (await d.submit(srv, admin, "plain"))["needs_network"] is False
    # the app changes later; the job keeps the copy it took at submission
    again = await d.insert_app(srv, admin, "online", needs_network=False)
    assert again["needs_network"] is False and again["uid"] == online["uid"]
    assert (await d.job(srv, job["uid"]))["needs_network"] is True
    # adding binaries without saying keeps the app's value
    assert (await d.insert_app(srv, admin, "plain"))["needs_network"] is False
    assert (await apps.get(srv, admin, "online"))["needs_network"] is False


async def test_a_job_stores_its_declared_memory_and_disk(domain: Server) -> None:
    """Mirrors test_a_job_stores_its_declared_memory_and_disk."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work", min_memory_bytes=2 * GIB, min_disk_bytes=5 * GIB)
    assert (job["min_memory_bytes"], job["min_disk_bytes"]) == (2 * GIB, 5 * GIB)
    shown = await d.job(srv, job["uid"])
    assert (shown["min_memory_bytes"], shown["min_disk_bytes"], shown["needs_network"]) == (
        2 * GIB,
        5 * GIB,
        False,
    )
    plain = await d.submit(srv, admin, "work")
    assert (plain["min_memory_bytes"], plain["min_disk_bytes"]) == (0, 0)
    bulk = await d.submit_many(srv, admin, [{"app": "work", "min_disk_bytes": 7}] * 2)
    assert [j["min_disk_bytes"] for j in bulk] == [7, 7]
    assert [(await d.job(srv, j["uid"]))["min_disk_bytes"] for j in bulk] == [7, 7]


async def test_the_claim_gives_only_jobs_that_fit_the_free_memory_and_disk(domain: Server) -> None:
    """Mirrors test_the_claim_gives_only_jobs_that_fit_the_free_memory_and_disk."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    big_memory = await d.submit(srv, admin, "work", min_memory_bytes=4 * GIB)
    big_disk = await d.submit(srv, admin, "work", min_disk_bytes=50 * GIB)
    host = await d.register(srv)
    assert await _ask(srv, host, free_memory_bytes=1 * GIB, free_disk_bytes=1 * GIB) == []
    assert await _ask(srv, host, free_memory_bytes=4 * GIB, free_disk_bytes=1 * GIB) == [big_memory["uid"]]
    # a free amount not said is no limit
    [a] = await d.request_work(srv, host, free_memory_bytes=0)
    assert a.job_uid == big_disk["uid"]
    assert (a.min_disk_bytes, a.min_memory_bytes, a.needs_network) == (50 * GIB, 0, False)


async def test_a_host_without_network_gets_no_job_that_needs_it(domain: Server) -> None:
    """Mirrors test_a_host_without_network_gets_no_job_that_needs_it."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "online", needs_network=True)
    await d.insert_app(srv, admin, "offline")
    online = await d.submit(srv, admin, "online")
    host = await d.register(srv)
    assert await _ask(srv, host, network=False) == []
    offline = await d.submit(srv, admin, "offline")
    assert await _ask(srv, host, network=False) == [offline["uid"]]
    other = await d.register(srv, name="online-host")
    [a] = await d.request_work(srv, other, network=True)
    assert a.job_uid == online["uid"] and a.needs_network is True


async def test_a_work_request_that_says_nothing_gets_any_job(domain: Server) -> None:
    """Mirrors test_a_work_request_that_says_nothing_gets_any_job: the benchmark's simulated
    workers send no resources, no filter for them."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "online", needs_network=True)
    jobs = [
        await d.submit(srv, admin, "online", min_memory_bytes=2**62, min_disk_bytes=2**62),
        await d.submit(srv, admin, "online"),
    ]
    host = await d.register(srv)
    assert await _ask(srv, host) == [j["uid"] for j in jobs]
