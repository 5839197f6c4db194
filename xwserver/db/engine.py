"""The database engine: one per server process, tuned per backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from xwcommon import defaults
from xwcommon.errors import Busy, ConfigError

from .direct import PgConnection, SQLiteConnection

T = TypeVar("T")

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: the newest migration: a database already there needs nothing of Alembic, whose import and
#: scripts cost a server start ~0.2 s of CPU (tests/unit/test_server_schema.py keeps it in
#: step with the scripts)
SCHEMA_REVISION = "0011"


def backend_of(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB)."""
    try:
        name = make_url(url).get_backend_name()
    except Exception as exc:  # sqlalchemy raises ArgumentError with no common root
        raise ConfigError(f"db.url: invalid database URL {url!r}: {exc}") from exc
    if name == "mariadb":
        return "mysql"
    if name not in {"sqlite", "postgresql", "mysql"}:
        raise ConfigError(f"db.url: unsupported database {name!r}; use sqlite, postgresql or mysql/mariadb")
    return name


registry.register("sqlite.xwsqlite", "xwserver.db.inloop_sqlite", "InLoopSQLiteDialect")


def create_engine(url: str, *, pool_size: int = 10, wait_s: float = defaults.DB_WAIT_S) -> AsyncEngine:
    """``wait_s``: longest a request waits for a connection; then :func:`transaction` answers
    503 (Busy) rather than keep a crowd of requests queued behind a saturated pool."""
    backend = backend_of(url)
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        parsed = make_url(url)
        path = parsed.database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if parsed.get_driver_name() == "aiosqlite":
            # same database, same SQL; statements run in the loop's thread (see inloop_sqlite)
            url = parsed.set(drivername="sqlite+xwsqlite").render_as_string(hide_password=False)
        # One connection: SQLite has one writer anyway, and queueing in the pool is far
        # cheaper than SQLITE_BUSY retries between connections of the same process.
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=wait_s, connect_args={"timeout": 5})
    else:
        # No ping before each use (a round trip per transaction): a connection the database
        # dropped fails its statement, is invalidated, and `transaction` runs the work again
        # on a fresh one.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_timeout=wait_s)
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        _tune_sqlite(engine)
    return engine


#: the SQLite connection's page cache, at most (KiB)
SQLITE_CACHE_KIB = 64 * 1024


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control from the driver so that BEGIN IMMEDIATE below is ours
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # checkpoints (and their fsync) run in a thread of their own: see WalCheckpointer
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute("PRAGMA foreign_keys=ON")
        # SQLite's default page cache is 2 MiB: past a few tens of thousands of jobs the hot
        # path's indexes (random UIDs) no longer fit and each statement reads pages back
        # from the OS. Pages are cached as they are read, up to this bound.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        # Short: with statements in the loop's thread, waiting on another process's lock
        # blocks the whole server (one server process per SQLite database is the rule).
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        # write lock at the start: no read-to-write upgrade deadlock with another process
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision.

    An empty database gets the models' schema at once, recorded at the newest revision, as
    Alembic's documentation advises ("Building an up to date database from scratch"): the
    scripts replayed one by one cost ``xwserver init`` half its time (SQLite rebuilds a table
    for each change). tests/unit/test_server_schema.py holds both ways to the same schema."""
    async with engine.begin() as conn:
        revision = await conn.run_sync(schema_revision)
        if revision == SCHEMA_REVISION:
            return
        if revision is None and await conn.run_sync(_empty):
            await conn.run_sync(create_schema)
            return
        await conn.run_sync(upgrade)


def upgrade(sync_conn: Connection, revision: str = "head") -> None:
    """Alembic's upgrade to ``revision``, on ``sync_conn``'s transaction."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def create_schema(sync_conn: Connection) -> None:
    """The models' tables on an empty database, and Alembic's record that it is at
    :data:`SCHEMA_REVISION` (the table Alembic itself makes, so its later upgrades go on)."""
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert

    from .models import Base

    Base.metadata.create_all(sync_conn)
    version = Table(
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(sync_conn)
    sync_conn.execute(insert(version).values(version_num=SCHEMA_REVISION))


def _empty(sync_conn: Connection) -> bool:
    from sqlalchemy import inspect

    return not inspect(sync_conn).get_table_names()


def schema_revision(sync_conn: Connection) -> str | None:
    """The revision Alembic recorded in the database; None for a database without one."""
    from sqlalchemy import inspect, text

    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    return sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


class WalCheckpointer:
    """Copies SQLite's write-ahead log into the database from a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses the threshold,
    which here is the event loop's thread (see inloop_sqlite): its fsync would stall
    every request. Instead the loop's connection never checkpoints and this thread,
    with its own connection, checkpoints PASSIVE-ly (never blocking the writer) every
    ``interval_s``, and TRUNCATE-s once at stop.
    """

    def __init__(self, path: str, interval_s: float = 1.0) -> None:
        import threading

        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xw-wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or locked: the next round will do it
                    log.debug("WAL checkpoint skipped: %s", exc)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.info("final WAL checkpoint skipped: %s", exc)
        finally:
            conn.close()


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


#: PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock detected
_PG_RETRY = frozenset({"40001", "40P01"})
#: MySQL/MariaDB error numbers worth a retry: deadlock, lock wait timeout
_MYSQL_RETRY = frozenset({1213, 1205})
#: attempts before a transaction that keeps losing is answered 503 (Busy)
TRANSACTION_ATTEMPTS = 6


def retryable(exc: BaseException) -> bool:
    """Whether the database refused a transaction only because of another one (run it again)."""
    if isinstance(exc, sqlite3.OperationalError):  # the hot path on SQLite runs on the driver
        return "database is locked" in str(exc)
    if isinstance(exc, PgRetry):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:  # the database dropped the connection (restarted, timed out)
        return True
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_RETRY:
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in _MYSQL_RETRY:
        return True
    # SQLite: another process holds the write lock beyond busy_timeout
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)


async def transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = TRANSACTION_ATTEMPTS,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    durable: bool = True,
) -> T:
    """Run ``work`` in one transaction; run it again when the database says a concurrent
    transaction won (deadlock, serialization failure, lock timeout), with a short jittered
    pause. ``work`` must have no effect outside the database before it returns. A
    transaction that keeps losing, or a pool with no free connection, is a 503 (Busy),
    never a 500: the server is busy, the request was fine.

    ``durable=False`` is for work that may be lost in a crash of the database without
    losing anything a user was told (a claim: its job would simply be PENDING again, and
    a worker's report on the lost task is refused as ``task_gone``): on PostgreSQL its
    commit then does not wait for the disk (synchronous_commit off), a flush less on the
    way from a submission to its assignment."""
    driver = engine.dialect.driver
    for attempt in range(1, attempts + 1):
        try:
            if driver == "xwsqlite":
                return await _sqlite_transaction(engine, work)
            if driver == "asyncpg":
                return await _pg_transaction(engine, work, durable=durable)
            async with engine.begin() as conn:
                return await work(conn)
        except (DBAPIError, sqlite3.OperationalError, PgRetry) as exc:
            if not retryable(exc):
                raise
            if attempt == attempts:
                log.warning("transaction lost %d times to concurrent ones: %s", attempts, exc)
                raise Busy("the database is busy; try again in a moment") from exc
            log.debug("transaction lost to a concurrent one (%s); attempt %d", exc, attempt + 1)
            await sleep(random.uniform(0, 0.005 * 2**attempt))
        except PoolTimeout as exc:
            raise Busy("every database connection is busy; try again in a moment") from exc
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection, as ``async with engine.connect()`` gives one, without its
    shielded close: ``asyncio.shield`` runs the close as a task of its own, so the caller
    holds the connection for a turn of the event loop more and resumes a turn later. With
    one SQLite connection and thousands of connected workers (a turn of the loop then takes
    milliseconds), those turns, not the statements, bounded the transactions per second:
    about 3.7 ms of hold per transaction measured with bench/fleet.py at 2,000 workers. The
    close itself never suspends, so nothing can cancel it half-way."""
    conn = await engine.connect()
    try:
        yield conn
    finally:
        await conn.close()


async def _sqlite_transaction(engine: AsyncEngine, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work`` in one transaction on the pool's SQLite connection, its statements run on
    the driver (:mod:`direct`); BEGIN IMMEDIATE takes the write lock at once."""
    async with connection(engine) as aconn:
        raw = await aconn.get_raw_connection()
        conn: sqlite3.Connection = raw.driver_connection._conn  # type: ignore[union-attr]
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = await work(SQLiteConnection(conn, engine.dialect))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result


def is_integrity_error(exc: BaseException) -> bool:
    """A constraint the database enforces refused a write (a foreign key, a unique key), as
    SQLAlchemy, sqlite3 or asyncpg (SQLSTATE class 23) raises it."""
    return isinstance(exc, (IntegrityError, sqlite3.IntegrityError)) or str(
        getattr(exc, "sqlstate", "")
    ).startswith("23")


class PgRetry(Exception):
    """Raised when a transaction run on asyncpg lost to another one or lost its connection."""


async def _pg_transaction(
    engine: AsyncEngine, work: Callable[[Any], Awaitable[T]], *, durable: bool = True
) -> T:
    """``work`` in one transaction on a pooled asyncpg connection, its statements run on the
    driver (:mod:`direct`). Deadlocks and serialization failures become :class:`PgRetry`
    (run again); a connection the database dropped is invalidated first."""
    import asyncpg

    async with engine.connect() as aconn:
        raw = await aconn.get_raw_connection()
        conn = raw.driver_connection
        try:
            async with conn.transaction():  # type: ignore[union-attr]
                if not durable:
                    await conn.execute("SET LOCAL synchronous_commit TO OFF")  # type: ignore[union-attr]
                return await work(PgConnection(conn, engine.dialect))
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) in _PG_RETRY:
                raise PgRetry(str(exc)) from exc
            raise
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError) as exc:
            await aconn.invalidate()
            raise PgRetry(f"the database connection was lost: {exc}") from exc
