"""Several server processes for one home, on one PostgreSQL database.

``server.processes=N`` makes ``xwserver console`` (and so ``start``) a supervisor of N
server processes that listen on the same address (``SO_REUSEPORT``: the kernel spreads
connections among them) and share the database. What makes that correct lives
elsewhere: claims lock rows with ``FOR UPDATE SKIP LOCKED`` (a job is never assigned
twice), caches of tokens, hosts and binaries live seconds at most, a long-polling work
request re-checks the database for jobs submitted through another process, and one
process at a time runs the background loops (:class:`Leader`). A process that dies is
started again; the supervisor's SIGTERM stops them all. SQLite serves one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

from xwcommon.errors import ConfigError

from .settings import ServerSettings

if TYPE_CHECKING:  # the launcher (xwserver start) checks its settings without the database's libraries
    from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

#: a process that dies is started again after this long (and no faster than this)
RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


def check(settings: ServerSettings) -> None:
    if settings.processes > 1 and settings.db_url.startswith("sqlite"):
        raise ConfigError(
            f"server.processes={settings.processes}: SQLite serves one process; "
            "use PostgreSQL (db.url=postgresql+asyncpg://...) for several"
        )


def die_with_parent() -> None:
    """A child process: SIGTERM when the supervisor dies (Linux), so no server outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before prctl
        os._exit(0)


def supervise(settings: ServerSettings, log_level: str) -> int:
    """Run ``settings.processes`` server processes until SIGTERM or SIGINT; start again any
    that dies meanwhile."""
    from .daemon import spec  # the detached console's command line, plus --child

    argv = [*spec(settings, log_level=log_level).argv, "--child"]
    from .metrics import prepare_multiprocess, process_dead

    prepare_multiprocess(settings.var_dir)  # one /metrics for all children (xwserver.metrics)
    stopping = False

    def stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[subprocess.Popen[bytes]] = []
    started: list[float] = []
    for _ in range(settings.processes):
        children.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
        started.append(time.monotonic())
    log.info("xwserver supervising %d processes: pids %s", len(children), [c.pid for c in children])
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            if time.monotonic() - started[i] < RESTART_DELAY_S:
                continue
            log.warning("server process %d ended (%s); starting it again", child.pid, code)
            process_dead(child.pid)
            children[i] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
            started[i] = time.monotonic()
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=40)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


# PostgreSQL advisory lock keys (any two constants of this project)
LEADER_KEY = 0x5857_4C44  # "XWLD"


class Leader:
    """Whether this process runs the background loops (reaper, collector, statistics).

    On PostgreSQL the leader holds a session advisory lock on a connection of its own; when
    its process dies the database ends the session and frees the lock, and another process
    takes it on its next round. Elsewhere (one process) this process always leads.
    """

    def __init__(self, engine: Any, backend: str) -> None:
        self._engine = engine
        self._backend = backend
        self._conn: AsyncConnection | None = None

    async def held(self) -> bool:
        if self._backend != "postgresql":
            return True
        from sqlalchemy import text

        try:
            if self._conn is not None:
                await self._conn.execute(text("SELECT 1"))  # still ours: the session is alive
                return True
            conn = await self._engine.connect()
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_KEY})).scalar()
            await conn.commit()
            if got:
                self._conn = conn
                log.info("this process runs the background loops (reaper, collector, statistics)")
                return True
            await conn.close()
            return False
        except Exception:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
