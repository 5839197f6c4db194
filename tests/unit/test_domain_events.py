"""The event history on every database, through the server's functions: every change
appended in its transaction with who, when, from where and why; read back with the caller's
rights; settled into the indexed history in order. Each test mirrors one of
tests/unit/test_server_events.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import domain as d
from sqlalchemy import exists, func, select, update

from xwcommon.errors import BadRequest, NotFound
from xwserver import events, jobs, leases
from xwserver.access import Caller
from xwserver.db.models import Event, NewEvent, Task
from xwserver.state import Server


async def history(srv: Server, who: Caller, **query: Any) -> list[dict[str, Any]]:
    """``GET /events`` as ``who``."""
    return await events.list_events(srv, who, **query)


async def counts(srv: Server) -> tuple[int, int]:
    """(events in the history, events waiting to be moved there)."""
    waiting = select(func.count()).select_from(NewEvent).where(~exists().where(Event.id == NewEvent.id))
    async with srv.engine.connect() as conn:
        return (
            (await conn.execute(select(func.count()).select_from(Event))).scalar_one(),
            (await conn.execute(waiting)).scalar_one(),
        )


async def test_a_jobs_history_names_who_did_what_from_where(domain: Server) -> None:
    """Mirrors test_a_jobs_history_names_who_did_what_from_where (the address is the one the
    request came from: here the one the caller acts from)."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    host = await d.register(srv, name="volunteer")
    [a] = await d.request_work(srv, host)
    assert (
        await d.report(srv, a.task_uid, status="ERROR", exit_code=3, message="boom", accounting=None)
        == "ERROR"
    )
    seen = await history(srv, admin, job=job["uid"])
    assert [(e["kind"], e["action"]) for e in seen] == [
        ("job", "created"),
        ("task", "assigned"),
        ("task", "error"),
    ]
    created, assigned, failed = seen
    assert created["object_uid"] == job["uid"] and created["actor_uid"] == admin.uid
    assert created["address"] == "127.0.0.1"
    assert assigned["object_uid"] == a.task_uid and assigned["job_uid"] == job["uid"]
    assert assigned["host_uid"] == host and assigned["actor_uid"] == (await d.worker(srv)).uid
    assert failed["detail"] == "exit code 3; boom"
    assert [e["action"] for e in await history(srv, admin, host=host)][:2] == ["registered", "assigned"]


async def test_lost_aborted_and_removed_are_recorded_and_the_server_acts_alone_in_its_loops(
    domain: Server,
) -> None:
    """Mirrors test_lost_aborted_and_removed_are_recorded_and_the_server_acts_alone_in_its_loops."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    lost = await d.submit(srv, admin, "work")
    aborted = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    assert a.job_uid == lost["uid"]
    async with srv.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.uid == a.task_uid).values(lease_expires_at=0))
    await leases.reap(srv)
    with d.acting(admin):
        await jobs.abort_many(srv, admin, {"uids": [aborted["uid"]]})
        await jobs.delete(srv, admin, aborted["uid"])
    [*_, lost_event] = await history(srv, admin, job=lost["uid"])
    assert (lost_event["action"], lost_event["actor_uid"]) == ("lost", None)  # the reaper, not a user
    assert "lease expired" in lost_event["detail"]
    gone = await history(srv, admin, job=aborted["uid"])
    assert [e["action"] for e in gone] == ["created", "aborted", "removed"]
    assert {e["actor_uid"] for e in gone} == {admin.uid}


async def test_a_user_sees_the_events_of_what_they_may_read_only(domain: Server) -> None:
    """Mirrors test_a_user_sees_the_events_of_what_they_may_read_only."""
    srv = domain
    admin = await d.admin(srv)
    alice, bob = await d.add_user(srv, "alice"), await d.add_user(srv, "bob")
    await d.insert_app(srv, alice, "mine")  # a STANDARD user's app (and its jobs) is private
    job = await d.submit(srv, alice, "mine")
    assert [e["action"] for e in await history(srv, alice, job=job["uid"])] == ["created"]
    with pytest.raises(NotFound):
        await history(srv, bob, job=job["uid"])
    assert all(e["object_uid"] != job["uid"] for e in await history(srv, bob))
    assert job["uid"] in {e["object_uid"] for e in await history(srv, alice)}
    everyone = {e["object_uid"] for e in await history(srv, admin, limit="10000")}
    assert job["uid"] in everyone  # a SUPER user sees every event
    with pytest.raises(BadRequest, match="ISO 8601"):
        await history(srv, alice, since="yesterday")
    assert await history(srv, alice, since="2999-01-01T00:00:00Z") == []


async def test_new_events_wait_unindexed_then_settle_in_order_and_reads_see_them_all_along(
    domain: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mirrors test_new_events_wait_unindexed_then_settle_in_order_and_reads_see_them_all_along:
    a change appends its events to the unindexed table in its own transaction; the settler
    moves them, oldest first, in batches, to the indexed history; a reader sees every event
    at every moment, in the order they happened; ids never go back."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    submitted = [await d.submit(srv, admin, "work") for _ in range(3)]
    host = await d.register(srv, name="volunteer")
    [a] = await d.request_work(srv, host)
    while await events.settle(srv):
        pass
    assert await d.report(srv, a.task_uid) == "COMPLETED"
    first = submitted[0]["uid"]
    settled, waiting = await counts(srv)
    assert waiting >= 1 and settled >= 5  # completed waits; 3 created, registered, assigned are settled
    seen = [e["action"] for e in await history(srv, admin, job=first)]
    assert seen == ["created", "assigned", "completed"]  # across both tables, in order
    everyone = await history(srv, admin, limit="10000")
    assert [e["at"] for e in everyone] == sorted(e["at"] for e in everyone)
    assert [e["action"] for e in await history(srv, admin, job=first, limit="2")] == ["created", "assigned"]
    monkeypatch.setattr(
        events, "SETTLE_BATCH", 1
    )  # one event a transaction: order and completeness at each step
    while await events.settle(srv):
        assert [e["action"] for e in await history(srv, admin, job=first)] == seen
        assert await history(srv, admin, limit="10000") == everyone
    assert (await counts(srv))[1] == 0
    assert [e["action"] for e in await history(srv, admin, job=first)] == seen
    async with srv.engine.connect() as conn:  # the newest moved row alone stays, unseen
        kept = (await conn.execute(select(NewEvent.id))).scalars().all()
    assert kept == [everyone[-1]["id"]]
    # ids never go back: the database numbers past the kept row, and every event keeps its id
    later = await d.submit(srv, admin, "work")
    [created] = await history(srv, admin, job=later["uid"])
    assert created["id"] > everyone[-1]["id"]
    while await events.settle(srv):
        pass
    assert await history(srv, admin, job=later["uid"]) == [created]
    assert await history(srv, admin, limit="10000") == [*everyone, created]
    assert [e["object_uid"] for e in await history(srv, admin, host=host)][0] == host
