"""Usage on every database, through the server's functions: jobs, tasks, CPU and wall
seconds and bytes per user and user group, a SUPER user seeing everyone and any other user
itself only, and what removed jobs used kept on record. Each test mirrors one of
tests/unit/test_server_usage.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

from typing import Any

from helpers import domain as d

from xwcommon.protocol.work import Accounting
from xwserver import jobs, usage
from xwserver.access import Caller
from xwserver.state import Server

ACCOUNTING = Accounting(cpu_user_s=1.5, cpu_system_s=0.5, wall_s=3.0, max_rss_bytes=1000)


async def _compute(srv: Server, who: Caller, app: str, host: str) -> None:
    """One job of ``who`` run to COMPLETED with :data:`ACCOUNTING`."""
    await d.submit(srv, who, app)
    [a] = await d.request_work(srv, host)
    assert await d.report(srv, a.task_uid, accounting=ACCOUNTING) == "COMPLETED"


async def _rows(srv: Server, who: Caller, **period: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``GET /usage`` as ``who``: its rows by (scope, name)."""
    report = await usage.usage(srv, who, since=period.get("since"), until=period.get("until"))
    return {(r["scope"], r["name"]): r for r in report["usage"]}


async def test_usage_adds_up_per_user_and_per_group_and_each_user_sees_only_itself(domain: Server) -> None:
    """Mirrors test_usage_adds_up_per_user_and_per_group_and_each_user_sees_only_itself."""
    srv = domain
    admin = await d.admin(srv)
    alice = await d.add_user(srv, "alice", group="physics")
    bob = await d.add_user(srv, "bob", group="physics")
    carol = await d.add_user(srv, "carol")
    host = await d.register(srv)
    app = await d.insert_app(srv, admin, "shared")  # public: every user may run it
    await d.upload(srv, alice, b"x" * 1000, name="input")
    for who in (alice, alice, bob):
        await _compute(srv, who, app["name"], host)

    everyone = await _rows(srv, admin)
    a, b = everyone[("user", "alice")], everyone[("user", "bob")]
    assert (a["jobs"], a["tasks"], a["cpu_s"], a["wall_s"]) == (2, 2, 4.0, 6.0)
    assert a["bytes_up"] == 1000 and a["group"] == "physics"
    assert (b["jobs"], b["tasks"], b["cpu_s"]) == (1, 1, 2.0)
    physics = everyone[("group", "physics")]
    assert (physics["users"], physics["jobs"], physics["cpu_s"], physics["wall_s"]) == (2, 3, 6.0, 9.0)
    assert everyone[("user", "carol")]["jobs"] == 0  # known, idle

    own = await _rows(srv, alice)
    assert list(own) == [("user", "alice")]
    assert own[("user", "alice")]["cpu_s"] == 4.0
    idle = await _rows(srv, carol)
    assert [(name, r["jobs"]) for (_scope, name), r in idle.items()] == [("carol", 0)]


async def test_usage_keeps_what_removed_jobs_used(domain: Server) -> None:
    """Mirrors test_usage_keeps_what_removed_jobs_used: xwresults removes a job once it
    fetched the result, its usage must stay on record."""
    srv = domain
    admin = await d.admin(srv)
    alice = await d.add_user(srv, "alice", group="physics")
    host = await d.register(srv)
    app = await d.insert_app(srv, admin, "shared")
    for _ in range(2):
        await _compute(srv, alice, app["name"], host)
    before = (await _rows(srv, admin))[("user", "alice")]
    mine = list(await d.job_list(srv, alice, owner="me"))
    with d.acting(alice):
        removed = await jobs.delete_many(srv, alice, {"uids": mine})
    assert sorted(removed["deleted"]) == sorted(mine) and removed["missing"] == []
    assert await d.job_list(srv, alice, owner="me") == {}
    after = (await _rows(srv, admin))[("user", "alice")]
    assert (
        {k: after[k] for k in ("jobs", "tasks", "cpu_s", "wall_s")}
        == {k: before[k] for k in ("jobs", "tasks", "cpu_s", "wall_s")}
        == {"jobs": 2, "tasks": 2, "cpu_s": 4.0, "wall_s": 6.0}
    )
    # a period after them holds nothing of them
    later = await _rows(srv, admin, since="2999-01-01")
    assert later[("user", "alice")]["jobs"] == 0
