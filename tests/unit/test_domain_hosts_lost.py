"""Lost hosts on every database, through the server's functions: pruned after a while unless
their tasks are on record, and an ADVANCED user may remove a host (its running task goes back).
Each test mirrors one of tests/unit/test_server_hosts_lost.py, whose HTTP versions run on SQLite
(with its server's settings: silent for 2 intervals of 0.3 s, LOST; pruned 100 s after that)."""

from __future__ import annotations

import time

import pytest
from helpers import domain as d
from sqlalchemy import select, update

from xwcommon.errors import Forbidden, HostUnknown, NotFound
from xwserver import hosts
from xwserver.db.models import Host, Token
from xwserver.state import Server


@pytest.fixture
def srv(domain: Server) -> Server:
    """The domain's server with the HTTP tests' settings (``server_conf`` there)."""
    domain.settings.heartbeat_interval_s = 0.3
    domain.settings.host_lost_heartbeats = 2
    domain.settings.host_prune_after_s = 100
    return domain


async def _states(srv: Server) -> dict[str, str]:
    """Each host's state as ``GET /hosts`` shows it to admin."""
    return {h["uid"]: h["state"] for h in await hosts.list_hosts(srv, await d.admin(srv))}


async def _silent_since(srv: Server, host: str, ago_s: float) -> None:
    async with srv.sessions.begin() as session:
        await session.execute(update(Host).where(Host.uid == host).values(last_seen_at=time.time() - ago_s))


async def test_hosts_lost_long_ago_are_pruned_unless_their_tasks_are_on_record(srv: Server) -> None:
    """Mirrors test_hosts_lost_long_ago_are_pruned_unless_their_tasks_are_on_record."""
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    gone, ran, disabled, expected, recent = [await d.register(srv, name=n) for n in "abcde"]
    job = await d.submit(srv, admin, "work")
    [assignment] = await d.request_work(srv, ran)
    assert assignment.job_uid == job["uid"]
    with d.acting(admin):
        await hosts.set_enabled(srv, admin, disabled, False)
    await d.submit(srv, admin, "work", expected_host_uid=expected)
    for uid in (gone, ran, disabled, expected):
        await _silent_since(srv, uid, 200)
    await _silent_since(srv, recent, 50)  # lost, not for long enough
    assert await hosts.prune_lost(srv) == 1
    left = await _states(srv)
    assert gone not in left and {ran, disabled, expected, recent} <= set(left)
    assert await hosts.prune_lost(srv) == 0


async def test_an_advanced_user_removes_a_host_and_its_running_task_goes_back(srv: Server) -> None:
    """Mirrors test_an_advanced_user_removes_a_host_and_its_running_task_goes_back."""
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    host = await d.register(srv, name="doomed")
    job = await d.submit(srv, admin, "work")
    assert len(await d.request_work(srv, host)) == 1
    assert (await d.job(srv, job["uid"]))["status"] == "RUNNING"

    standard = await d.add_user(srv, "stan", "STANDARD")
    with pytest.raises(Forbidden, match="ADVANCED"):
        await hosts.remove(srv, standard, host)
    advanced = await d.add_user(srv, "ada", "ADVANCED")
    with d.acting(advanced):
        assert await hosts.remove(srv, advanced, host) == 1
    back = await d.job(srv, job["uid"])
    assert (back["status"], back["retry"]) == ("PENDING", 0)  # no retry spent
    assert host not in await _states(srv)
    async with srv.sessions() as session:
        assert (await session.execute(select(Token.id).where(Token.host_id.is_not(None)))).first() is None
    with pytest.raises(NotFound):
        await hosts.remove(srv, advanced, host)
    # its worker's next call: unknown host, so it registers anew and the job runs there
    with pytest.raises(HostUnknown):
        await d.heartbeat(srv, host, [])
    again = await d.register(srv, name="doomed")
    assert [a.job_uid for a in await d.request_work(srv, again)] == [job["uid"]]
