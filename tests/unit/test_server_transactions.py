"""The transaction helper: a deadlock or a lost race is run again, never answered 500. On
PostgreSQL and MariaDB (SQLite never interleaves two transactions), its one test stays there as
a smoke test of a running server; tests/unit/test_domain_transactions.py holds the same deadlock
on every database through the server's functions."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from xwserver.db.engine import transaction
from xwserver.db.models import User

if TYPE_CHECKING:
    from conftest import XW


async def _two_users(xw: XW) -> tuple[int, int]:
    for login in ("left", "right"):
        await xw.ok(
            "POST",
            "/users",
            token=xw.admin,
            json={"login": login, "password": "a-long-password", "rights": "STANDARD"},
        )
    async with xw.srv.engine.connect() as conn:
        rows = dict(
            (await conn.execute(select(User.login, User.id).where(User.login.in_(["left", "right"])))).all()
        )
    return rows["left"], rows["right"]


@pytest.mark.every_database
async def test_two_transactions_that_deadlock_both_commit(xw: XW) -> None:
    if xw.srv.backend == "sqlite":
        pytest.skip("SQLite takes its one write lock at BEGIN IMMEDIATE: two transactions never interleave")
    first_id, second_id = await _two_users(xw)
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
            transaction(xw.srv.engine, crossing("a", first_id, second_id)),
            transaction(xw.srv.engine, crossing("b", second_id, first_id)),
        ),
        timeout=60,
    )
    assert sorted(done) == ["a", "b"]
    # the database broke the cycle by failing one of them, which the helper ran again
    assert sorted(runs.values()) == [1, 2], runs
    async with xw.srv.engine.connect() as conn:
        emails = set(
            (await conn.execute(select(User.email).where(User.id.in_([first_id, second_id])))).scalars()
        )
    assert emails <= {"a@one", "a@other", "b@one", "b@other"} and len(emails) == 2
    await xw.assert_healthy()
