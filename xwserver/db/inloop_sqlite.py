"""SQLite for the async engine, run in the event loop's own thread.

aiosqlite sends every call (cursor, execute, fetch, close, commit) to a helper thread
and waits for the answer: about 50 µs a hop on the reference machine, so a claim of
five statements costs ~1.5 ms of waiting, and with SQLite's single writer those waits
are what limits the server (measured: ~100 jobs/s). A statement on our indexed tables
takes a few µs, so running it in the loop's thread is both faster and simpler; and a
transaction then runs from BEGIN to COMMIT without yielding to the loop, so two
transactions of this process never interleave.

The module has the shape SQLAlchemy's aiosqlite dialect expects of aiosqlite (async
methods on connection and cursor), and the dialect below plugs it in. The server uses
it for every ``sqlite+aiosqlite`` URL (see ``engine.create_engine``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from sqlite3 import (  # noqa: F401  (re-exported: the dialect copies them from this module)
    DatabaseError,
    Error,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    sqlite_version,
    sqlite_version_info,
)
from types import ModuleType
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_

__version__ = "1.0"


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> Cursor:
        """Used as ``async with conn.cursor()`` (SQLAlchemy enters it), as with aiosqlite."""
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return Cursor(self._conn.execute(sql, parameters))

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


async def connect(database: str, **kw: Any) -> Connection:
    kw.setdefault("check_same_thread", False)
    kw["isolation_level"] = None  # transactions are begun explicitly (BEGIN IMMEDIATE)
    return Connection(sqlite3.connect(database, **kw))


class _AdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    @property
    def isolation_level(self) -> str | None:
        level: str | None = self._connection.isolation_level
        return level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection._conn.isolation_level = value


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _AdaptedConnection:
        connection: Any = await_(connect(*arg, **kw))
        return _AdaptedConnection(self, connection)


class InLoopSQLiteDialect(SQLiteDialect_aiosqlite):
    """``sqlite+xwsqlite://``: the aiosqlite dialect over this module."""

    driver = "xwsqlite"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> _DBAPI:
        import sys

        module: ModuleType = sys.modules[__name__]
        return _DBAPI(module, sqlite3)
