"""The transaction helper on PostgreSQL and MariaDB: two transactions that deadlock both commit
(the database fails one, the helper runs it again), and nothing is logged as an error. SQLite
never interleaves two transactions. The helper is the server's own, called on its engine: an
HTTP server around it would add nothing to what is checked."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from helpers import domain as d
from sqlalchemy import select, update

from xwserver import users
from xwserver.db.engine import transaction
from xwserver.db.models import User
from xwserver.state import Server


async def _two_users(srv: Server) -> tuple[int, int]:
    """``POST /users`` twice, as admin: the ids of ``left`` and ``right``."""
    admin = await d.admin(srv)
    for login in ("left", "right"):
        with d.acting(admin):
            await users.add(srv, admin, {"login": login, "password": "a-long-password", "rights": "STANDARD"})
    async with srv.engine.connect() as conn:
        rows = dict(
            (await conn.execute(select(User.login, User.id).where(User.login.in_(["left", "right"])))).all()
        )
    return rows["left"], rows["right"]


async def test_two_transactions_that_deadlock_both_commit(
    domain: Server, caplog: pytest.LogCaptureFixture
) -> None:
    srv = domain
    if srv.backend == "sqlite":
        pytest.skip("SQLite takes its one write lock at BEGIN IMMEDIATE: two transactions never interleave")
    first_id, second_id = await _two_users(srv)
    both_hold_one = asyncio.Barrier(2)
    runs = {"a": 0, "b": 0}

    def crossing(name: str, one: int, other: int) -> Any:
        async def work(conn: Any) -> str:
            runs[name] += 1
            await conn.execute(update(User).where(User.id == one).values(email=f"{name}@one"))
            if runs[name] == 1:  # the first run of each waits for the other: a lock cycle
                await both_hold_one.wait()
            await conn.execute(update(User).where(User.id == other).values(email=f"{name}@other"))
            return name

        return work

    done = await asyncio.wait_for(
        asyncio.gather(
            transaction(srv.engine, crossing("a", first_id, second_id)),
            transaction(srv.engine, crossing("b", second_id, first_id)),
        ),
        timeout=60,
    )
    assert sorted(done) == ["a", "b"]
    # the database broke the cycle by failing one of them, which the helper ran again
    assert sorted(runs.values()) == [1, 2], runs
    async with srv.engine.connect() as conn:
        emails = set(
            (await conn.execute(select(User.email).where(User.id.in_([first_id, second_id])))).scalars()
        )
    assert emails <= {"a@one", "a@other", "b@one", "b@other"} and len(emails) == 2
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
