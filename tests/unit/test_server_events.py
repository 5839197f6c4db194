"""The event history: every change appended in its transaction, with who, when, from where
and why; read back with the caller's rights; pruned after its retention. On SQLite (one also on
PostgreSQL and MariaDB); tests/unit/test_domain_events.py holds their scenarios on every database
through the server's functions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import exists, func, select, update

from xwserver import events, leases
from xwserver.db.models import Event, NewEvent, Task

if TYPE_CHECKING:
    from conftest import XW


async def history(xw: XW, token: str, **query: Any) -> list[dict[str, Any]]:
    return list((await xw.ok("GET", "/events", token=token, params=query))["events"])


@pytest.mark.every_database
async def test_a_jobs_history_names_who_did_what_from_where(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register(name="volunteer")
    [a] = await xw.request_work(host)
    await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "ERROR", "exit_code": 3, "message": "boom"},
    )
    seen = await history(xw, xw.admin, job=job["uid"])
    assert [(e["kind"], e["action"]) for e in seen] == [
        ("job", "created"),
        ("task", "assigned"),
        ("task", "error"),
    ]
    admin = (await xw.ok("GET", "/users/admin", token=xw.admin))["uid"]
    created, assigned, failed = seen
    assert created["object_uid"] == job["uid"] and created["actor_uid"] == admin
    assert created["address"] == "127.0.0.1"
    assert assigned["object_uid"] == a["task_uid"] and assigned["job_uid"] == job["uid"]
    assert assigned["host_uid"] == host and assigned["actor_uid"] not in (None, admin)  # the worker identity
    assert failed["detail"] == "exit code 3; boom"
    assert [e["action"] for e in await history(xw, xw.admin, host=host)][:2] == ["registered", "assigned"]


async def test_lost_aborted_and_removed_are_recorded_and_the_server_acts_alone_in_its_loops(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    lost = await xw.submit(xw.admin, "work")
    aborted = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    assert a["job_uid"] == lost["uid"]
    async with xw.srv.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.uid == a["task_uid"]).values(lease_expires_at=0))
    await leases.reap(xw.srv)
    await xw.ok("POST", "/jobs/abort", token=xw.admin, json={"uids": [aborted["uid"]]})
    await xw.ok("DELETE", f"/jobs/{aborted['uid']}", token=xw.admin)
    [*_, lost_event] = await history(xw, xw.admin, job=lost["uid"])
    assert (lost_event["action"], lost_event["actor_uid"]) == ("lost", None)  # the reaper, not a user
    assert "lease expired" in lost_event["detail"]
    gone = [e["action"] for e in await history(xw, xw.admin, job=aborted["uid"])]
    assert gone == ["created", "aborted", "removed"]


async def test_a_user_sees_the_events_of_what_they_may_read_only(xw: XW) -> None:
    alice, bob = await xw.add_user("alice"), await xw.add_user("bob")
    await xw.insert_app(alice, "mine")  # a STANDARD user's app (and its jobs) is private
    job = await xw.submit(alice, "mine")
    assert [e["action"] for e in await history(xw, alice, job=job["uid"])] == ["created"]
    r = await xw.call("GET", "/events", token=bob, params={"job": job["uid"]})
    assert r.status == 404
    assert all(e["object_uid"] != job["uid"] for e in await history(xw, bob))
    own = {e["object_uid"] for e in await history(xw, alice)}
    assert job["uid"] in own
    everyone = {e["object_uid"] for e in await history(xw, xw.admin, limit=10000)}
    assert job["uid"] in everyone  # a SUPER user sees every event
    r = await xw.call("GET", "/events", token=alice, params={"since": "yesterday"})
    assert r.status == 400 and "ISO 8601" in r.body["message"]
    assert await history(xw, alice, since="2999-01-01T00:00:00Z") == []


async def counts(xw: XW) -> tuple[int, int]:
    """(events in the history, events waiting to be moved there)."""
    waiting = select(func.count()).select_from(NewEvent).where(~exists().where(Event.id == NewEvent.id))
    async with xw.srv.engine.connect() as conn:
        return (
            (await conn.execute(select(func.count()).select_from(Event))).scalar_one(),
            (await conn.execute(waiting)).scalar_one(),
        )


async def test_events_older_than_the_retention_are_pruned_the_newest_settled_first(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    await xw.submit(xw.admin, "work")
    settled, waiting = await counts(xw)
    assert settled + waiting > 0
    later = time.time() + 2 * xw.srv.settings.events_retention_s
    assert await events.prune(xw.srv, now=later) == settled + waiting
    assert await counts(xw) == (0, 0)


async def test_new_events_wait_unindexed_then_settle_in_order_and_reads_see_them_all_along(xw: XW) -> None:
    """A change appends its events to the unindexed table in its own transaction; the settler
    moves them, oldest first, in batches, to the indexed history; a reader sees every event
    at every moment, in the order they happened."""
    await xw.insert_app(xw.admin, "work")
    jobs = [await xw.submit(xw.admin, "work") for _ in range(3)]
    host = await xw.register(name="volunteer")
    [a] = await xw.request_work(host)
    while await events.settle(xw.srv):  # what the server's loop may have left
        pass
    await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0},
    )
    first = jobs[0]["uid"]
    settled, waiting = await counts(xw)
    assert waiting >= 1 and settled >= 5  # completed waits; 3 created, registered, assigned are settled
    seen = [e["action"] for e in await history(xw, xw.admin, job=first)]
    assert seen == ["created", "assigned", "completed"]  # across both tables, in order
    everyone = await history(xw, xw.admin, limit=10000)
    assert [e["at"] for e in everyone] == sorted(e["at"] for e in everyone)
    assert [e["action"] for e in await history(xw, xw.admin, job=first, limit=2)] == ["created", "assigned"]
    old_batch = events.SETTLE_BATCH
    events.SETTLE_BATCH = 1  # one event a transaction: order and completeness at each step
    try:
        while await events.settle(xw.srv):
            assert [e["action"] for e in await history(xw, xw.admin, job=first)] == seen
            assert await history(xw, xw.admin, limit=10000) == everyone
    finally:
        events.SETTLE_BATCH = old_batch
    assert (await counts(xw))[1] == 0
    assert [e["action"] for e in await history(xw, xw.admin, job=first)] == seen
    async with xw.srv.engine.connect() as conn:  # the newest moved row alone stays, unseen
        kept = (await conn.execute(select(NewEvent.id))).scalars().all()
    assert kept == [everyone[-1]["id"]]
    # ids never go back: SQLite numbers past the kept row, and every event keeps its id
    later = await xw.submit(xw.admin, "work")
    [created] = await history(xw, xw.admin, job=later["uid"])
    assert created["id"] > everyone[-1]["id"]
    while await events.settle(xw.srv):
        pass
    assert await history(xw, xw.admin, job=later["uid"]) == [created]
    assert await history(xw, xw.admin, limit=10000) == [*everyone, created]
    assert [e["object_uid"] for e in await history(xw, xw.admin, host=host)][0] == host


@pytest.mark.parametrize("server_conf", [{"events.record": "false"}])
async def test_the_history_can_be_turned_off(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    assert await history(xw, xw.admin, job=job["uid"]) == []


async def test_the_server_settles_the_newest_events_by_itself_once_quiet(
    xw: XW, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.setattr(events, "SETTLE_INTERVAL_S", 0.05)
    await asyncio.sleep(1.1)  # the loop's sleep in progress (1 s) ends, the next ones are short
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    for _ in range(100):
        if (await counts(xw))[1] == 0:
            break
        await asyncio.sleep(0.05)
    settled, waiting = await counts(xw)
    assert waiting == 0 and settled > 0
    assert [e["action"] for e in await history(xw, xw.admin, job=job["uid"])] == ["created"]
