"""Lost hosts are seen (GET /hosts gives each host's state), pruned after a while unless their
tasks are on record, and an ADVANCED user may remove a host; a real server, on SQLite (the
pruning also on PostgreSQL and MariaDB). tests/unit/test_domain_hosts_lost.py holds the pruning
and the removal on every database through the server's functions."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from xwserver import hosts
from xwserver.db.models import Host, Token

if TYPE_CHECKING:
    from conftest import XW


@pytest.fixture
def server_conf() -> dict[str, str]:
    # silent for 2 intervals of 0.3 s: LOST; pruned 100 s after that
    return {"heartbeat_interval_s": "0.3", "host_lost_heartbeats": "2", "host_prune_after_s": "100"}


async def _states(xw: XW) -> dict[str, str]:
    return {h["uid"]: h["state"] for h in (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]}


async def _beat(xw: XW, host: str, activation: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"host_uid": host, "task_uids": []}
    if activation:
        body["activation"] = activation
    await xw.ok("POST", "/work/heartbeat", token=xw.worker, json=body)


async def _silent_since(xw: XW, host: str, ago_s: float) -> None:
    async with xw.srv.sessions.begin() as session:
        await session.execute(update(Host).where(Host.uid == host).values(last_seen_at=time.time() - ago_s))


async def test_a_silent_host_shows_as_lost_and_active_again_when_it_beats(xw: XW) -> None:
    host = await xw.register(name="quiet")
    assert (await _states(xw))[host] == "active"
    await asyncio.sleep(0.8)  # more than 2 × 0.3 s without a heartbeat
    assert (await _states(xw))[host] == "lost"
    await _beat(xw, host)
    assert (await _states(xw))[host] == "active"
    await _beat(xw, host, {"state": "suspended", "detail": "owner at the keyboard"})
    assert (await _states(xw))[host] == "suspended"
    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    assert (await _states(xw))[host] == "disabled"
    shown = await xw.ok("GET", f"/objects/{host}", token=xw.admin)
    assert shown["object"]["state"] == "disabled"


@pytest.mark.every_database
async def test_hosts_lost_long_ago_are_pruned_unless_their_tasks_are_on_record(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    gone, ran, disabled, expected, recent = [await xw.register(name=n) for n in "abcde"]
    job = await xw.submit(xw.admin, "work")
    [assignment] = await xw.request_work(ran)
    assert assignment["job_uid"] == job["uid"]
    await xw.ok("POST", f"/hosts/{disabled}/disable", token=xw.admin)
    await xw.submit(xw.admin, "work", expected_host_uid=expected)
    for uid in (gone, ran, disabled, expected):
        await _silent_since(xw, uid, 200)
    await _silent_since(xw, recent, 50)  # lost, not for long enough
    assert await hosts.prune_lost(xw.srv) == 1
    left = await _states(xw)
    assert gone not in left and {ran, disabled, expected, recent} <= set(left)
    assert await hosts.prune_lost(xw.srv) == 0


async def test_an_advanced_user_removes_a_host_and_its_running_task_goes_back(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register(name="doomed")
    job = await xw.submit(xw.admin, "work")
    assert len(await xw.request_work(host)) == 1
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"

    standard = await xw.add_user("stan", "STANDARD")
    r = await xw.call("DELETE", f"/hosts/{host}", token=standard)
    assert r.status == 403 and "ADVANCED" in r.body["message"]
    advanced = await xw.add_user("ada", "ADVANCED")
    answer = await xw.ok("DELETE", f"/hosts/{host}", token=advanced)
    assert answer == {"ok": True, "released": 1}
    back = await xw.job(job["uid"])
    assert (back["status"], back["retry"]) == ("PENDING", 0)  # no retry spent
    assert host not in await _states(xw)
    async with xw.srv.sessions() as session:
        assert (await session.execute(select(Token.id).where(Token.host_id.is_not(None)))).first() is None
    r = await xw.call("DELETE", f"/hosts/{host}", token=advanced)
    assert r.status == 404
    # its worker's next call: unknown host, so it registers anew and the job runs there
    r = await xw.call("POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": []})
    assert r.body["error"] == "host_unknown"
    again = await xw.register(name="doomed")
    assert [a["job_uid"] for a in await xw.request_work(again)] == [job["uid"]]
    await xw.assert_healthy()
