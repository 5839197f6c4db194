"""Login throttling: repeated failures slow down guessing, per login and per client address.

Each key (a login name, a client address) counts its recent failed logins. Once a key has
``failures_allowed`` failures, it is blocked for ``backoff_start_s``; every further failure
doubles the wait, up to ``backoff_cap_s``. While a key is blocked, attempts are refused
(429 with Retry-After) *before* the password is checked, and they do not count: an
attacker hammering a blocked login cannot keep its owner out longer than the current wait.
A success resets the login's count. An address is allowed ``address_factor`` times more
failures than a login, because many honest users may share one address (NAT, a campus).

Counts are forgotten ``backoff_cap_s`` after a key's last failure or, if later, after its
wait ends (so an attacker who sits out a capped wait meets the cap again, not a fresh
allowance), and the table is bounded (the oldest entries go first), so memory stays small
under a flood of made-up names or addresses. Each server process keeps its own table:
several processes behind one database multiply the allowance by their number, no more.

Concurrent attempts on one key are counted as they start, so a burst of parallel guesses
gets no more tries than sequential ones (past the allowance, one attempt at a time).

A password this process verified lately (xwserver.passwords.VerifiedPasswords) is known
right without the slow hash: :meth:`refuse_if_blocked` still stops it while its login or
address must wait, but it takes no place among the attempts in progress, and
:meth:`succeeded` resets its login's count as a success does. So a crowd of hosts sharing
the public worker identity is not held to a few logins at a time, while a wrong password
is admitted, counted and slowed down exactly as before.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from xwcommon import defaults
from xwcommon.errors import LOGIN_BUSY, TooManyRequests

#: longest login kept as a key (longer ones are refused anyway)
_MAX_KEY_CHARS = 130


@dataclass
class _Entry:
    failures: int = 0
    pending: int = 0
    last_failure_at: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Failure counts by key, in memory; ``now`` is injectable for tests."""

    def __init__(
        self,
        failures_allowed: int = defaults.LOGIN_FAILURES_ALLOWED,
        backoff_cap_s: float = defaults.LOGIN_BACKOFF_CAP_S,
        *,
        backoff_start_s: float = defaults.LOGIN_BACKOFF_START_S,
        address_factor: int = defaults.LOGIN_ADDRESS_FACTOR,
        max_entries: int = defaults.LOGIN_THROTTLE_MAX_ENTRIES,
    ) -> None:
        self.failures_allowed = max(1, failures_allowed)
        self.backoff_cap_s = max(backoff_cap_s, 0.0)
        self.backoff_start_s = min(backoff_start_s, self.backoff_cap_s)
        self.address_factor = max(1, address_factor)
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    # -- a password known right without the slow hash ------------------------------------------
    def refuse_if_blocked(self, login: str, address: str | None, *, now: float | None = None) -> None:
        """Raise :class:`TooManyRequests` if this login or address must wait (nothing is counted)."""
        now = time.time() if now is None else now
        self._expire(now)
        wait_s = max(
            (e.blocked_until - now for k in self._keys(login, address) if (e := self._entries.get(k))),
            default=0.0,
        )
        if wait_s > 0:
            retry_after_s = max(1, math.ceil(wait_s))
            raise TooManyRequests(
                f"too many failed logins; try again in {retry_after_s} s", retry_after_s=retry_after_s
            )

    def succeeded(self, login: str) -> None:
        """A success not admitted through :meth:`admit`: the login's count is reset (as
        :meth:`record` does), its attempts in progress stay counted."""
        key = self._keys(login, None)[0]
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.failures, entry.blocked_until = 0, 0.0
        if entry.pending == 0:
            del self._entries[key]

    # -- the two calls around a password check --------------------------------------------------
    def admit(self, login: str, address: str | None, *, now: float | None = None) -> None:
        """Raise :class:`TooManyRequests` if this login or address must wait; else count
        the attempt as started (end it with :meth:`record`)."""
        now = time.time() if now is None else now
        self._expire(now)
        keys = self._keys(login, address)
        wait_s = 0.0
        busy = False
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.blocked_until > now:
                wait_s = max(wait_s, entry.blocked_until - now)
            elif entry.pending >= max(1, self._allowed(key) - entry.failures):
                busy = True  # parallel attempts fill the allowance; retry shortly
        if wait_s > 0:
            retry_after_s = max(1, math.ceil(wait_s))
            raise TooManyRequests(
                f"too many failed logins; try again in {retry_after_s} s", retry_after_s=retry_after_s
            )
        if busy:
            # not a failure: many hosts of one worker identity may log in at once. Clients
            # with the right password come back a second later (xwcommon.transport does)
            raise TooManyRequests(
                "too many logins in progress for this login or address; try again in 1 s",
                retry_after_s=1,
                code=LOGIN_BUSY,
            )
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(last_failure_at=now)
                self._bound()
            entry.pending += 1

    def record(self, login: str, address: str | None, ok: bool | None, *, now: float | None = None) -> None:
        """End an attempt :meth:`admit` let through: ``ok`` True (a success resets the
        login's count), False (a failure, counted on both keys) or None (no verdict, e.g.
        the database failed: nothing is counted)."""
        now = time.time() if now is None else now
        for key in self._keys(login, address):
            entry = self._entries.get(key)
            if entry is None:  # pushed out by the bound meanwhile
                if ok is not False:
                    continue
                entry = self._entries[key] = _Entry()
                self._bound()
            entry.pending = max(0, entry.pending - 1)
            if ok is False:
                self._fail(key, entry, now)
            elif ok and key[0] == "login":
                entry.failures, entry.blocked_until = 0, 0.0
            if entry.failures == 0 and entry.pending == 0:
                del self._entries[key]  # nothing to remember

    # -- inside --------------------------------------------------------------------------------------
    def _keys(self, login: str, address: str | None) -> list[tuple[str, str]]:
        return [("login", login[:_MAX_KEY_CHARS]), ("address", address or "unknown")]

    def _allowed(self, key: tuple[str, str]) -> int:
        return self.failures_allowed * (self.address_factor if key[0] == "address" else 1)

    def _fail(self, key: tuple[str, str], entry: _Entry, now: float) -> None:
        entry.failures += 1
        entry.last_failure_at = now
        self._entries.move_to_end(key)
        beyond = entry.failures - self._allowed(key)
        if beyond >= 0:
            wait_s = min(self.backoff_cap_s, self.backoff_start_s * 2.0 ** min(beyond, 64))
            entry.blocked_until = max(entry.blocked_until, now + wait_s)

    def _forgotten(self, entry: _Entry, now: float) -> bool:
        quiet_since = max(entry.last_failure_at, entry.blocked_until)
        return entry.pending == 0 and now - quiet_since >= self.backoff_cap_s

    def _expire(self, now: float) -> None:
        # entries are kept in order of their last failure, so the stale ones come first
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if not self._forgotten(entry, now):
                return
            del self._entries[key]

    def _bound(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
