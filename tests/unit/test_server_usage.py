"""``GET /usage``: jobs, tasks, CPU and wall seconds and bytes per user and user group over a
period; a SUPER user sees everyone, any other user itself only. On SQLite (one also on PostgreSQL
and MariaDB); tests/unit/test_domain_usage.py holds their scenarios on every database through the
server's functions."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from xwcommon.levels import UserLevel
from xwserver.db.models import UserGroup
from xwserver.users import create_user

if TYPE_CHECKING:
    from conftest import XW

ACCOUNTING = {"cpu_user_s": 1.5, "cpu_system_s": 0.5, "wall_s": 3.0, "max_rss_bytes": 1000}


async def _member(xw: XW, login: str, group: str) -> str:
    """A STANDARD user in user group ``group`` (made if new); its token."""
    password = "pw-" + secrets.token_hex(8)
    async with xw.srv.sessions.begin() as session:
        from sqlalchemy import select

        found = (
            await session.execute(select(UserGroup).where(UserGroup.label == group))
        ).scalar_one_or_none()
        if found is None:
            found = UserGroup(uid=_uid(), label=group, created_at=time.time())
            session.add(found)
            await session.flush()
        await create_user(session, login, password, UserLevel.STANDARD, group_id=found.id)
    return await xw.login(login, password)


def _uid() -> str:
    import uuid

    return str(uuid.uuid4())


async def _compute(xw: XW, token: str, app: str, host: str) -> None:
    """One job of ``token``'s user run to COMPLETED with :data:`ACCOUNTING`."""
    await xw.submit(token, app)
    [a] = await xw.request_work(host)
    body = {"status": "COMPLETED", "exit_code": 0, "accounting": ACCOUNTING}
    await xw.ok("POST", f"/work/tasks/{a['task_uid']}/report", token=xw.worker, json=body)


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scope"], r["name"]): r for r in report["usage"]}


@pytest.mark.every_database
async def test_usage_adds_up_per_user_and_per_group_and_each_user_sees_only_itself(xw: XW) -> None:
    alice = await _member(xw, "alice", "physics")
    bob = await _member(xw, "bob", "physics")
    carol = await xw.add_user("carol")
    host = await xw.register()
    app = await xw.insert_app(xw.admin, "shared")  # public: every user may run it
    await xw.upload(alice, b"x" * 1000, name="input")
    for token in (alice, alice, bob):
        await _compute(xw, token, app["name"], host)

    everyone = _rows(await xw.ok("GET", "/usage", token=xw.admin))
    a, b = everyone[("user", "alice")], everyone[("user", "bob")]
    assert (a["jobs"], a["tasks"], a["cpu_s"], a["wall_s"]) == (2, 2, 4.0, 6.0)
    assert a["bytes_up"] == 1000 and a["group"] == "physics"
    assert (b["jobs"], b["tasks"], b["cpu_s"]) == (1, 1, 2.0)
    physics = everyone[("group", "physics")]
    assert (physics["users"], physics["jobs"], physics["cpu_s"], physics["wall_s"]) == (2, 3, 6.0, 9.0)
    assert everyone[("user", "carol")]["jobs"] == 0  # known, idle

    own = await xw.ok("GET", "/usage", token=alice)
    assert [(r["scope"], r["name"]) for r in own["usage"]] == [("user", "alice")]
    assert own["usage"][0]["cpu_s"] == 4.0
    idle = await xw.ok("GET", "/usage", token=carol)
    assert [(r["name"], r["jobs"]) for r in idle["usage"]] == [("carol", 0)]


async def test_a_period_keeps_what_happened_in_it(xw: XW) -> None:
    host = await xw.register()
    app = await xw.insert_app(xw.admin, "timed")
    await _compute(xw, xw.admin, app["name"], host)
    now = datetime.now(UTC)
    later = (now + timedelta(hours=1)).isoformat()
    before = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    inside = _rows(await xw.ok("GET", "/usage", token=xw.admin, params={"since": before}))
    assert inside[("user", "admin")]["tasks"] == 1
    much_later = (now + timedelta(hours=2)).isoformat()
    after = await xw.ok("GET", "/usage", token=xw.admin, params={"since": later, "until": much_later})
    assert _rows(after)[("user", "admin")]["tasks"] == 0
    assert after["since"].startswith(later[:16])
    earlier = await xw.ok("GET", "/usage", token=xw.admin, params={"until": before})
    assert _rows(earlier)[("user", "admin")]["jobs"] == 0


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 date or time"),
        ({"until": "2026-13-01"}, "until: '2026-13-01' is not an ISO 8601"),
        ({"until": "2026-02-29"}, "until: '2026-02-29' is not an ISO 8601"),
        ({"since": "2026-12-01 08:00"}, "since: '2026-12-01 08:00' is not an ISO 8601"),
        ({"since": "0001-01-01T00:00+23:59"}, "of the years 1000 to 8999"),
        ({"since": "2026-12-01\n"}, "is not an ISO 8601"),
        ({"since": ""}, "query parameter since is empty"),
    ],
)
async def test_a_bad_period_is_a_400_naming_the_parameter(xw: XW, params: dict[str, str], words: str) -> None:
    r = await xw.call("GET", "/usage", token=xw.admin, params=params)
    assert r.status == 400 and words in r.body["message"], r.body


async def test_a_worker_identity_may_not_read_usage(xw: XW) -> None:
    r = await xw.call("GET", "/usage", token=xw.worker)
    assert r.status == 403


async def test_a_period_that_ends_before_it_starts_is_empty(xw: XW) -> None:
    host = await xw.register()
    app = await xw.insert_app(xw.admin, "reversed")
    await _compute(xw, xw.admin, app["name"], host)
    report = await xw.ok(
        "GET", "/usage", token=xw.admin, params={"since": "2026-12-02", "until": "2026-12-01"}
    )
    assert all(r["jobs"] == r["tasks"] == 0 for r in report["usage"])


async def test_usage_keeps_what_removed_jobs_used(xw: XW) -> None:
    # xwresults removes a job once it fetched the result: its usage must stay on record
    alice = await _member(xw, "alice", "physics")
    host = await xw.register()
    app = await xw.insert_app(xw.admin, "shared")
    for _ in range(2):
        await _compute(xw, alice, app["name"], host)
    before = _rows(await xw.ok("GET", "/usage", token=xw.admin))[("user", "alice")]
    mine = [j["uid"] for j in (await xw.ok("GET", "/jobs", token=alice, params={"owner": "me"}))["jobs"]]
    await xw.ok("POST", "/jobs/delete", token=alice, json={"uids": mine})
    assert (await xw.ok("GET", "/jobs", token=alice, params={"owner": "me"}))["jobs"] == []
    after = _rows(await xw.ok("GET", "/usage", token=xw.admin))[("user", "alice")]
    assert (
        {k: after[k] for k in ("jobs", "tasks", "cpu_s", "wall_s")}
        == {k: before[k] for k in ("jobs", "tasks", "cpu_s", "wall_s")}
        == {"jobs": 2, "tasks": 2, "cpu_s": 4.0, "wall_s": 6.0}
    )
    # a period after them holds nothing of them
    later = _rows(await xw.ok("GET", "/usage", token=xw.admin, params={"since": "2999-01-01"}))
    assert later[("user", "alice")]["jobs"] == 0
