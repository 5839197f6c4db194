"""The hot path's transactions run straight on the driver's connection (SQLite, PostgreSQL).

The hot path (work requests, heartbeats, reports, the reaper) is written once, as
prebuilt SQLAlchemy Core statements (:mod:`xwserver.lifecycle`, :mod:`xwserver.hot`).
SQLAlchemy's execution path (execution context, parameter processing, result proxies, a
greenlet switch per call) cost several times the SQL itself: measured under
``bench/dispatch.py`` on SQLite, where a statement takes a few µs (see
:mod:`inloop_sqlite`), more than half of the server's time. Here each statement is
compiled once by SQLAlchemy's own compiler for the database and then run on the driver's
connection (``sqlite3``, ``asyncpg``): same SQL, a fraction of the cost. MariaDB's
transactions still go through SQLAlchemy.

Only what the hot path uses is supported: execute and executemany of compiled Core
statements, ``IN`` lists given as expanding parameters, and results read by ``all()``,
``first()``, ``scalars()``, iteration and ``rowcount``. Rows are tuples with the
statement's column names as attributes. Both databases take and return the values the
hot path uses (integers, floats, text, NULL) unchanged, so no type processing is needed;
SQLite gives booleans back as 0 or 1. On PostgreSQL an ``IN`` list is sent as one array
(``= ANY($n)``), so a statement is prepared once whatever the list's length.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert

#: compiled statements kept at most (the hot path has a few dozen)
_CACHE_MAX = 1000
_EXPANDING = re.compile(r"\(__\[POSTCOMPILE_(\w+)\]\)")


@dataclass(frozen=True)
class _Compiled:
    """One statement's SQL, split around its expanding parameters."""

    #: the SQL text between expanding parameters (len(pieces) == len(expanding) + 1)
    pieces: tuple[str, ...]
    expanding: tuple[str, ...]
    #: parameter names in order of their placeholders (an expanding one stands for its list)
    order: tuple[str, ...]
    #: values of the parameters the statement carries itself (literals, guard statuses)
    fixed: Mapping[str, Any]
    returns_rows: bool

    def sql(self, lengths: Sequence[int]) -> str:
        if not self.expanding:
            return self.pieces[0]
        out = [self.pieces[0]]
        for n, piece in zip(lengths, self.pieces[1:], strict=True):
            # an empty list matches nothing, as SQLAlchemy renders it
            out.append("(" + (", ".join("?" * n) if n else "SELECT NULL WHERE 1 != 1") + ")")
            out.append(piece)
        return "".join(out)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values: list[Any] = []
        for name in self.order:
            value = params[name] if name in params else self.fixed[name]
            if name in self.expanding:
                values.extend(value)
            else:
                values.append(value)
        return values


class Result:
    """What the hot path reads of a result: rows, their first column, a count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def scalar_one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise ValueError(f"one row at most was expected, {len(self._rows)} came")
        return self._rows[0][0] if self._rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


_row_types: dict[tuple[str, ...], type] = {}


def _row_type(description: Sequence[Sequence[Any]]) -> type:
    names = tuple(d[0] for d in description)
    cls = _row_types.get(names)
    if cls is None:
        cls = _row_types[names] = collections.namedtuple("Row", names, rename=True)
    return cls


class _DirectConnection:
    """What both drivers share: statements compiled once (by statement and inserted keys),
    execute and executemany dispatched to the driver's ``_run`` and ``_run_many``."""

    #: compiled statements of this driver, by (statement, inserted column keys)
    _cache: dict[tuple[ClauseElement, tuple[str, ...]], Any]

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect

    @property
    def dialect(self) -> Dialect:
        """The database's dialect, as an AsyncConnection's."""
        return self._dialect

    def _compiled(self, stmt: ClauseElement, keys: tuple[str, ...]) -> Any:
        key = (stmt, keys)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > _CACHE_MAX:  # only prebuilt statements belong here: a safety net
                self._cache.clear()
            compiled = stmt.compile(dialect=self._dialect, column_keys=list(keys) or None)
            hit = self._cache[key] = self._build(compiled, _returns_rows(stmt))
        return hit

    def _build(self, compiled: Any, returns_rows: bool) -> Any:
        raise NotImplementedError

    async def execute(
        self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> Result:
        if isinstance(params, Sequence):  # executemany
            if not params:
                return Result([], 0)
            compiled = self._compiled(stmt, tuple(params[0]) if isinstance(stmt, Insert) else ())
            if compiled.returns_rows:
                # neither driver returns rows from executemany: one row at a time (a handful here)
                rows: list[Any] = []
                for one in params:
                    rows += (await self._run(compiled, one)).all()
                return Result(rows, len(rows))
            return await self._run_many(compiled, params)
        keys = tuple(params) if isinstance(stmt, Insert) and params else ()
        return await self._run(self._compiled(stmt, keys), params or {})

    async def _run(self, compiled: Any, params: Mapping[str, Any]) -> Result:
        raise NotImplementedError

    async def _run_many(self, compiled: Any, params: Sequence[Mapping[str, Any]]) -> Result:
        raise NotImplementedError

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """``INSERT INTO table (columns)`` of ``rows``, tuples in the columns' order: for the
        hottest appends (the event history), without a dict per row."""
        raise NotImplementedError


def _fixed(compiled: Any, names: Iterable[str]) -> dict[str, Any]:
    """The values of the parameters a statement carries itself (literals, guard statuses)."""
    wanted = set(names)
    return {
        name: bind.value for name, bind in compiled.binds.items() if name in wanted and bind.callable is None
    }


def _returns_rows(stmt: ClauseElement) -> bool:
    return bool(getattr(stmt, "is_select", False) or getattr(stmt, "_returning", ()))


class SQLiteConnection(_DirectConnection):
    """Runs Core statements on one ``sqlite3`` connection, inside the caller's transaction."""

    _cache: dict[tuple[ClauseElement, tuple[str, ...]], Any] = {}

    def _build(self, compiled: Any, returns_rows: bool) -> _Compiled:
        order = tuple(compiled.positiontup or ())
        return _Compiled(
            tuple(_EXPANDING.split(compiled.string)[::2]),
            tuple(_EXPANDING.findall(compiled.string)),
            order,
            _fixed(compiled, order),
            returns_rows,
        )

    async def _run(self, compiled: _Compiled, params: Mapping[str, Any]) -> Result:
        sql = compiled.sql([len(params[name]) for name in compiled.expanding])
        cursor = self._conn.execute(sql, compiled.args(params))
        if cursor.description is None:
            return Result([], cursor.rowcount)
        row = _row_type(cursor.description)
        rows = [row(*r) for r in cursor.fetchall()]
        return Result(rows, cursor.rowcount)

    async def _run_many(self, compiled: _Compiled, params: Sequence[Mapping[str, Any]]) -> Result:
        sql = compiled.sql([len(params[0][name]) for name in compiled.expanding])
        cursor = self._conn.executemany(sql, [compiled.args(p) for p in params])
        return Result([], cursor.rowcount)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        places = ", ".join("?" * len(columns))
        self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({places})", rows)


_PG_TOKEN = re.compile(r"\$\d+|IN \(__\[POSTCOMPILE_(\w+)\]\)")


@dataclass(frozen=True)
class _PgCompiled:
    sql: str
    #: parameter names in the order of $1, $2, ...
    order: tuple[str, ...]
    fixed: Mapping[str, Any]
    returns_rows: bool

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.fixed[name] for name in self.order]


class PgConnection(_DirectConnection):
    """Runs Core statements on one ``asyncpg`` connection, inside the caller's transaction."""

    _cache: dict[tuple[ClauseElement, tuple[str, ...]], Any] = {}

    def _build(self, compiled: Any, returns_rows: bool) -> _PgCompiled:
        names = list(compiled.positiontup or ())
        expanding = set(re.findall(r"__\[POSTCOMPILE_(\w+)\]", compiled.string))
        # $k is the k-th name that is not an expanding one (a name used twice has one $k)
        numbered = [n for n in names if n not in expanding]
        order: list[str] = []

        def renumber(m: re.Match[str]) -> str:
            name = m.group(1) or numbered[int(m.group(0)[1:]) - 1]
            if name not in order:
                order.append(name)
            n = order.index(name) + 1
            return f"= ANY(${n})" if m.group(1) else f"${n}"

        sql = _PG_TOKEN.sub(renumber, compiled.string)
        return _PgCompiled(sql, tuple(order), _fixed(compiled, names), returns_rows)

    async def _run_many(self, compiled: _PgCompiled, params: Sequence[Mapping[str, Any]]) -> Result:
        await self._conn.executemany(compiled.sql, [compiled.args(p) for p in params])
        return Result([], len(params))

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        places = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        await self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({places})", rows)

    async def _run(self, compiled: _PgCompiled, params: Mapping[str, Any]) -> Result:
        args = compiled.args(params)
        if not compiled.returns_rows:
            status = await self._conn.execute(compiled.sql, *args)
            tail = status.rsplit(" ", 1)[-1]
            return Result([], int(tail) if tail.isdigit() else -1)
        records = await self._conn.fetch(compiled.sql, *args)
        if not records:
            return Result([], 0)
        row = _row_type([(k,) for k in records[0].keys()])  # noqa: SIM118 (a Record iterates its values)
        return Result([row(*r.values()) for r in records], len(records))
