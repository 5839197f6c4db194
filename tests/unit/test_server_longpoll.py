"""Long-polling work requests whose worker went away must not take jobs. On SQLite (a waiting
request woken by a chmod also on PostgreSQL and MariaDB); tests/unit/test_domain_longpoll.py
holds those scenarios on every database through the server's functions."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from xwcommon import defaults
from xwcommon.protocol.work import WorkAnswer
from xwcommon.transport import pinned_ssl_context
from xwserver import scheduler
from xwserver.db.engine import transaction
from xwserver.hosts import own_host
from xwserver.scheduler import MAX_COME_BACK_S, claim, come_back_s
from xwserver.users import resolve_token

if TYPE_CHECKING:
    from conftest import XW


async def test_a_work_request_whose_worker_went_away_takes_no_job(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register()
    gone = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pinned_ssl_context(xw.ca_file)))
    poll = asyncio.create_task(
        gone.post(
            xw.api + "/work/request",
            json={"host_uid": host, "capacity": 1, "wait_s": 30},
            headers={"Authorization": f"Bearer {xw.worker}"},
        )
    )
    await asyncio.sleep(0.3)
    assert not poll.done()
    poll.cancel()
    await gone.close()  # the worker's connection is closed while its request waits
    await asyncio.sleep(0.2)

    job = await xw.submit(xw.admin, "work")
    await asyncio.sleep(2 * defaults.WORK_REQUEST_RECHECK_S)
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    assert await xw.tasks(job["uid"]) == []

    got = await xw.request_work(host, wait_s=5)
    assert [a["job_uid"] for a in got] == [job["uid"]]
    assert (await xw.job(job["uid"]))["retry"] == 0


async def _withdraw(xw: XW, host: str) -> None:
    """What a stopping worker sends: ``POST /work/release`` with ``withdraw``."""
    await xw.ok("POST", "/work/release", token=xw.worker, json={"host_uid": host, "withdraw": True})


async def test_a_withdrawn_work_request_ends_at_once_and_another_hosts_keeps_waiting(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    stopping, staying = await xw.register(name="stopping"), await xw.register(name="staying")
    withdrawn = asyncio.create_task(xw.request_work(stopping, wait_s=30))
    waiting = asyncio.create_task(xw.request_work(staying, wait_s=30))
    await asyncio.sleep(0.3)
    assert not withdrawn.done() and not waiting.done()
    await _withdraw(xw, stopping)
    assert await asyncio.wait_for(withdrawn, 3) == []  # at once, not after wait_s
    await asyncio.sleep(0.2)
    assert not waiting.done()
    # the submission's one wake-up goes to the request still waiting, not to the withdrawn one
    # that queued first (the re-check, 5 s on SQLite, would come too late)
    job = await xw.submit(xw.admin, "work")
    assert [a["job_uid"] for a in await asyncio.wait_for(waiting, 3)] == [job["uid"]]


async def test_a_withdraw_while_no_request_waits_changes_nothing_for_the_next_one(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register()
    await _withdraw(xw, host)  # nothing waits: nothing is left behind for the next request
    waiting = asyncio.create_task(xw.request_work(host, wait_s=30))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    job = await xw.submit(xw.admin, "work")
    assert [a["job_uid"] for a in await asyncio.wait_for(waiting, 3)] == [job["uid"]]


# the re-check far beyond the test: only a wake-up answers the waiting request in time
@pytest.mark.every_database
@pytest.mark.parametrize("server_conf", [{"work_request_recheck_s": "60"}])
async def test_a_waiting_work_request_takes_a_job_as_soon_as_its_input_is_made_readable(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    secret = await xw.upload(xw.admin, b"secret input", name="in.txt", access_rights="0700")
    job = await xw.submit(xw.admin, "work", stdin_uid=secret["uid"])
    host = await xw.register()
    assert await xw.request_work(host) == []  # no worker may read its input
    waiting = asyncio.create_task(xw.request_work(host, wait_s=60))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    await xw.ok("POST", f"/objects/{secret['uid']}/chmod", token=xw.admin, json={"rights": "0744"})
    got = await asyncio.wait_for(waiting, 10)
    assert [a["job_uid"] for a in got] == [job["uid"]]
    assert asyncio.get_running_loop().time() - started < 3  # at once, not at the re-check


@pytest.mark.parametrize("server_conf", [{"max_waiting_requests": "1", "come_back_s": "8"}])
async def test_a_work_request_that_finds_no_room_to_wait_is_told_when_to_come_back(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    first, second = await xw.register(name="first"), await xw.register(name="second")
    waiting = asyncio.create_task(xw.request_work(first, wait_s=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    body = await xw.ok(
        "POST", "/work/request", token=xw.worker, json={"host_uid": second, "capacity": 1, "wait_s": 20}
    )
    answer = WorkAnswer.from_wire(body)
    assert asyncio.get_running_loop().time() - started < 2  # at once, not after wait_s
    assert answer.assignments == [] and answer.retry_after_s is not None
    assert 4.0 <= answer.retry_after_s <= 12.0  # come_back_s, jittered by ±50%
    # the one that waits still gets the next job
    job = await xw.submit(xw.admin, "work")
    assert [a["job_uid"] for a in await asyncio.wait_for(waiting, 10)] == [job["uid"]]


@pytest.mark.parametrize("server_conf", [{"max_work_in_flight": "0", "come_back_s": "8"}])
async def test_work_requests_beyond_the_admission_cap_come_back_soon_and_reports_and_heartbeats_pass(
    xw: XW,
) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register()
    job = await xw.submit(xw.admin, "work")
    body = await xw.ok(
        "POST", "/work/request", token=xw.worker, json={"host_uid": host, "capacity": 1, "wait_s": 0}
    )
    answer = WorkAnswer.from_wire(body)
    assert answer.assignments == [] and answer.retry_after_s is not None
    assert 0.5 <= answer.retry_after_s <= 3.0  # a quarter of come_back_s, jittered
    beat = await xw.call("POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": []})
    assert beat.status == 200
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    # a request carrying reports is let in: it completes jobs
    caller = await resolve_token(xw.srv, xw.worker)
    held = await own_host(xw.srv, caller, host)

    async def take(conn: Any) -> list[Any]:
        return await claim(xw.srv, conn, caller, held, 1)

    [a] = await transaction(xw.srv.engine, take)
    report = {"task_uid": a.task_uid, "status": "COMPLETED", "exit_code": 0}
    body = await xw.ok(
        "POST",
        "/work/request",
        token=xw.worker,
        json={"host_uid": host, "capacity": 1, "wait_s": 0, "reports": [report]},
    )
    assert [o["task_uid"] for o in body["reported"]] == [a.task_uid]
    assert (await xw.job(job["uid"]))["status"] == "COMPLETED"
    # past the cap its reports are all it does: it takes no new job and comes back for one
    other = await xw.submit(xw.admin, "work")
    [b] = await transaction(xw.srv.engine, take)
    report = {"task_uid": b.task_uid, "status": "COMPLETED", "exit_code": 0}
    answer = WorkAnswer.from_wire(
        await xw.ok(
            "POST",
            "/work/request",
            token=xw.worker,
            json={"host_uid": host, "capacity": 1, "wait_s": 0, "reports": [report]},
        )
    )
    assert [o.task_uid for o in answer.reported] == [b.task_uid]
    assert answer.assignments == [] and answer.retry_after_s is not None
    assert (await xw.job(other["uid"]))["status"] == "COMPLETED"  # b was the other job


async def _turned_away(xw: XW) -> tuple[float, str]:
    """A second worker's request while the only waiting room is taken: the delay it is
    told and its answer's Connection header."""
    await xw.insert_app(xw.admin, "work")
    first, second = await xw.register(name="first"), await xw.register(name="second")
    waiting = asyncio.create_task(xw.request_work(first, wait_s=3))
    await asyncio.sleep(0.3)
    reply = await xw.call(
        "POST", "/work/request", token=xw.worker, json={"host_uid": second, "capacity": 1, "wait_s": 20}
    )
    told = WorkAnswer.from_wire(reply.body).retry_after_s
    assert reply.status == 200 and told is not None
    assert await asyncio.wait_for(waiting, 10) == []
    return told, reply.headers.get("Connection", "").lower()


# come_back_s 130: the jittered delay (65 to 195 s) is always past CLOSE_IDLE_AFTER_S
@pytest.mark.parametrize("server_conf", [{"max_waiting_requests": "1", "come_back_s": "130"}])
async def test_a_worker_told_to_come_back_later_has_its_connection_closed(xw: XW) -> None:
    told, connection = await _turned_away(xw)
    assert told >= scheduler.CLOSE_IDLE_AFTER_S
    # idle until it comes back: its TLS connection is not kept open meanwhile
    assert connection == "close"


# come_back_s 20: the jittered delay (10 to 30 s) is always short of CLOSE_IDLE_AFTER_S
@pytest.mark.parametrize("server_conf", [{"max_waiting_requests": "1", "come_back_s": "20"}])
async def test_a_worker_told_to_come_back_soon_keeps_its_connection(xw: XW) -> None:
    told, connection = await _turned_away(xw)
    assert told < scheduler.CLOSE_IDLE_AFTER_S
    # back in seconds: a reconnection would cost the server more than the idle connection
    assert connection != "close"


@pytest.mark.parametrize("server_conf", [{"max_waiting_requests": "10", "come_back_s": "2"}])
async def test_the_come_back_delay_grows_with_the_workers_away_and_falls_back_when_they_are_due(
    xw: XW,
) -> None:
    # 10 waiters, 2 s: the workers turned away come back at 5 requests a second in all
    now = 1_000_000.0
    few = [come_back_s(xw.srv, now=now) for _ in range(10)]
    assert all(1.0 <= d <= 3.0 for d in few)  # come_back_s, jittered
    for _ in range(490):
        come_back_s(xw.srv, now=now)
    assert 50.0 <= come_back_s(xw.srv, now=now) <= 150.0  # 500 away / 5 per s = 100 s, jittered
    later = now + MAX_COME_BACK_S + 1  # every one of them is due by then
    assert 1.0 <= come_back_s(xw.srv, now=later) <= 3.0


async def test_waking_every_waiter_for_a_repeatable_event_happens_at_most_once_an_interval() -> None:
    """A chmod anyone can repeat wakes every waiting request once per re-check interval at
    most: widening and narrowing rights in a loop does not make every waiter claim each time."""
    from xwserver.state import WorkNotifier

    notifier = WorkNotifier()
    first = [asyncio.create_task(notifier.wait(30)) for _ in range(3)]
    await asyncio.sleep(0.05)
    notifier.notify_all_at_most_every(60)
    await asyncio.wait_for(asyncio.gather(*first), 5)  # all three woken
    second = [asyncio.create_task(notifier.wait(30)) for _ in range(3)]
    await asyncio.sleep(0.05)
    notifier.notify_all_at_most_every(60)  # within the interval: nobody
    await asyncio.sleep(0.2)
    assert not any(t.done() for t in second) and notifier.waiting == 3
    notifier.notify_all()  # a submission still wakes them
    await asyncio.wait_for(asyncio.gather(*second), 5)
