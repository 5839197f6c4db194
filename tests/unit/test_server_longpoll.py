"""Long-polling work requests whose worker went away must not take jobs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp

from xwcommon import defaults
from xwcommon.transport import pinned_ssl_context

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
