"""Long-polling work requests on every database, through the server's functions: a request
whose worker went away takes no job, and a waiting request takes a job as soon as its input is
made readable. Each test mirrors one of tests/unit/test_server_longpoll.py, whose HTTP versions
run on SQLite."""

from __future__ import annotations

import asyncio

from helpers import domain as d

from xwcommon import defaults
from xwcommon.protocol.work import WorkRequest
from xwserver import objects, scheduler
from xwserver.state import Server


async def test_a_work_request_whose_worker_went_away_takes_no_job(domain: Server) -> None:
    """Mirrors test_a_work_request_whose_worker_went_away_takes_no_job: the worker's
    connection closed while its request waits is what the handler's ``connected`` says."""
    srv = domain
    admin, worker = await d.admin(srv), await d.worker(srv)
    await d.insert_app(srv, admin, "work")
    host = await d.register(srv)
    there = True
    msg = WorkRequest(host_uid=host, capacity=1, wait_s=30)
    with d.acting(worker):
        poll = asyncio.create_task(scheduler.request_work(srv, worker, msg, connected=lambda: there))
    await asyncio.sleep(0.3)
    assert not poll.done()
    there = False  # the worker's connection is closed while its request waits
    await asyncio.sleep(0.2)

    job = await d.submit(srv, admin, "work")
    await asyncio.sleep(2 * defaults.WORK_REQUEST_RECHECK_S)
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    assert await d.tasks(srv, job["uid"]) == []
    assert (await asyncio.wait_for(poll, 30)).assignments == []

    got = await d.request_work(srv, host, wait_s=5)
    assert [a.job_uid for a in got] == [job["uid"]]
    assert (await d.job(srv, job["uid"]))["retry"] == 0


async def test_a_waiting_work_request_takes_a_job_as_soon_as_its_input_is_made_readable(
    domain: Server,
) -> None:
    """Mirrors test_a_waiting_work_request_takes_a_job_as_soon_as_its_input_is_made_readable:
    the re-check far beyond the test, only a wake-up answers the waiting request in time."""
    srv = domain
    srv.settings.work_request_recheck_s = 60
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    secret = await d.upload(srv, admin, b"secret input", name="in.txt", access_rights="0700")
    job = await d.submit(srv, admin, "work", stdin_uid=secret.uid)
    host = await d.register(srv)
    assert await d.request_work(srv, host) == []  # no worker may read its input
    waiting = asyncio.create_task(d.request_work(srv, host, wait_s=60))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    with d.acting(admin):
        await objects.chmod(srv, admin, secret.uid, {"rights": "0744"})
    got = await asyncio.wait_for(waiting, 10)
    assert [a.job_uid for a in got] == [job["uid"]]
    assert asyncio.get_running_loop().time() - started < 3  # at once, not at the re-check
