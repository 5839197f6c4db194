"""The worker's pull loop: register, ask for work, run it, heartbeat, deliver results.

Three kinds of coroutines share one :class:`Worker`:

- the pull loop keeps up to ``workpool.size`` tasks running, asking the server for as many
  assignments as there are free slots (a long-poll, so an idle worker hears of a new job
  at once without polling storms);
- the heartbeat loop tells the server every ``heartbeat_interval_s`` which tasks still run
  (that extends their leases) and cancels those the server says are no longer live;
- one task coroutine per assignment: download (cache), run (executor), upload a result too
  big to ride in its report, and put the report in the outbox.

Everything said to the server is a message of :mod:`xwcommon.protocol.work`. Reports ride on
the next work request (one call per finished task instead of two), which then does not wait
on the server, so its answer acknowledges them at once; a report that would wait behind a
long-poll already in flight, or behind a loop that asks for no work now (not computing,
backing off, stopping), goes alone to ``/work/tasks/{uid}/report``. A report leaves the
outbox only when the server acknowledged or refused it: a failed request leaves it there to
be sent again, and a finished result is never given up while the server is merely unreachable.

Exact leases: every work request names the tasks this worker holds (``held``: running,
preparing, suspended, or reported and not acknowledged yet, besides those reported in it)
and every heartbeat names them too with the highest assignment ``seq`` received, so the
server releases at once any task it believes this host holds and the worker does not know
of (an answer lost with a dying server, a predecessor killed on this machine).

No single error ends the worker: it is logged and the loop backs off multiplicatively to
a cap, resetting on success. Only a server whose certificate is not from the deployment CA
(:class:`TLSError`) is fatal: the worker never talks to it again and exits. A host an
administrator disabled (``host_disabled``) stops its tasks, which the server gave to other
workers, and keeps asking, backing off, until it is enabled again. A host the server does
not know (``host_unknown``) registers again; a task that is not this worker's any more
(``task_gone``) is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import logging
import os
import random
import re
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psutil

from xwcommon import defaults
from xwcommon.errors import (
    AuthenticationError,
    BadRequest,
    Busy,
    ConfigError,
    Conflict,
    Forbidden,
    HostDisabled,
    HostUnknown,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    ServerUnreachable,
    TaskGone,
    TLSError,
    TooManyRequests,
    XWError,
)
from xwcommon.protocol import UID_PATTERN
from xwcommon.protocol.work import (
    Accounting,
    Activation,
    Assignment,
    DataRef,
    Heartbeat,
    HeartbeatAnswer,
    InlineResult,
    Registered,
    Release,
    Released,
    Report,
    ReportAnswer,
    ReportOutcome,
    ResultStored,
    TaskReport,
    WorkAnswer,
    WorkRequest,
)
from xwcommon.status import TaskStatus
from xwcommon.transport import Transport

from .activation import ActivationPolicy, load_policy
from .cache import DownloadCache
from .executor import Executor, LocalRunner, Outcome, Runner
from .host import describe_host, disk_free_bytes
from .hostlogin import HostKeyFile, HostTransport
from .settings import WorkerSettings
from .statedir import (
    StateLock,
    Undertaker,
    claim_folder,
    host_key_path,
    kill_leftover_jobs,
    make_private_dir,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a heartbeat goes out after the interval times a random factor between 1 - this and 1
HEARTBEAT_JITTER = 0.2


def heartbeat_wait_s(interval_s: float) -> float:
    """How long until the next heartbeat: the interval, less up to HEARTBEAT_JITTER of it (a
    lease is renewed a little more often than the interval, never less)."""
    return interval_s * (1.0 - HEARTBEAT_JITTER * random.random())


#: time limit of one small JSON call (register, heartbeat, report, release)
JSON_TIMEOUT_S = 60.0
#: a long-poll work request may take this much longer than the wait it asked for
LONG_POLL_MARGIN_S = 30.0
#: how long a stopping worker waits for an in-flight work request (the server hands
#: back what it claims for a request whose worker went away, so this can be short)
LATE_POLL_WAIT_S = 1.0
#: on stop, how long the worker tries to hand unfinished tasks back
RELEASE_TIMEOUT_S = 10.0
#: how many times a delivery is retried on server-side errors other than unreachability
DELIVERY_ATTEMPTS = 10
#: how often (seconds) the worker looks for its pause file, whatever the policy's interval
PAUSE_CHECK_S = 1.0
#: a task's changes reach the state file within this delay, several in one write (each
#: write costs a file creation and a rename: a share of a short job's overhead)
STATE_WRITE_DELAY_S = 0.2
#: the longest activation detail sent to the server
ACTIVATION_DETAIL_MAX = 200
#: after failing over to another server of ``dispatcher.servers``, the worker tries the
#: first one again about this long after (jittered, so that a fleet comes back spread out)
FAIL_BACK_S = 120.0
#: HTTP status of a server whose store is full: the worker waits and says why
INSUFFICIENT_STORAGE = 507

#: errors that mean the server no longer counts this task as ours: ``task_gone``, and the
#: generic codes an older server answers with (a disabled host is told apart first)
_NOT_OURS = (TaskGone, Conflict, NotFound, Forbidden)
#: the same, as the error codes of a report's outcome in a work answer
_NOT_OURS_CODES = frozenset({TaskGone.code, Conflict.code, NotFound.code, Forbidden.code})

_UID = re.compile(UID_PATTERN)


def _transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed unchanged later (the server is down, busy or broken)."""
    if isinstance(exc, ServerUnreachable | TooManyRequests | Busy | TimeoutError):
        return True
    return isinstance(exc, XWError) and (exc.http_status >= 500 or isinstance(exc, IntegrityError))


class _FetchFailed(Exception):
    """Raised when a task's binary or input cannot be had; the task ends in ERROR."""


class Phase(enum.StrEnum):
    PREPARING = "preparing"
    RUNNING = "running"
    #: uploading a result too big to ride in its report
    DELIVERING = "delivering"
    #: its report is in the outbox: the slot is free, the task still held until acknowledged
    REPORTING = "reporting"


@dataclass
class TaskRun:
    """One assignment in this worker, from its arrival to its report."""

    assignment: Assignment
    task: asyncio.Task[None] | None = None
    phase: Phase = Phase.PREPARING
    cancelled_by_server: bool = False
    #: monotonic times of its arrival and of the server's acknowledgement of its report
    assigned_at: float = field(default_factory=time.monotonic)
    reported_at: float | None = None
    #: monotonic time the activation policy suspended it (running or waiting to start)
    suspended_at: float | None = None
    #: suspended past ``max_suspend_s``: killed and handed back to the server
    handed_back: bool = False

    @property
    def uid(self) -> str:
        return self.assignment.task_uid


@dataclass
class Delivery:
    """A finished task's report in the outbox, until the server acknowledges or refuses it."""

    run: TaskRun
    outcome: Outcome
    #: without ``task_uid``: the single-report call names the task in its path
    report: Report
    #: in a call now (riding on a work request, or alone): not to be put in another meanwhile
    sending: bool = False
    #: a work request carrying it failed for a reason no retry fixes: it goes alone from now on
    alone: bool = False

    @property
    def uid(self) -> str:
        return self.run.uid

    def riding(self) -> TaskReport:
        """The report as a work request carries it (naming its task)."""
        return TaskReport(**{**msgspec.structs.asdict(self.report), "task_uid": self.uid})


@dataclass
class Backoff:
    """Multiplicative back-off to a cap; :meth:`reset` after a success."""

    start_s: float = defaults.BACKOFF_START_S
    cap_s: float = defaults.BACKOFF_CAP_S
    _next_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next_s = self.start_s

    def next(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.start_s


def make_transport(
    settings: WorkerSettings, host_uid: Callable[[], str | None] = lambda: None
) -> HostTransport:
    """The worker's transport: it never stops retrying an unreachable server, and logs in as
    the host ``host_uid()`` names with the host credential kept in the state folder."""
    try:
        return _transport(settings, host_uid)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"ca.file: {settings.ca_file} is not a usable PEM certificate ({exc.reason})"
        ) from exc


def _transport(settings: WorkerSettings, host_uid: Callable[[], str | None]) -> HostTransport:
    return HostTransport(
        settings.servers,
        settings.ca_file,
        settings.login,
        settings.password,
        key_file=HostKeyFile(host_key_path(settings.tmpdir)),
        host_uid=host_uid,
        retry_for_s=None,
        # JSON calls pass their own timeouts; for file transfers this limits silence, not duration
        request_timeout_s=settings.transfer_timeout_s,
        connections=2 * settings.workpool_size + 4,
        # a fleet cut off from its server together must not come back together
        jitter=_jittered,
        fail_back_s=FAIL_BACK_S,
    )


def _jittered(delay_s: float) -> float:
    """``delay_s`` ±50%, at random."""
    return delay_s * random.uniform(0.5, 1.5)


class Worker:
    """A volunteer worker bound to one deployment; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        transport: Transport | None = None,
        runner: Runner | None = None,
        policy: ActivationPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        on_task_end: Callable[[TaskRun, Outcome], None] | None = None,
        state_lock: StateLock | None = None,
    ) -> None:
        self.settings = settings
        #: called after a task's report was acknowledged (benchmarks read its timings)
        self.on_task_end = on_task_end
        self._owns_transport = transport is None
        self.transport = (
            transport if transport is not None else make_transport(settings, lambda: self.host_uid)
        )
        #: why the first registration has not succeeded yet: the state file says it, so that
        #: ``xwworker start`` need not wait to report a server that does not answer
        self.unreachable: str | None = None
        if self._owns_transport:
            self.transport.on_unreachable = self._unreachable
        self.executor = Executor(
            settings.tmpdir,
            runner or LocalRunner(),
            kill_grace_s=settings.kill_grace_s,
            limits=settings.limits,
            signing_key=settings.signing_key,
        )
        self.cache = DownloadCache(settings.cache_dir, self.transport, url_ca_file=settings.data_ca_file)
        self.policy = policy if policy is not None else load_policy(settings)
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff or Backoff()
        #: the state folder's lock; ``xwworker console`` takes it before it writes its pid file
        self._lock = state_lock if state_lock is not None else StateLock(settings.tmpdir)
        #: kills what the jobs left if this process dies, where the runner cannot see to it
        self._undertaker = (
            None if self.executor.runner.dies_with_parent else Undertaker(settings.tmpdir, settings.tasks_dir)
        )
        self.host_uid: str | None = None
        self.lease_s = defaults.LEASE_S
        self.heartbeat_interval_s = settings.heartbeat_interval_s or defaults.HEARTBEAT_INTERVAL_S
        #: tasks that take a slot: preparing, running (or suspended), uploading their result
        self.tasks: dict[str, TaskRun] = {}
        #: finished tasks whose reports the server has not acknowledged yet
        self.outbox: dict[str, Delivery] = {}
        #: the highest assignment ``seq`` received (heartbeats say it); None before any
        self.seen_seq: int | None = None
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._slot_freed = asyncio.Event()
        #: the last work answer's "come back after" (no room to wait on the server)
        self._come_back_s: float | None = None
        #: the pull loop sends a work request as soon as a slot is free: a report put in the
        #: outbox now rides on it instead of going alone
        self._request_soon = False
        self._register_lock = asyncio.Lock()
        self._fatal: BaseException | None = None
        self.registered_at: float | None = None
        #: the work request in flight, if any; its result is the assignments it brought
        self._poll: asyncio.Future[list[Any]] | None = None
        #: counters for logs and tests
        self.completed = 0
        self.failed = 0
        self.released = 0
        #: the server refuses this host's calls until an administrator enables it again
        self.disabled = False
        self._disabled_since = 0.0
        #: set when a call finds the host enabled again: it ends the pull loop's back-off
        self._enabled = asyncio.Event()
        #: the activation policy (and ``xwworker pause``) lets this machine compute now
        self.active = True
        self.activation_since = time.time()
        self._active = asyncio.Event()
        self._active.set()
        self._paused = False
        self._policy_allows = True
        self._policy_asked_at: float | None = None
        #: set to send a heartbeat at once (the activation state changed)
        self._beat_now = asyncio.Event()
        #: when the work request out now was sent (monotonic); None: none is out
        self._polling_since: float | None = None
        #: fire-and-forget calls (hand-backs) kept referenced until they end
        self._background: set[asyncio.Future[Any]] = set()
        #: reports sent alone, in flight
        self._reporting: set[asyncio.Future[None]] = set()
        #: every task coroutine until its end (its scratch folder removed)
        self._task_coros: set[asyncio.Task[None]] = set()
        #: the state file's write that tasks' changes asked for, pending
        self._state_write: asyncio.TimerHandle | None = None
        #: the state file is removed: nothing writes it again
        self._state_ended = False

    def _unreachable(self, why: str) -> None:
        if self.registered_at is None and self.unreachable is None and not self._state_ended:
            self.unreachable = why
            self._write_state()

    # -- control -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop gracefully (a second call skips the grace period); safe from a signal handler."""
        if self._stopping.is_set():
            log.info("stop requested again: killing running tasks now")
            self._hurry.set()
        else:
            log.info("stop requested: asking for no more work")
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.critical("fatal: %s", exc)
        self._stopping.set()
        self._hurry.set()

    def held(self, *, besides: Collection[str] = ()) -> list[str]:
        """Every task this worker holds: preparing, running, suspended, uploading, or reported
        and not acknowledged yet; but ``besides``."""
        return [uid for uid in (*self.tasks, *self.outbox) if uid not in besides]

    # -- main ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Register, work until stopped, hand back what is unfinished; raise a fatal error.

        :class:`ConfigError` at once when another worker process uses the same ``path.tmpdir``.
        """
        try:
            await asyncio.to_thread(self._lock.acquire)
            try:
                if self._undertaker is not None:
                    await asyncio.to_thread(self._undertaker.start)
                await self._run_locked()
            finally:
                self._state_ended = True
                if self._state_write is not None:
                    self._state_write.cancel()
                    self._state_write = None
                with contextlib.suppress(OSError):
                    self.settings.state_file.unlink()
                if self._undertaker is not None:
                    # while the lock is held: it is told this was no death (STOPPED) and leaves
                    await asyncio.to_thread(self._undertaker.stop)
                self._lock.release()
        finally:
            self.policy.close()
            if self._owns_transport:
                await self.transport.close()
        if self._fatal is not None:
            raise self._fatal
        log.info(
            "worker stopped: %d completed, %d failed, %d handed back",
            self.completed,
            self.failed,
            self.released,
        )

    async def _run_locked(self) -> None:
        await asyncio.to_thread(self._prepare_dirs)
        self._log_policy()
        if not await self._until_stopped(self._register_first()):
            log.info("stopped before registering")
            return
        pull = asyncio.create_task(self._pull_loop(), name="xwworker-pull")
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="xwworker-heartbeat")
        activation = asyncio.create_task(self._activation_loop(), name="xwworker-activation")
        stop = asyncio.create_task(self._stopping.wait())
        loops = (pull, heartbeat, activation)
        done, _ = await asyncio.wait({*loops, stop}, return_when=asyncio.FIRST_COMPLETED)
        for loop_task in loops:
            if loop_task in done and not loop_task.cancelled() and loop_task.exception() is not None:
                self._fail(loop_task.exception() or RuntimeError("loop ended"))
        await _cancel(pull)
        await _cancel(activation)
        # suspended jobs must run on, to finish within the grace period or die on SIGTERM
        self._set_active(True, "stopping", quiet=not self.tasks)
        await self._drain()
        await _cancel(heartbeat)
        await _cancel(stop)

    def _log_policy(self) -> None:
        policy = self.policy
        if policy.unavailable:
            log.warning("activation policy %s: %s", policy.describe(), policy.unavailable)
        else:
            log.info("activation policy: %s", policy.describe())
        if self.settings.pause_file.exists():
            log.warning(
                "paused by its owner (%s exists); `xwworker resume` to compute", self.settings.pause_file
            )
        self.check_activation()

    async def _until_stopped(self, coro: Awaitable[Any]) -> bool:
        """Run ``coro`` unless a stop comes first; True if it ran to its end."""
        work = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(stop)
            if not work.done():
                await _cancel(work)
        if work.cancelled():
            return False
        work.result()  # raises what registration raised
        return True

    def _prepare_dirs(self) -> None:
        s = self.settings
        make_private_dir(s.tmpdir)
        claim_folder(s.tmpdir, s.deployment)
        try:
            # this process holds the folder's lock: jobs still running there were started by an
            # earlier worker, and their tasks were handed to others when it registered again
            kill_leftover_jobs(s.tasks_dir)
            # scratch dirs and results left by an earlier run belong to tasks whose leases are gone
            for leftover in (s.tasks_dir, s.results_dir):
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise ConfigError(f"path.tmpdir: cannot use {s.tmpdir}: {exc.strerror or exc}") from exc
        for d in (s.cache_dir, s.tasks_dir, s.results_dir):
            make_private_dir(d)  # other people's inputs and jobs' files: the owner's eyes only

    # -- registration --------------------------------------------------------------------------
    async def _register_first(self) -> None:
        """Register, retrying forever, except on errors no retry can fix."""
        self.host_uid = await asyncio.to_thread(self._read_host_uid)
        while True:
            try:
                await self._register()
                return
            except (TLSError, ConfigError):
                raise
            except HostDisabled as exc:
                await self._wait_while_disabled(exc)
            except (NotFound, Forbidden) as exc:
                if self.host_uid is None:
                    if isinstance(exc, Forbidden):
                        raise Forbidden(
                            f"the server refused this identity as a worker: {exc.message}"
                        ) from exc
                    raise
                # the kept host uid is unknown to this server or belongs to another identity
                log.warning(
                    "cannot register again as host %s (%s); registering anew", self.host_uid, exc.message
                )
                self.host_uid = None
            except AuthenticationError as exc:
                raise AuthenticationError(
                    f"the server refused login {self.settings.login!r}: {exc.message}; "
                    f"check login and password in {self.settings.config_file or 'the worker config'}"
                ) from exc
            except (XWError, ValueError) as exc:
                delay = self._backoff.next()
                log.warning("registration failed (%s); retrying in %.1fs", _describe(exc), delay)
                await self._sleep(delay)

    async def _register(self) -> None:
        described = await asyncio.to_thread(describe_host, self.settings)
        # held: what this process holds (nothing after a restart): the server releases the
        # host's other tasks at once, those of a predecessor killed on this machine
        registration = msgspec.structs.replace(
            described, activation=self.activation(), host_uid=self.host_uid, held=self.held()
        )
        answer = Registered.from_wire(
            await self.transport.request(
                "POST", "/work/register", json=registration.to_wire(), timeout_s=JSON_TIMEOUT_S
            )
        )
        self.host_uid = answer.host_uid
        with contextlib.suppress(OSError):
            self.settings.host_file.write_text(self.host_uid + "\n", encoding="ascii")
        if answer.host_key and isinstance(self.transport, HostTransport):
            self.transport.keep(answer.host_key)  # the next logins need no password
        self.lease_s = answer.lease_s or self.lease_s
        if self.settings.heartbeat_interval_s is None and answer.heartbeat_interval_s:
            self.heartbeat_interval_s = answer.heartbeat_interval_s
        self._backoff.reset()
        self.registered_at = time.time()
        self._write_state()
        log.info(
            "registered at %s as host %s (%s); lease %gs, heartbeat every %gs",
            self.transport.server,
            self.host_uid,
            answer.name or registration.name,
            self.lease_s,
            self.heartbeat_interval_s,
        )
        if answer.released:
            log.info("the server released %d task(s) this host no longer holds", answer.released)

    async def _reregister(self, seen_host_uid: str | None) -> None:
        """The server forgot this host (``host_unknown``): register again, once for all callers."""
        async with self._register_lock:
            if self.host_uid != seen_host_uid:
                return  # another coroutine did it meanwhile
            log.warning("server does not know host %s any more; registering again", self.host_uid)
            try:
                await self._register()
            except HostDisabled:
                raise  # a disabled host must not come back as a new one
            except (NotFound, Forbidden):
                self.host_uid = None
                await self._register()

    def _read_host_uid(self) -> str | None:
        """The host uid kept in the state folder; None when there is none or it is not a uid."""
        path = self.settings.host_file
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if text and not _UID.match(text):
            log.warning("ignoring %s: %.40r is not a host uid", path, text)
            return None
        return text or None

    # -- pulling work --------------------------------------------------------------------------
    async def _pull_loop(self) -> None:
        size = self.settings.workpool_size
        while not self.stopping:
            if self.host_uid is None:  # a registration again failed earlier
                self._send_alone()
                await self._guarded(self._reregister(None), "registering again")
                continue
            if not self.active:
                self._send_alone()  # reports do not wait for the machine to compute again
                await self._until_stopped(self._active.wait())
                continue
            free = size - len(self.tasks)
            if free <= 0:
                self._slot_freed.clear()
                self._request_soon = True
                try:
                    await self._slot_freed.wait()
                finally:
                    self._request_soon = False
                continue
            host_uid = self.host_uid
            asked_at = time.monotonic()
            # The request runs as its own task and survives a stop: the server may hand it
            # jobs after we stopped listening, and only a worker that still reads the answer
            # can give them back (see _drain).
            self._request_soon = True
            poll = self._poll = asyncio.ensure_future(self._exchange(host_uid, free))
            try:
                assignments = await asyncio.shield(poll)
            except asyncio.CancelledError:
                raise  # stopping: self._poll stays for _drain, which reads its answer
            except Exception as exc:
                self._poll = None
                if isinstance(exc, TLSError):
                    raise
                if isinstance(exc, HostDisabled):
                    await self._wait_while_disabled(exc)
                    continue
                if isinstance(exc, NotFound):  # host_unknown (an older server: not_found)
                    await self._guarded(self._reregister(host_uid), "registering again")
                    continue
                delay = self._backoff.next()
                log.warning(
                    "work request failed (%s); retrying in %.1fs",
                    _describe(exc),
                    delay,
                    exc_info=not isinstance(exc, XWError),
                )
                await self._sleep(delay)
                continue
            finally:
                self._request_soon = False
            self._poll = None
            self._backoff.reset()
            self._enabled_again(asked_at)
            for body in assignments:
                self._saw(body)
            if not self.active:
                # asked while the policy allowed computing; it no longer does: hand them back
                # at once rather than keep them waiting here (withdrawing the request instead
                # could lose an answer already on its way)
                uids = _task_uids(assignments)
                if uids:
                    log.info("%d task(s) arrived after computing stopped; handing them back", len(uids))
                    await self._release(uids)
                continue
            for body in assignments:
                self._accept(body)
            come_back, self._come_back_s = self._come_back_s, None
            if come_back and not assignments:
                # the server had no room to keep this request waiting: ask again when it
                # said (reports go alone meanwhile, as while a long-poll is out)
                log.info("the server is full; asking for work again in %.1fs", come_back)
                await self._until_stopped(self._sleep(come_back))

    async def _exchange(self, host_uid: str, capacity: int) -> list[Any]:
        """One work request: the outbox's reports, the tasks held, room for ``capacity``.

        Returns the assignments as sent (each checked on its own by :meth:`_accept`)."""
        # two reads of the kernel's figures (/proc/meminfo, statvfs), some 40 µs: cheaper here
        # than a hop to a thread, which would delay every report riding on this request
        free_memory, free_disk = self._free_resources()
        # from here to the request's sending nothing awaits: the outbox taken and the tasks
        # named are one consistent picture
        carried = {uid: d for uid, d in self.outbox.items() if not d.sending and not d.alone}
        self._request_soon = False
        for d in carried.values():
            d.sending = True
        request = WorkRequest(
            host_uid=host_uid,
            capacity=capacity,
            # a request carrying reports does not wait: its answer acknowledges them
            # nor does one from a host seen disabled: its answer says at once if it is enabled again
            wait_s=0.0 if carried or self.disabled else self.settings.work_request_wait_s,
            reports=[d.riding() for d in carried.values()],
            held=self.held(besides=carried),
            # the server only assigns jobs whose declared needs fit in these
            free_memory_bytes=free_memory,
            free_disk_bytes=free_disk,
            network=self.settings.sandbox_network,
        )
        self._polling_since = time.monotonic()
        try:
            answer = await self.transport.request(
                "POST", "/work/request", json=request.to_wire(), timeout_s=request.wait_s + LONG_POLL_MARGIN_S
            )
            assignments, work = _parse_work_answer(answer)
        except BaseException as exc:
            # never lost: they stay in the outbox for the next request (or alone, when this
            # request was refused for a reason that one of them may be)
            for d in carried.values():
                d.sending = False
            if isinstance(exc, XWError) and not _transient(exc) and not _host_error(exc):
                for d in carried.values():
                    d.alone = True
                self._send_alone(carried.values())
            raise
        finally:
            self._polling_since = None
        self._come_back_s = work.retry_after_s
        self._stop_cancelled(work.cancel)
        if work.released:
            log.info("the server released %d task(s) this host no longer holds", work.released)
        self._reported(carried, work.reported)
        return assignments

    def _reported(self, carried: dict[str, Delivery], outcomes: list[ReportOutcome]) -> None:
        """Act on the server's word on each report a work request carried."""
        by_uid = {o.task_uid: o for o in outcomes}
        for uid, d in carried.items():
            d.sending = False
            outcome = by_uid.get(uid)
            if outcome is None:
                # not a word on it (an older server?): it goes alone, never lost
                log.warning("task %s: the server did not answer its report; sending it alone", uid)
                d.alone = True
                self._send_alone([d])
            elif outcome.error is None:
                self._acknowledged(d, outcome.job_status)
            elif outcome.error in _NOT_OURS_CODES:
                self._drop(d, f"the server no longer counts it as ours ({outcome.error}: {outcome.message})")
            else:
                self._drop(d, f"report refused ({outcome.error}: {outcome.message})", level=logging.ERROR)

    def _free_resources(self) -> tuple[int, int]:
        """Free memory and disk for new jobs: what the machine has free now, less what the jobs
        accepted but not started yet declared they need (they have not taken it yet)."""
        waiting = [r.assignment for r in self.tasks.values() if r.phase is Phase.PREPARING]
        memory = int(psutil.virtual_memory().available) - sum(a.min_memory_bytes for a in waiting)
        disk = disk_free_bytes(self.settings.tmpdir) - sum(a.min_disk_bytes for a in waiting)
        return max(0, memory), max(0, disk)

    def _lacks(self, a: Assignment) -> str | None:
        """Why this machine cannot take ``a`` now (its declared needs), or None."""
        if not (a.min_memory_bytes or a.min_disk_bytes or a.needs_network):
            return None
        if a.needs_network and not self.settings.sandbox_network:
            return "its app needs the network and sandbox.network is off here"
        free_memory, free_disk = self._free_resources()
        if a.min_memory_bytes > free_memory:
            return f"it needs {a.min_memory_bytes} bytes of memory and {free_memory} are free"
        if a.min_disk_bytes > free_disk:
            return f"it needs {a.min_disk_bytes} bytes of disk and {free_disk} are free"
        return None

    def _saw(self, body: Any) -> None:
        """Count an assignment as received (heartbeats say the highest ``seq`` seen)."""
        seq = body.get("seq") if isinstance(body, dict) else None
        if (
            isinstance(seq, int)
            and not isinstance(seq, bool)
            and (self.seen_seq is None or seq > self.seen_seq)
        ):
            self.seen_seq = seq

    def _accept(self, body: Any) -> None:
        try:
            assignment = Assignment.from_wire(body)
        except BadRequest as exc:
            # nothing to run nor to report on: the next work request does not name it, so
            # the server releases it
            log.error("ignoring a malformed assignment: %s", _describe(exc))
            return
        if assignment.task_uid in self.tasks or assignment.task_uid in self.outbox:
            log.warning("task %s assigned twice; ignoring the second", assignment.task_uid)
            return
        if (lack := self._lacks(assignment)) is not None:
            # the server filters on what we declared free; this catches what changed since
            log.warning(
                "task %s: cannot take job %s: %s; handing it back",
                assignment.task_uid,
                assignment.job_uid,
                lack,
            )
            self._in_background(self._release([assignment.task_uid]))
            return
        run = TaskRun(assignment)
        run.task = asyncio.create_task(self._run_task(run), name=f"xwworker-task-{assignment.task_uid}")
        self.tasks[run.uid] = run
        self._task_coros.add(run.task)
        run.task.add_done_callback(lambda t, uid=run.uid: self._task_done(uid, t))  # type: ignore[misc]
        self._state_changed()
        log.info(
            "task %s: job %s (%s %s)",
            run.uid,
            assignment.job_uid,
            assignment.app_name,
            " ".join(assignment.args),
        )

    def _task_done(self, uid: str, task: asyncio.Task[None]) -> None:
        self._task_coros.discard(task)
        if self.tasks.pop(uid, None) is not None:
            self._slot_freed.set()
            if not self.stopping:
                self._state_changed()
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, TLSError):
            self._fail(exc)
        elif exc is not None:
            log.error("task %s: unexpected error: %s", uid, exc, exc_info=exc)

    def _in_background(self, call: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(call)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    # -- activation ----------------------------------------------------------------------------
    async def _activation_loop(self) -> None:
        """Follow the policy: suspend jobs when it says no, resume them when it says yes, and
        hand back a job suspended longer than ``max_suspend_s``."""
        while True:
            self.check_activation()
            await self._sleep(min(self.policy.check_interval_s, PAUSE_CHECK_S))

    def check_activation(self) -> bool:
        """Ask the policy (when its interval is due) and the pause file; act on a change."""
        now = self._clock()
        mono = time.monotonic()
        if self._policy_asked_at is None or mono - self._policy_asked_at >= self.policy.check_interval_s:
            # the worker's own tree (itself, bubblewrap, its jobs) is not the owner's load
            self.policy.set_job_pids([os.getpid()])
            self._policy_allows = self.policy.allows(now)
            self._policy_asked_at = mono
        self._paused = self.settings.pause_file.exists()
        allowed = self._policy_allows and not self._paused
        if allowed != self.active:
            reason = "paused by its owner (xwworker pause)" if self._paused else self.policy.describe()
            self._set_active(allowed, reason)
        if not self.active:
            self._hand_back_oversuspended(mono)
        return self.active

    def _set_active(self, active: bool, reason: str, *, quiet: bool = False) -> None:
        """Suspend or resume the jobs; ``quiet``: no warning (a stopping worker with no job)."""
        if active == self.active:
            return
        self.active = active
        self.activation_since = time.time()
        mono = time.monotonic()
        if active:
            self._active.set()
            resumed = 0
            for run in self.tasks.values():
                run.suspended_at = None
                resumed += self.executor.resume(run.uid)
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "activation: computing again (%s); %d job(s) resumed",
                reason,
                resumed,
            )
        else:
            self._active.clear()
            suspended = 0
            for run in self.tasks.values():
                if run.suspended_at is None and run.phase is not Phase.DELIVERING:
                    run.suspended_at = mono
                    suspended += self.executor.suspend(run.uid)
            log.warning(
                "activation: not computing (%s); %d job(s) suspended, asking for no work", reason, suspended
            )
        self._write_state()
        if self.host_uid is not None and not self.stopping:
            self._beat_now.set()

    def _hand_back_oversuspended(self, mono: float) -> None:
        limit_s = self.settings.max_suspend_s
        for run in list(self.tasks.values()):
            if run.handed_back or run.suspended_at is None or mono - run.suspended_at <= limit_s:
                continue
            run.handed_back = True
            log.warning(
                "task %s: suspended for more than max_suspend_s=%gs; handing it back to the server",
                run.uid,
                limit_s,
            )
            self._in_background(self._hand_back(run))

    async def _hand_back(self, run: TaskRun) -> None:
        if run.task is not None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        await self._release([run.uid])

    async def _until_active(self, run: TaskRun) -> None:
        """Wait before starting a job while the machine may not compute."""
        if self.active:
            return
        if run.suspended_at is None:
            run.suspended_at = time.monotonic()
        log.info("task %s: waiting for the activation policy to allow computing", run.uid)
        await self._active.wait()

    def activation(self) -> Activation:
        """What heartbeats and registrations say of the activation policy."""
        if self._paused:
            detail = "paused by its owner (xwworker pause)"
        else:
            detail = self.policy.describe()
        # the server refuses a detail it cannot show (a heartbeat must never fail on it)
        detail = "".join(c if c.isprintable() else " " for c in detail[:ACTIVATION_DETAIL_MAX])
        return Activation(state="active" if self.active else "suspended", detail=detail)

    # -- heartbeats ----------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            # the interval, or less when the activation state changed (the server shows it).
            # Jittered (HEARTBEAT_JITTER) so that a fleet started together, or sent back
            # together by a server restart, does not keep beating in the same second.
            # Not wait_for: on Python 3.11 it swallows a cancel that lands as the event is set
            beat = asyncio.ensure_future(self._beat_now.wait())
            try:
                await asyncio.wait({beat}, timeout=heartbeat_wait_s(self.heartbeat_interval_s))
            finally:
                beat.cancel()
            forced = self._beat_now.is_set()
            self._beat_now.clear()
            if not forced and self._long_poll_beats():
                self._write_state()  # the status file stays fresh all the same
                continue
            try:
                await self.heartbeat()
            except TLSError:
                raise
            except Exception:
                log.exception("heartbeat failed")

    def _long_poll_beats(self) -> bool:
        """Whether the work request out now does the heartbeat's work: the worker holds no
        task (nothing to renew, nothing the server could cancel) and the server saw the host
        when it took the request in. So an idle worker waiting for work holds one connection,
        not a second one for heartbeats. A worker holding tasks keeps beating: a long-poll's
        answer comes only when it ends, and an aborted job must stop within a heartbeat
        interval. Only for half a lease after the request was sent: one out longer (queued,
        a long ``wait_s``) may not have been taken in yet."""
        since = self._polling_since
        return (
            since is not None
            and not self.tasks
            and not self.outbox
            and time.monotonic() - since < self.lease_s / 2
        )

    async def heartbeat(self) -> None:
        """One heartbeat: extend the leases of all the tasks held; stop those the server cancelled."""
        host_uid = self.host_uid
        if host_uid is None:
            return  # registering again; the next beat goes to the new identity
        beat = Heartbeat(
            host_uid=host_uid, task_uids=self.held(), seen_seq=self.seen_seq, activation=self.activation()
        )
        asked_at = time.monotonic()
        try:
            answer = HeartbeatAnswer.from_wire(
                await self.transport.request(
                    "POST", "/work/heartbeat", json=beat.to_wire(), timeout_s=JSON_TIMEOUT_S
                )
            )
        except TLSError:
            raise
        except HostDisabled as exc:
            self._disabled_by_server(exc)
            return
        except NotFound:  # host_unknown (an older server: not_found)
            await self._guarded(self._reregister(host_uid), "registering again")
            return
        except XWError as exc:
            log.warning("heartbeat failed (%s)", _describe(exc))
            return
        self.lease_s = answer.lease_s or self.lease_s
        if answer.released:
            log.info("the server released %d task(s) this host no longer holds", answer.released)
        self._enabled_again(asked_at)
        self._write_state()
        self._stop_cancelled(answer.cancel)

    def _stop_cancelled(self, uids: Collection[str]) -> None:
        """Stop the tasks the server no longer counts as live (a heartbeat's or a work
        request's ``cancel``): no report, no hand-back."""
        for uid in uids:
            run = self.tasks.get(uid)
            if run is not None and run.task is not None and not run.task.done():
                log.info("task %s: the server cancelled it (%s); stopping it", uid, run.phase)
                run.cancelled_by_server = True
                run.task.cancel()
            elif (d := self.outbox.get(uid)) is not None and not d.sending:
                self._drop(d, "the server cancelled it")

    def _disabled_by_server(self, exc: XWError) -> None:
        """An administrator disabled this host: the server handed its tasks to other workers,
        so stop them (no report, no hand-back) and keep asking until it is enabled again."""
        if not self.disabled:
            self.disabled = True
            self._disabled_since = time.monotonic()
            log.warning(
                "host %s is disabled on the server (%s); stopping its %d task(s), which the server "
                "gave to other workers, and asking again until it is enabled",
                self.host_uid,
                exc.message,
                len(self.tasks) + len(self.outbox),
            )
        current = asyncio.current_task()
        for run in list(self.tasks.values()):
            if run.task is not None and run.task is not current and not run.task.done():
                run.cancelled_by_server = True
                run.task.cancel()
        for d in list(self.outbox.values()):
            if not d.sending:
                self._drop(d, "its host is disabled", level=logging.DEBUG)

    def _enabled_again(self, asked_at: float) -> None:
        """A call sent at ``asked_at`` (monotonic) succeeded: if it was sent after the host was
        seen disabled, it is enabled again (a long-poll sent before proves nothing)."""
        if self.disabled and asked_at > self._disabled_since:
            self.disabled = False
            self._enabled.set()
            log.warning("host %s is enabled again; asking for work", self.host_uid)

    async def _wait_while_disabled(self, exc: XWError) -> None:
        """Back off while disabled; a heartbeat that finds the host enabled again ends the wait
        (the back-off grows to half a minute: the host would stay idle that long once enabled)."""
        self._disabled_by_server(exc)
        self._enabled.clear()
        sleep = asyncio.ensure_future(self._sleep(self._backoff.next()))
        enabled = asyncio.ensure_future(self._enabled.wait())
        try:
            await asyncio.wait({sleep, enabled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(sleep)
            await _cancel(enabled)

    def _state_changed(self) -> None:
        """A task's change for the state file: written within ``STATE_WRITE_DELAY_S``, with
        whatever else changed meanwhile (the file is for ``xwworker status``, not for us)."""
        if self._state_write is None and not self._state_ended:
            self._state_write = asyncio.get_running_loop().call_later(
                STATE_WRITE_DELAY_S, self._write_state_now
            )

    def _write_state_now(self) -> None:
        self._state_write = None
        self._write_state()

    def _write_state(self) -> None:
        """Leave a small JSON file for ``xwworker status`` (best effort)."""
        tasks = {
            uid: "suspended" if run.suspended_at is not None else run.phase.value
            for uid, run in self.tasks.items()
        }
        tasks.update({uid: Phase.REPORTING.value for uid in self.outbox})
        state = {
            "pid": os.getpid(),
            # a host uid kept from an earlier run is not a registration yet (xwworker start)
            "host_uid": self.host_uid if self.registered_at is not None else None,
            "server": self.transport.server,
            "registered_at": self.registered_at,
            "updated_at": time.time(),
            "tasks": tasks,
            "activation": self.activation().to_wire(),
            "workpool_size": self.settings.workpool_size,
        }
        if self.registered_at is None and self.unreachable:
            state["unreachable"] = self.unreachable
        path = self.settings.state_file
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot write %s: %s", path, exc)

    async def _guarded(self, call: Awaitable[None], what: str) -> None:
        """Await ``call``; log and back off on any error but TLSError."""
        try:
            await call
        except TLSError:
            raise
        except Exception as exc:
            delay = self._backoff.next()
            log.warning(
                "%s failed (%s); retrying in %.1fs",
                what,
                _describe(exc),
                delay,
                exc_info=not isinstance(exc, XWError),
            )
            await self._sleep(delay)

    # -- one task ------------------------------------------------------------------------------
    async def _run_task(self, run: TaskRun) -> None:
        a = run.assignment
        try:
            outcome = await self._execute(run)
            run.phase = Phase.DELIVERING
            report = await self._report_of(a, outcome)
            if report is not None:
                self._queue_report(Delivery(run, outcome, report))
        except asyncio.CancelledError:
            if run.handed_back:
                why = "suspended too long, handed back"
            else:
                why = "cancelled by the server" if run.cancelled_by_server else "stopped"
            log.info("task %s: %s while %s", a.task_uid, why, run.phase)
            self.executor.cleanup(a.task_uid)
            raise
        except TLSError:
            self.executor.cleanup(a.task_uid)
            raise
        except Exception:
            # a fault of this worker, not of the job: hand the job back rather than fail it
            log.exception("task %s: unexpected worker error; handing the task back", a.task_uid)
            self.executor.cleanup(a.task_uid)
            await self._release([a.task_uid])
            return
        await asyncio.to_thread(self.executor.cleanup, a.task_uid)

    async def _execute(self, run: TaskRun) -> Outcome:
        a = run.assignment
        try:
            binary = await self._fetch(a.binary, "binary")
            stdin = await self._fetch(a.stdin, "stdin") if a.stdin else None
            env = await self._fetch(a.env, "env") if a.env else None
        except _FetchFailed as exc:
            return Outcome(TaskStatus.ERROR, None, str(exc))
        await self._until_active(run)
        run.phase = Phase.RUNNING
        return await self.executor.run(a, binary, stdin=stdin, env_archive=env)

    async def _fetch(self, ref: DataRef, what: str) -> Path:
        try:
            return await self.cache.fetch(ref)
        except TLSError:
            raise
        except (XWError, OSError) as exc:
            if isinstance(exc, HostDisabled):
                self._disabled_by_server(exc)
                message = f"cannot get the {what} (data {ref.data_uid}): {_describe(exc)}"
            elif isinstance(exc, Forbidden):
                # this worker may not read that input: no retry can fix that, the job fails
                message = f"may not read the {what} (data {ref.data_uid}): {exc.message}"
            else:
                message = f"cannot get the {what} (data {ref.data_uid}): {_describe(exc)}"
            log.warning("%s", message)
            raise _FetchFailed(message) from exc

    async def _report_of(self, a: Assignment, outcome: Outcome) -> Report | None:
        """The task's report, its result uploaded first when too big to ride in it; None when
        the server says the task is not ours any more."""
        uid = a.task_uid
        result_uid: str | None = None
        # a small result rides in the report itself: one round trip less
        if (
            outcome.result_content is not None
            and len(outcome.result_content) <= defaults.INLINE_RESULT_MAX_BYTES
        ):
            inline: InlineResult | None = _inline_content(outcome.result_content)  # read already: no hop
        else:
            inline = await asyncio.to_thread(_inline_result, outcome.result_zip)
        if inline is None and outcome.result_zip is not None:
            zip_path = outcome.result_zip
            try:
                answer = await self._persist(
                    lambda: self.transport.upload(f"/work/tasks/{uid}/result", zip_path),
                    f"task {uid}: upload",
                )
                result_uid = ResultStored.from_wire(answer).result_uid
            except HostDisabled as exc:
                self._disabled_by_server(exc)
                return None
            except _NOT_OURS as exc:
                log.warning(
                    "task %s: the server no longer counts it as ours (%s); dropping it", uid, _describe(exc)
                )
                return None
            except PayloadTooLarge as exc:
                outcome.status = TaskStatus.ERROR
                outcome.message = f"result too large for the server: {exc.message}"
            except XWError as exc:
                log.error("task %s: result upload failed (%s); reporting without it", uid, _describe(exc))
                outcome.status = TaskStatus.ERROR
                outcome.message = f"{outcome.message + '; ' if outcome.message else ''}result upload failed"
        return Report(
            status="COMPLETED" if outcome.ok else "ERROR",
            exit_code=outcome.exit_code,
            message=outcome.message,
            result_uid=result_uid,
            result_inline=inline,
            accounting=_accounting(outcome.accounting),
        )

    # -- the outbox ----------------------------------------------------------------------------
    def _queue_report(self, d: Delivery) -> None:
        """Put a finished task's report in the outbox and free its slot at once, so the work
        request that carries the report goes now (the scratch folder is removed meanwhile)."""
        uid = d.uid
        self.tasks.pop(uid, None)
        self._slot_freed.set()
        d.run.phase = Phase.REPORTING
        if self.disabled:
            log.info("task %s: not reporting it, its host is disabled", uid)
            return
        self.outbox[uid] = d
        self._state_changed()
        if self._request_soon and self.active and not self.stopping:
            return  # it rides on the work request the pull loop sends now
        # a long-poll in flight (it would wait up to wait_s), or no request coming soon
        self._send_alone([d])

    def _send_alone(self, deliveries: Collection[Delivery] | None = None) -> None:
        """Send reports one by one (``POST /work/tasks/{uid}/report``), each in the background;
        by default every report of the outbox that is not in a call already."""
        for d in list(self.outbox.values()) if deliveries is None else deliveries:
            if d.sending or self.outbox.get(d.uid) is not d:
                continue
            d.sending = True
            future = asyncio.ensure_future(self._report_alone(d))
            self._reporting.add(future)
            future.add_done_callback(self._reporting.discard)

    async def _report_alone(self, d: Delivery) -> None:
        uid = d.uid
        try:
            answer = await self._persist(
                lambda: self.transport.request(
                    "POST", f"/work/tasks/{uid}/report", json=d.report.to_wire(), timeout_s=JSON_TIMEOUT_S
                ),
                f"task {uid}: report",
            )
        except asyncio.CancelledError:
            d.sending = False  # stays in the outbox
            raise
        except TLSError as exc:
            d.sending = False
            self._fail(exc)
            return
        except HostDisabled as exc:
            self._drop(d, f"the server no longer counts it as ours ({_describe(exc)})")
            self._disabled_by_server(exc)
            return
        except _NOT_OURS as exc:
            self._drop(d, f"the server no longer counts it as ours ({_describe(exc)})")
            return
        except XWError as exc:
            self._drop(d, f"report refused ({_describe(exc)})", level=logging.ERROR)
            return
        try:
            job_status: str | None = ReportAnswer.from_wire(answer).job_status
        except BadRequest as exc:  # taken all the same: the server answered 2xx
            log.warning("task %s: unexpected answer to its report (%s)", uid, exc.message)
            job_status = None
        self._acknowledged(d, job_status)

    def _acknowledged(self, d: Delivery, job_status: str | None) -> None:
        if self.outbox.pop(d.uid, None) is None:
            return
        d.sending = False
        if d.outcome.ok:
            self.completed += 1
        else:
            self.failed += 1
        d.run.reported_at = time.monotonic()
        log.info(
            "task %s: reported %s; job %s is %s",
            d.uid,
            d.report.status,
            d.run.assignment.job_uid,
            job_status,
        )
        if not self.stopping:
            self._state_changed()
        if self.on_task_end is not None:
            self.on_task_end(d.run, d.outcome)

    def _drop(self, d: Delivery, why: str, *, level: int = logging.WARNING) -> None:
        if self.outbox.pop(d.uid, None) is None:
            return
        d.sending = False
        log.log(level, "task %s: %s; dropping it", d.uid, why)
        if not self.stopping:
            self._state_changed()

    async def _persist(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry ``call`` while the server cannot answer now; other errors are raised.

        Unreachable or throttling servers are waited for without limit (a finished result
        is worth it, and heartbeats keep the lease meanwhile); server-side failures and
        corrupted transfers get ``DELIVERY_ATTEMPTS`` tries.
        """
        backoff = Backoff(self._backoff.start_s, self._backoff.cap_s)
        attempts = 0
        while True:
            reason: XWError
            try:
                return await call()
            except TLSError:
                raise
            except (ServerUnreachable, TooManyRequests) as exc:
                reason = exc
            except XWError as exc:
                if exc.http_status == INSUFFICIENT_STORAGE:
                    # the server's store is full: the result waits here (heartbeats keep the
                    # lease) until an administrator makes room, however long that takes
                    delay = backoff.next()
                    log.warning(
                        "%s: the server has no room to store it (%s); waiting %.1fs", what, exc.message, delay
                    )
                    await self._sleep(delay)
                    continue
                attempts += 1
                retryable = isinstance(exc, IntegrityError) or exc.http_status >= 500
                if not retryable or attempts >= DELIVERY_ATTEMPTS:
                    raise
                reason = exc
            delay = backoff.next()
            log.warning("%s failed (%s); retrying in %.1fs", what, _describe(reason), delay)
            await self._sleep(delay)

    # -- stopping ------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Let running tasks finish within the grace period, then kill and hand back the rest;
        deliver the outbox alone (never a work request while stopping).

        A work request still in flight is given a moment to return (a second stop signal
        cuts it): the server hands back jobs it claimed for a long-poll whose worker went
        away, but an answer already on its way would leave its jobs RUNNING until their
        lease expires; reading it lets us hand them back at once.
        """
        poll, self._poll = self._poll, None
        if self._fatal is not None and poll is not None:
            await _cancel(poll)
            poll = None
        # what finished before the stop and waits for a request goes now
        self._send_alone()
        if self.tasks and not self._hurry.is_set():
            grace_s = self.settings.shutdown_grace_s
            log.info("waiting up to %.0fs for %d running task(s) to finish", grace_s, len(self.tasks))
            await self._wait_unless_hurried([r.task for r in self.tasks.values() if r.task], grace_s)
        unfinished = list(self.tasks.values())
        if unfinished:
            log.info("killing %d unfinished task(s)", len(unfinished))
            for run in unfinished:
                if run.task is not None:
                    run.task.cancel()
            await asyncio.gather(*(r.task for r in unfinished if r.task), return_exceptions=True)
        late = await self._late_assignments(poll)
        if self._fatal is None:
            await asyncio.gather(
                self._release([r.uid for r in unfinished if not r.cancelled_by_server] + late),
                self._flush_outbox(),
            )
        else:
            for future in list(self._reporting):
                await _cancel(future)
        # the scratch folders of tasks whose reports went out
        await asyncio.gather(*self._task_coros, return_exceptions=True)

    async def _flush_outbox(self) -> None:
        """Deliver the outbox, alone, within ``RELEASE_TIMEOUT_S``."""
        self._send_alone()
        pending = set(self._reporting)
        if pending:
            await asyncio.wait(pending, timeout=RELEASE_TIMEOUT_S)
        for future in list(self._reporting):
            await _cancel(future)
        if self.outbox:
            log.warning(
                "could not deliver %d report(s) before stopping: %s; their leases will expire",
                len(self.outbox),
                ", ".join(self.outbox),
            )

    async def _late_assignments(self, poll: asyncio.Future[list[Any]] | None) -> list[str]:
        """The task uids the in-flight work request brings back (after waiting for it)."""
        if poll is None:
            return []
        if not poll.done() and not self._hurry.is_set():
            withdraw = asyncio.ensure_future(self._withdraw())
            try:
                await self._wait_unless_hurried([poll], LATE_POLL_WAIT_S)
            finally:
                await _cancel(withdraw)
        if not poll.done():
            await _cancel(poll)
            return []
        if poll.cancelled() or poll.exception() is not None:
            return []
        uids = _task_uids(poll.result())
        if uids:
            log.info("%d task(s) arrived while stopping; handing them back", len(uids))
        return uids

    async def _wait_unless_hurried(self, aws: list[asyncio.Future[Any]], timeout_s: float) -> None:
        """Wait until all of ``aws`` are done, ``timeout_s`` passed, or a second stop came."""
        if not aws:
            return
        all_done = asyncio.ensure_future(asyncio.wait(aws))
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait({all_done, hurry}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(all_done)
        await _cancel(hurry)

    async def _withdraw(self) -> None:
        """Ask the server to end the work request out now: a waiting one is answered at once
        (one claiming meanwhile brings its jobs, which the stop hands back). Best effort: a
        server that does not know the field refuses it, and the wait for the request is
        bounded anyway."""
        if self.host_uid is None:
            return
        release = Release(host_uid=self.host_uid, withdraw=True)
        with contextlib.suppress(XWError, TimeoutError):
            await self.transport.request(
                "POST", "/work/release", json=release.to_wire(), timeout_s=LATE_POLL_WAIT_S
            )

    async def _release(self, uids: list[str]) -> None:
        """Hand tasks back to the server (best effort, bounded in time)."""
        if not uids or self.host_uid is None:
            return
        release = Release(host_uid=self.host_uid, task_uids=uids)
        try:
            answer = Released.from_wire(
                await asyncio.wait_for(
                    self.transport.request(
                        "POST", "/work/release", json=release.to_wire(), timeout_s=RELEASE_TIMEOUT_S
                    ),
                    timeout=RELEASE_TIMEOUT_S,
                )
            )
            self.released += len(uids)
            log.info("handed back %d task(s): %s", answer.released, ", ".join(uids))
        except (XWError, TimeoutError) as exc:
            log.warning(
                "could not hand back %d task(s) (%s); their leases will expire", len(uids), _describe(exc)
            )


def _parse_work_answer(answer: Any) -> tuple[list[Any], WorkAnswer]:
    """A work answer: its assignments as sent (each is checked alone, so that one malformed
    assignment does not cost the others) and the rest, checked."""
    if not isinstance(answer, dict) or not isinstance(answer.get("assignments", []), list):
        raise BadRequest(f"work request: unexpected answer {answer!r:.200}")
    rest = {k: v for k, v in answer.items() if k != "assignments"}
    return list(answer.get("assignments", [])), WorkAnswer.from_wire(rest)


def _task_uids(assignments: list[Any]) -> list[str]:
    """The task uids of assignments as sent, malformed or not (to hand them back)."""
    return [str(b["task_uid"]) for b in assignments if isinstance(b, dict) and b.get("task_uid")]


def _host_error(exc: BaseException) -> bool:
    """Whether a call failed for its host (disabled, unknown), not for what it carried."""
    return isinstance(exc, HostDisabled | HostUnknown | NotFound)


def _inline_result(zip_path: Path | None) -> InlineResult | None:
    """The report's ``result_inline`` for a result small enough to travel in it, else None."""
    if zip_path is None:
        return None
    try:
        if zip_path.stat().st_size > defaults.INLINE_RESULT_MAX_BYTES:
            return None
        content = zip_path.read_bytes()
    except OSError:
        return None  # the upload path will say what is wrong
    return _inline_content(content)


def _inline_content(content: bytes) -> InlineResult:
    return InlineResult(
        content_b64=base64.b64encode(content).decode("ascii"), sha256=hashlib.sha256(content).hexdigest()
    )


def _accounting(accounting: dict[str, float] | None) -> Accounting | None:
    """The report's ``accounting``: seconds as numbers, peak memory in whole bytes."""
    if accounting is None:
        return None

    def seconds(key: str) -> float | None:
        return round(max(0.0, float(accounting[key])), 6) if key in accounting else None

    rss = accounting.get("max_rss_bytes")
    return Accounting(
        cpu_user_s=seconds("cpu_user_s"),
        cpu_system_s=seconds("cpu_system_s"),
        wall_s=seconds("wall_s"),
        max_rss_bytes=None if rss is None else max(0, int(rss)),
    )


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _describe(exc: BaseException) -> str:
    if isinstance(exc, XWError):
        return f"{exc.code}: {exc.message}" if exc.message else exc.code
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
