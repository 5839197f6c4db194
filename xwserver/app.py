"""The server process: the aiohttp application, the lease reaper, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import events, metrics
from .accesslog import AccessLogFile, access_logger_class
from .api.http import SERVER_KEY, auth_middleware, errors_middleware
from .api.routes import add_routes
from .collector import collector_loop
from .comparing import validator_loop
from .db.engine import WalCheckpointer, create_engine, migrate, sqlite_path
from .leases import grant_restart_grace, reaper_loop
from .planner import statistics_loop
from .settings import ServerSettings
from .state import Server
from .store import DataStore
from .web import install as install_dashboard

log = logging.getLogger(__name__)


MAX_HTTP_LINE_BYTES = 64 * 1024


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot even parse at ERROR with a traceback: that would
    let anyone fill the log. Such a request is the client's fault: one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = (
                f"{record.getMessage()}: malformed HTTP request ({type(exc).__name__}: {exc.message})"
            )
            record.args = None
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedRequestFilter())


def create_app(srv: Server) -> web.Application:
    events.ENABLED = srv.settings.events_record
    app = web.Application(
        middlewares=[metrics.middleware, errors_middleware, auth_middleware],
        client_max_size=srv.settings.max_json_bytes,
    )
    app[SERVER_KEY] = srv
    add_routes(app)
    metrics.install(app, srv)
    install_dashboard(app, srv)  # the web pages, at /

    async def background(_app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(reaper_loop(srv)),
            asyncio.create_task(collector_loop(srv)),
            asyncio.create_task(validator_loop(srv)),
            asyncio.create_task(events.settle_loop(srv)),
        ]
        if srv.backend == "postgresql":
            tasks.append(asyncio.create_task(statistics_loop(srv)))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wake_waiters(_app: web.Application) -> None:
        # long-polling work requests return at once so shutdown is not held up by them
        srv.notifier.closing = True
        srv.notifier.notify_all()

    async def checkpointer(_app: web.Application) -> AsyncIterator[None]:
        path = sqlite_path(srv.settings.db_url)
        if path is None:
            yield
            return
        wal = WalCheckpointer(path)
        wal.start()
        yield
        await asyncio.to_thread(wal.stop)

    app.cleanup_ctx.append(background)
    app.cleanup_ctx.append(checkpointer)
    app.on_shutdown.append(wake_waiters)
    return app


async def open_server(settings: ServerSettings) -> Server:
    engine = create_engine(settings.db_url, wait_s=settings.db_wait_s)
    await migrate(engine)
    srv = Server(settings, engine, DataStore(settings.data_dir))
    renewed = await grant_restart_grace(srv)
    if renewed:
        log.info("renewed the leases of %d running tasks after start", renewed)
    return srv


#: what asyncio's TLS transport reads ciphertext into, at most, per socket read. asyncio
#: gives every connection a buffer of its own (256 KiB, zero-filled, so every page is
#: resident): with thousands of volunteers connected that was most of the server's memory
#: (about 310 KiB per connected worker, measured with bench/fleet.py).
TLS_READ_BUFFER_BYTES = 64 * 1024


def _shared_tls_read_buffer() -> None:
    """One TLS read buffer for every connection of a thread's event loop instead of one each.

    On the selector event loop a socket read is synchronous from end to end: the transport
    asks the protocol for a buffer, ``recv_into`` fills it and ``buffer_updated`` copies
    the bytes into the connection's own BIO before anything else runs on the loop. So one
    buffer serves all connections; measured with 2,000 idle kept-alive TLS connections, a
    connection then costs about 28 KiB of server memory instead of 45 KiB with a 16 KiB
    buffer each, or 61 KiB with a 32 KiB one. The proactor loop (Windows) keeps a read
    pending on the buffer across loop turns: there each connection keeps its own.
    """
    import asyncio.sslproto
    import sys

    cls: Any = asyncio.sslproto.SSLProtocol
    if sys.platform == "win32" or getattr(cls, "_xw_shared_buffer", False):
        return
    if not hasattr(cls, "get_buffer") or not hasattr(cls, "buffer_updated"):
        return  # an asyncio whose TLS protocol reads otherwise: nothing to share
    # what asyncio's __init__ allocates (and zero-fills) for the buffer replaced at once:
    # 1 byte, not a buffer's worth for every new connection (a reconnecting fleet's cost)
    cls.max_size = 1
    # one buffer per thread, not per process: each event loop reads in its own thread, and
    # a process may run several (a client in a thread of its own beside the server, as the
    # tests do): two loops sharing one buffer corrupted TLS records ("bad record mac")
    local = threading.local()
    original_init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.max_size = TLS_READ_BUFFER_BYTES
        buffers = getattr(local, "buffers", None)
        if buffers is None:
            shared = bytearray(TLS_READ_BUFFER_BYTES)
            buffers = local.buffers = (shared, memoryview(shared))
        self._ssl_buffer, self._ssl_buffer_view = buffers

    cls.__init__ = __init__
    cls._xw_shared_buffer = True


#: how often the C heap's free pages are handed back to the system (glibc only)
TRIM_INTERVAL_S = 2.0


def _libc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (macOS, musl).

    TLS connections allocate their OpenSSL state and record buffers from the C heap, and
    free them when they close or go idle. glibc keeps what was freed inside its heap, so a
    fleet's reconnections left the server's memory at its peak for good (739 MiB of C heap,
    most of it free, after 10,000 simulated workers: bench/fleet.py). ``malloc_trim``
    returns the free pages to the system (it also releases whole free pages in the middle
    of the heap, not just at its top)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


async def _trim_c_heap(trim: Callable[[], object]) -> None:
    while True:
        await asyncio.sleep(TRIM_INTERVAL_S)
        trim()


#: connections the kernel completes and queues for the server to accept. Beyond, it drops
#: new connections' SYNs and their clients retry with backoff: the backpressure of a server
#: that is busy. A larger queue let a reconnecting fleet of 10,000 simulated workers in at
#: once and the server ran out of file descriptors (bench/fleet.py).
LISTEN_BACKLOG = 1024


#: at stop, how long in-flight requests may take to finish before their connections are cut
SHUTDOWN_TIMEOUT_S = 30.0


async def serve(
    settings: ServerSettings,
    *,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); in-flight requests finish before exit, within
    ``shutdown_timeout_s``.

    ``reuse_port``: one of several processes on the same address (xwserver.processes)."""
    from .keystore import server_ssl_context

    _shared_tls_read_buffer()
    srv = await open_server(settings)
    from .users import dummy_hash

    await asyncio.to_thread(dummy_hash)  # before any login: the first unknown one is not slower
    app = create_app(srv)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    access_log = AccessLogFile(settings.log_dir / "access.log")
    runner = web.AppRunner(
        app,
        access_log=log,
        access_log_class=access_logger_class(access_log),
        shutdown_timeout=shutdown_timeout_s,
        handle_signals=False,
        # room for long query strings, so that our handlers (not the HTTP parser) refuse
        # an over-long name with a JSON error that says which field
        max_line_size=MAX_HTTP_LINE_BYTES,
        max_field_size=MAX_HTTP_LINE_BYTES,
    )
    flusher = asyncio.create_task(access_log.run())
    trim = _libc_trim()
    trimmer = asyncio.create_task(_trim_c_heap(trim)) if trim else None
    await runner.setup()
    site = web.TCPSite(
        runner,
        host=settings.listen or settings.host,
        port=settings.port,
        ssl_context=server_ssl_context(settings.keystore_dir),
        backlog=LISTEN_BACKLOG,
        reuse_address=True,
        reuse_port=reuse_port or None,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        log.info("xwserver listening on %s (database %s)", settings.url, srv.backend)
        await stop.wait()
        log.info("xwserver stopping: finishing in-flight requests")
    finally:
        await runner.cleanup()
        if trimmer is not None:
            trimmer.cancel()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await srv.leader.close()
        await srv.engine.dispose()
        log.info("xwserver stopped")
