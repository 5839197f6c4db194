"""A fresh database per test on the PostgreSQL and MariaDB servers the suite is given.

The servers come from ``XW_TEST_PG_URL`` and ``XW_TEST_MYSQL_URL`` (SQLAlchemy URLs whose
database is only used to connect as an administrator). Each test gets its own database
``xwt_<hex>`` created there with asyncpg or aiomysql directly, and dropped afterwards, so
tests running at the same time never see each other's rows.

A server that does not answer skips the test locally and fails it in CI (``CI=true``), so
CI never passes by skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
CONNECT_TIMEOUT_S = 5

#: the backends a test parametrized over databases runs on
BACKENDS = ("sqlite", "postgresql", "mariadb")


def pg_admin_url() -> URL:
    return make_url(os.environ.get("XW_TEST_PG_URL", DEFAULT_PG_URL))


def mysql_admin_url() -> URL:
    return make_url(os.environ.get("XW_TEST_MYSQL_URL", DEFAULT_MYSQL_URL))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(what: str, exc: BaseException) -> None:
    """Skip (locally) or fail (in CI) because a database server does not answer."""
    message = f"{what} does not answer ({type(exc).__name__}: {exc})"
    if in_ci():
        pytest.fail(message + "; CI needs it", pytrace=False)
    pytest.skip(message)


def new_name() -> str:
    return f"xwt_{secrets.token_hex(6)}"


# -- PostgreSQL --------------------------------------------------------------------------------------
async def _pg_execute(admin: URL, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 5432,
        user=admin.username or "postgres",
        password=admin.password,
        database=admin.database or "postgres",
        timeout=CONNECT_TIMEOUT_S,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgresql_database() -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL database; drop it afterwards."""
    import asyncpg

    admin = pg_admin_url()
    name = new_name()
    try:
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {admin.render_as_string(hide_password=True)}", exc)
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a killed server may have left connections behind
        asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- MariaDB -------------------------------------------------------------------------------------------
async def _mysql_execute(admin: URL, sql: str) -> None:
    import aiomysql

    conn: Any = await aiomysql.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 3306,
        user=admin.username or "root",
        password=admin.password or "",
        connect_timeout=CONNECT_TIMEOUT_S,
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
    finally:
        conn.close()


@contextmanager
def mariadb_database() -> Iterator[str]:
    """Yield the URL of a new, empty MariaDB database; drop it afterwards."""
    import aiomysql

    admin = mysql_admin_url()
    name = new_name()
    try:
        asyncio.run(
            _mysql_execute(admin, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    except (OSError, TimeoutError, aiomysql.OperationalError) as exc:
        unavailable(f"MariaDB at {admin.render_as_string(hide_password=True)}", exc)
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_mysql_execute(admin, f"DROP DATABASE IF EXISTS `{name}`"))


@contextmanager
def fresh_database(backend: str) -> Iterator[str | None]:
    """The ``--db`` URL to give ``xwserver init`` for ``backend``; None means its SQLite default."""
    if backend == "sqlite":
        yield None
    elif backend == "postgresql":
        with postgresql_database() as url:
            yield url
    elif backend == "mariadb":
        with mariadb_database() as url:
            yield url
    else:
        raise ValueError(f"unknown database backend {backend!r}")
