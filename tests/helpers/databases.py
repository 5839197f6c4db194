"""A fresh database per test on the PostgreSQL and MariaDB servers the suite is given: the one
place the suite makes databases.

The servers come from ``XW_TEST_PG_URL`` and ``XW_TEST_MYSQL_URL`` (SQLAlchemy URLs whose
database is only used to connect as an administrator). Each test gets its own database
``xwt_<hex>`` created there with asyncpg or aiomysql directly, and dropped afterwards, so
tests running at the same time never see each other's rows.

- :func:`fresh_database` an empty one, that ``xwserver init --db URL`` migrates as users'
  deployments do (the end-to-end tier);
- :func:`migrated_database` one that holds the schema already, copied from a template
  migrated once per test session (:class:`Templates`): the in-process servers of the domain
  and contract tiers, for which migrating a database costs more than the test. On PostgreSQL
  and MariaDB a database whose test ended is emptied back to the template's state (no row,
  identities restarted) and handed to the next test of the same process, which costs a tenth
  of making and dropping one (PostgreSQL ~0.4 s, MariaDB ~0.9 s a test); one that cannot be
  emptied so (another table set, a connection that will not go) is dropped as before.

A server that does not answer skips the test locally and fails it in CI (``CI=true``), so
CI never passes by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
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


# -- databases holding the schema, copied from templates ------------------------------------------------
def _engine(url: str) -> Any:
    from xwserver.db.engine import create_engine

    return create_engine(url)


async def _migrate(engine: Any) -> None:
    """Migrate as a server does (``xwserver.db.engine.migrate``)."""
    from xwserver.db.engine import migrate as server_migrate

    await server_migrate(engine)


class Templates:
    """Databases migrated once per test session, of which each test gets a fresh copy.

    Migrating a new database costs more than a test (PostgreSQL ~0.4 s), so each backend is
    migrated once, by ``xwserver.db.engine.migrate`` as a server does, and every test's
    database ``xwu_<hex>`` is created from it: ``CREATE DATABASE … TEMPLATE`` on PostgreSQL,
    the template's own ``SHOW CREATE TABLE`` statements on MariaDB, a file copy on SQLite.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite_file: Path | None = None
        self.pg: str | None = None
        self.mysql: str | None = None
        self.mysql_tables: list[tuple[str, str]] = []  # (name, CREATE TABLE statement)
        #: the template's tables (PostgreSQL), and whether its tables but alembic_version are
        #: empty: only then is emptying a database the same as copying the template
        self.pg_tables: list[str] = []
        self.recyclable = {"postgresql": False, "mariadb": False}
        #: databases of tests that ended, emptied back to the template's state, for the next test
        self.spare: dict[str, list[str]] = {"postgresql": [], "mariadb": []}

    async def sqlite(self) -> Path:
        if self.sqlite_file is None:
            path = self.folder / "template.db"
            engine = _engine(f"sqlite+aiosqlite:///{path}")
            try:
                await _migrate(engine)
            finally:
                await engine.dispose()
            self.sqlite_file = path
        return self.sqlite_file

    async def drop(self) -> None:
        if self.pg:
            conn = await _pg_admin()
            try:
                for name in [*self.spare["postgresql"], self.pg]:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
        if self.mysql:
            for name in [*self.spare["mariadb"], self.mysql]:
                await _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")
        self.spare = {"postgresql": [], "mariadb": []}


async def _pg_admin() -> Any:
    import asyncpg

    admin = pg_admin_url()
    return await asyncpg.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 5432,
        user=admin.username,
        password=admin.password,
        database=admin.database or "postgres",
        timeout=5,
    )


async def _mysql_admin(*statements: str, database: str | None = None) -> list[tuple[Any, ...]]:
    """Run statements on the MariaDB admin connection; the rows of the last one."""
    import aiomysql

    admin = mysql_admin_url()
    conn = await aiomysql.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 3306,
        user=admin.username or "root",
        password=admin.password or "",
        db=database,
        connect_timeout=5,
    )
    try:
        async with conn.cursor() as cur:
            for sql in statements:
                await cur.execute(sql)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def _migrated(url: str) -> None:
    engine = _engine(url)
    try:
        await _migrate(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def migrated_database(backend: str, home: Path, templates: Templates) -> AsyncIterator[str]:
    """Yield the SQLAlchemy URL of a new database of ``backend`` holding the schema (a copy of
    ``templates``' template; SQLite: ``home/var/xwserver.db``); drop it afterwards."""
    name = f"xwu_{secrets.token_hex(6)}"
    if backend == "sqlite":
        db = home / "var" / "xwserver.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(await templates.sqlite(), db)
        yield f"sqlite+aiosqlite:///{db}"
        return
    if backend == "postgresql":
        import asyncpg

        admin = pg_admin_url()
        try:
            conn = await _pg_admin()
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            unavailable(f"PostgreSQL at {admin.render_as_string(hide_password=True)}", exc)
        try:
            if templates.pg is None:
                template = f"xwu_template_{secrets.token_hex(6)}"
                await conn.execute(f'CREATE DATABASE "{template}"')
                templates.pg = template
                await _migrated(_with_database(admin, template))
                templates.pg_tables, templates.recyclable[backend] = await _pg_template_tables(template)
            if templates.spare[backend]:
                name = templates.spare[backend].pop()
            else:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{templates.pg}"')
        finally:
            await conn.close()
        try:
            yield _with_database(admin, name)
        finally:
            if templates.recyclable[backend] and await _pg_emptied(name, templates.pg_tables):
                templates.spare[backend].append(name)
            else:
                conn = await _pg_admin()
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    await conn.close()
        return
    if backend == "mariadb":
        import aiomysql

        admin = mysql_admin_url()
        try:
            if templates.mysql is None:
                template = f"xwu_template_{secrets.token_hex(6)}"
                await _mysql_admin(f"CREATE DATABASE `{template}`")
                templates.mysql = template
                await _migrated(_with_database(admin, template))
                tables = await _mysql_admin("SHOW TABLES", database=template)
                for (table,) in tables:
                    [(_, ddl)] = await _mysql_admin(f"SHOW CREATE TABLE `{table}`", database=template)
                    templates.mysql_tables.append((table, ddl))
                templates.recyclable[backend] = await _mysql_template_empty(
                    template, [t for t, _ in templates.mysql_tables]
                )
            spare = templates.spare[backend].pop() if templates.spare[backend] else None
            if spare is None:
                await _mysql_admin(f"CREATE DATABASE `{name}`")
            else:
                name = spare
        except (OSError, TimeoutError, aiomysql.OperationalError) as exc:
            unavailable(f"MariaDB at {admin.render_as_string(hide_password=True)}", exc)
        try:
            if spare is None:
                await _mysql_admin(
                    "SET foreign_key_checks = 0",
                    *(ddl for _table, ddl in templates.mysql_tables),
                    f"INSERT INTO alembic_version SELECT * FROM `{templates.mysql}`.alembic_version",
                    "COMMIT",
                    database=name,
                )
            yield _with_database(admin, name)
        finally:
            names = [t for t, _ in templates.mysql_tables]
            assert templates.mysql is not None
            if templates.recyclable[backend] and await _mysql_emptied(name, templates.mysql, names):
                templates.spare[backend].append(name)
            else:
                await _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")
        return
    raise ValueError(backend)


def _with_database(admin: URL, name: str) -> str:
    return admin.set(database=name).render_as_string(hide_password=False)


# -- emptying a test's database back to the template's state ----------------------------------------
#: the one table a migrated template holds rows in
VERSION_TABLE = "alembic_version"


async def _pg_connect(database: str) -> Any:
    import asyncpg

    admin = pg_admin_url()
    return await asyncpg.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 5432,
        user=admin.username,
        password=admin.password,
        database=database,
        timeout=CONNECT_TIMEOUT_S,
    )


async def _pg_template_tables(template: str) -> tuple[list[str], bool]:
    """The template's tables, and whether all but the version table are empty."""
    conn = await _pg_connect(template)
    try:
        tables = sorted(
            r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        rows = 0
        for table in tables:
            if table != VERSION_TABLE:
                rows += int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
        return tables, rows == 0
    finally:
        await conn.close()


async def _pg_emptied(name: str, tables: list[str]) -> bool:
    """Empty ``name`` back to the template's state: every row but the version's deleted, every
    sequence restarted. False (the caller drops it) when its tables are not the template's or
    anything fails."""
    try:
        conn = await _pg_connect(name)
    except Exception:
        return False
    try:
        # a connection the test left behind would hold locks (a killed server's, say)
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await conn.execute("SET lock_timeout = '5s'")
        found = sorted(
            r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        if found != tables:
            return False
        async with conn.transaction():
            # the foreign keys' triggers are off for this session only, so the order is free
            await conn.execute("SET LOCAL session_replication_role = replica")
            for table in tables:
                if table != VERSION_TABLE:
                    await conn.execute(f'DELETE FROM "{table}"')
            used = await conn.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL"
            )
            for (sequence,) in used:
                await conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
        return True
    except Exception:
        return False
    finally:
        await conn.close()


async def _mysql_template_empty(template: str, tables: list[str]) -> bool:
    rows = 0
    for table in tables:
        if table != VERSION_TABLE:
            [(count,)] = await _mysql_admin(f"SELECT count(*) FROM `{table}`", database=template)
            rows += int(count)
    return rows == 0


async def _mysql_emptied(name: str, template: str, tables: list[str]) -> bool:
    """Empty ``name`` back to the template's state: every row but the version's deleted, every
    auto-increment counter back at 1. False (the caller drops it) when its tables or version are
    not the template's or anything fails."""
    try:
        for (pid,) in await _mysql_admin(
            f"SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{name}' AND ID <> CONNECTION_ID()"
        ):
            with contextlib.suppress(Exception):
                await _mysql_admin(f"KILL {int(pid)}")
        found = sorted(t for (t,) in await _mysql_admin("SHOW TABLES", database=name))
        if found != sorted(tables):
            return False
        version = f"SELECT version_num FROM {VERSION_TABLE} ORDER BY version_num"
        if await _mysql_admin(version, database=name) != await _mysql_admin(version, database=template):
            return False
        counted = await _mysql_admin(
            "SELECT TABLE_NAME FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = '{name}' AND AUTO_INCREMENT > 1"
        )
        await _mysql_admin(
            "SET SESSION lock_wait_timeout = 5",
            "SET SESSION innodb_lock_wait_timeout = 5",
            "SET foreign_key_checks = 0",
            *(f"DELETE FROM `{table}`" for table in tables if table != VERSION_TABLE),
            "COMMIT",
            *(f"ALTER TABLE `{table}` AUTO_INCREMENT = 1" for (table,) in counted),
            database=name,
        )
        return True
    except Exception:
        return False
