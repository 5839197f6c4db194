"""The server's state shared by handlers: settings, database, store, notifier, token cache."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .access import Caller
from .db.engine import backend_of
from .passwords import VerifiedPasswords
from .processes import Leader
from .settings import ServerSettings
from .store import DataStore
from .throttle import LoginThrottle
from .wire import Wire

#: how long a token stays in the cache of a server on SQLite (the only process)
LONG_TOKEN_TTL_S = 600.0
#: how long a host stays in the cache of a server on SQLite: a few heartbeat intervals (its
#: figures that others change, such as its record of valid results, may lag that long)
LONG_HOST_TTL_S = 60.0


class Waiter(asyncio.Event):
    """The wake-up of one waiting work request; ``withdrawn`` when its worker is stopping."""

    def __init__(self) -> None:
        super().__init__()
        self.withdrawn = False


class WorkNotifier:
    """Wakes long-polling work requests when jobs become PENDING in this process.

    Each waiter has its own event and waiters are woken in arrival order, so N new jobs
    wake N waiters rather than all of them (no thundering herd on one submission).
    """

    def __init__(self) -> None:
        self._waiters: collections.deque[Waiter] = collections.deque()
        #: the waiting request of each host that has one (a worker long-polls once at a time)
        self._by_host: dict[int, Waiter] = {}
        self.closing = False
        #: when (monotonic) notify_all_at_most_every last woke every waiter
        self._woke_all_at = float("-inf")

    async def wait(self, timeout_s: float, host_id: int | None = None) -> bool:
        """Until a wake-up or ``timeout_s``; whether the host withdrew the wait meanwhile."""
        if self.closing:
            return False
        waiter = Waiter()
        self._waiters.append(waiter)
        if host_id is not None:
            self._by_host[host_id] = waiter
        try:
            await asyncio.wait_for(waiter.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            if host_id is not None and self._by_host.get(host_id) is waiter:
                del self._by_host[host_id]
            if not waiter.is_set():
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        return waiter.withdrawn

    def withdraw(self, host_id: int) -> None:
        """The host is stopping: its waiting request, if any, ends now without claiming.

        Only a request that waits at this moment is ended: a withdraw that finds none (the
        request is claiming, or already answered) leaves nothing behind for the host's next
        one. The waiter leaves the queue unwoken, so no submission's wake-up is spent on it.
        """
        waiter = self._by_host.pop(host_id, None)
        if waiter is None or waiter.is_set():
            return
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        waiter.withdrawn = True
        waiter.set()

    def notify(self, n: int = 1) -> None:
        while n > 0 and self._waiters:
            self._waiters.popleft().set()
            n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    def notify_all_at_most_every(self, interval_s: float) -> None:
        """:meth:`notify_all`, unless it was done less than ``interval_s`` ago: for an event
        anyone can repeat (a chmod), so that waking every waiter stays within the claims per
        second their own re-checks are held to."""
        now = time.monotonic()
        if now - self._woke_all_at >= interval_s:
            self._woke_all_at = now
            self.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._waiters)


@dataclass
class TokenCache:
    """Recently resolved tokens, so most requests cost no token query.

    Entries live ``ttl_s`` at most; logout in this process drops them at once.
    """

    ttl_s: float = 10.0
    _entries: dict[str, tuple[Caller, float, float]] = field(default_factory=dict)

    def get(self, digest: str, now: float) -> Caller | None:
        hit = self._entries.get(digest)
        if hit is None:
            return None
        caller, expires_at, cached_at = hit
        if now >= expires_at or now - cached_at > self.ttl_s:
            del self._entries[digest]
            return None
        return caller

    def put(self, digest: str, caller: Caller, expires_at: float, now: float) -> None:
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[digest] = (caller, expires_at, now)

    def drop(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def drop_user(self, user_id: int) -> None:
        for key in [k for k, v in self._entries.items() if v[0].id == user_id]:
            del self._entries[key]

    def drop_host(self, host_uid: str) -> None:
        """Forget the tokens bound to a host (it was removed)."""
        for key in [k for k, v in self._entries.items() if v[0].host_uid == host_uid]:
            del self._entries[key]


@dataclass(frozen=True)
class HostInfo:
    """What the hot path needs of a host, cached in memory between its requests."""

    id: int
    uid: str
    owner_id: int
    os: str
    cpu: str
    enabled: bool
    #: valid results in a row (adaptive trust: a long record gets replicated jobs alone)
    valid_streak: int = 0
    #: what it offers jobs' requirements: cores, GPUs and tags (from its registration)
    cores: int = 0
    gpus: int = 0
    tags: tuple[str, ...] = ()


@dataclass
class HostCache:
    """Hosts by UID for ``ttl_s`` at most; changing a host in this process drops it at once."""

    ttl_s: float = 5.0
    _entries: dict[str, tuple[HostInfo, float]] = field(default_factory=dict)

    def get(self, uid: str, now: float) -> HostInfo | None:
        hit = self._entries.get(uid)
        if hit is None or now - hit[1] > self.ttl_s:
            return None
        return hit[0]

    _uids: dict[int, str] = field(default_factory=dict)

    def put(self, host: HostInfo, now: float) -> None:
        if len(self._entries) > 100_000:
            self._entries.clear()
            self._uids.clear()
        self._entries[host.uid] = (host, now)
        self._uids[host.id] = host.uid

    def drop(self, uid: str) -> None:
        self._entries.pop(uid, None)

    def drop_ids(self, ids: Iterable[int]) -> None:
        """Forget hosts by id (their record of valid results changed in this process)."""
        for host_id in ids:
            uid = self._uids.pop(host_id, None)
            if uid is not None:
                self._entries.pop(uid, None)


@dataclass
class BinaryCache:
    """The binary each app gives a platform, for ``ttl_s`` at most: claims then skip that
    query. Changing an app in this process clears it at once; another process's change is
    seen within ``ttl_s`` (meanwhile a host may get the binary the app had before)."""

    ttl_s: float = 2.0
    _entries: dict[tuple[int, str, str], tuple[Any, float]] = field(default_factory=dict)

    def get(self, app_id: int, os_name: str, cpu: str, now: float) -> Any | None:
        hit = self._entries.get((app_id, os_name, cpu))
        if hit is None or now - hit[1] > self.ttl_s:
            return None
        return hit[0]

    def put(self, app_id: int, os_name: str, cpu: str, value: Any, now: float) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[(app_id, os_name, cpu)] = (value, now)

    def clear(self) -> None:
        self._entries.clear()


class Server:
    """Everything a request handler needs, created once per process."""

    def __init__(self, settings: ServerSettings, engine: AsyncEngine, store: DataStore) -> None:
        self.settings = settings
        self.engine = engine
        self.backend = backend_of(settings.db_url)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(engine, expire_on_commit=False)
        self.store = store
        self.notifier = WorkNotifier()
        # SQLite serves one process, which drops an entry at once when it changes the token,
        # user or host behind it: entries may live long, so a connected fleet's heartbeats
        # cost no token or host query. Several processes on one database see each other's
        # changes only through the database: short-lived entries there.
        one_process = self.backend == "sqlite"
        self.tokens = TokenCache(ttl_s=LONG_TOKEN_TTL_S) if one_process else TokenCache()
        self.login_throttle = LoginThrottle(settings.login_failures_allowed, settings.login_backoff_cap_s)
        #: correct passwords verified lately, as HMACs (a fleet's logins skip the slow hash)
        self.passwords = VerifiedPasswords()
        self.hosts = HostCache(ttl_s=LONG_HOST_TTL_S) if one_process else HostCache()
        self.binaries = BinaryCache()
        #: work requests of this process in their database transaction now (admission)
        self.work_in_flight = 0
        #: work requests of this process so far (the event settler waits for quiet moments)
        self.work_requests = 0
        #: fair share's virtual time: the highest share key this process claimed lately (None:
        #: read from the queue at the first submission), see jobs.share_keys
        self.queue_head: float | None = None
        #: what pending reasons read of the hosts, with when (xwserver.pending.Explainer)
        self.connected_hosts: tuple[float, list[Any]] | None = None
        self.registered_hosts: tuple[float, tuple[int, int, int]] | None = None
        self.app_platforms: dict[int, tuple[float, set[tuple[str, str]]]] = {}
        #: owner id -> (usage weight, when computed): see jobs.usage_weight
        self.usage_weights: dict[int, tuple[float, float]] = {}
        #: copies whose results a comparison program must judge (xwserver.comparing), queued
        #: once their reports committed
        self.to_compare: asyncio.Queue[int] = asyncio.Queue()
        self.compare_after_commit: list[int] = []
        #: whether this process runs the background loops (one of several on PostgreSQL)
        self.leader = Leader(engine, self.backend)
        self.wire = Wire(settings.netloc)
        self.started_at = time.time()

    def queue_comparisons(self) -> None:
        """Hand the copies of the reports just committed to the validator."""
        while self.compare_after_commit:
            self.to_compare.put_nowait(self.compare_after_commit.pop())

    @property
    def skip_locked(self) -> bool:
        """Whether claims may lock rows with FOR UPDATE SKIP LOCKED."""
        return self.backend in {"postgresql", "mysql"}


async def uid_maps(
    session: AsyncSession, wanted: dict[str, Iterable[int | None]]
) -> dict[str, dict[int, str]]:
    """Batch-resolve integer ids to UIDs: ``{"user": ids, "app": ids, "data": ids, ...}``."""
    from .db.models import App, Data, Host, Job, JobGroup, JobSession, User

    models: dict[str, Any] = {
        "user": User,
        "app": App,
        "data": Data,
        "host": Host,
        "job": Job,
        "session": JobSession,
        "group": JobGroup,
    }
    out: dict[str, dict[int, str]] = {}
    for kind, ids in wanted.items():
        idset = {i for i in ids if i is not None}
        model = models[kind]
        mapping: dict[int, str] = {}
        ordered = sorted(idset)
        for start in range(0, len(ordered), 900):
            chunk = ordered[start : start + 900]
            rows = await session.execute(select(model.id, model.uid).where(model.id.in_(chunk)))
            mapping.update({r[0]: r[1] for r in rows})
        out[kind] = mapping
    return out
