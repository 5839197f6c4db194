"""Slow salted password hashes (scrypt), random bearer tokens and host keys stored hashed,
and the memory of passwords verified lately.

A token or a host key is 256 random bits: nobody guesses one, so a fast hash (sha256) stores
it as safely as a slow one would, and checking it costs nothing. A password is chosen by
people: it gets the slow hash, and the throttle of wrong ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from xwcommon import defaults

# scrypt cost: ~40 ms per hash on the reference machine; stored with the hash so it can grow.
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN, maxmem=64 * 2**20)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest_b64)
    digest = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt_b64),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
        maxmem=64 * 2**20,
    )
    return hmac.compare_digest(digest, expected)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens are stored as their sha256: a stolen database holds no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(18)


def new_host_key() -> str:
    """A host credential: a worker keeps it to log in as its host without the password."""
    return secrets.token_urlsafe(32)


def host_key_digest(key: str) -> str:
    """Host keys are stored as their sha256, as tokens are."""
    return hashlib.sha256(key.encode()).hexdigest()


def same_digest(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class _Verified:
    mac: bytes
    stored: str


class VerifiedPasswords:
    """Passwords this process verified lately, so the same correct password does not pay the
    slow hash again (a fleet of hosts sharing one worker identity logs in at the rate the
    server answers requests, not at one scrypt each).

    What is kept is an HMAC of (login, password) under a random key of this process, never
    the password, with the stored hash it was verified against: a password changed anywhere
    (another process too) no longer matches that hash, and the entry is ignored. Only
    successes are kept, so a wrong password always pays the slow hash, and the login throttle
    sees every attempt as before. Bounded: the least recently used entry goes first.
    """

    def __init__(self, max_entries: int = defaults.VERIFIED_PASSWORDS_MAX) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()  # put from a hashing thread, read from the loop

    def __len__(self) -> int:
        return len(self._entries)

    def _mac(self, login: str, password: str) -> bytes:
        message = login.encode() + b"\0" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def matches(self, login: str, password: str, stored: str) -> bool:
        """Whether ``password`` is the one verified for ``login`` against ``stored``."""
        with self._lock:
            hit = self._entries.get(login)
            if hit is None:
                return False
            self._entries.move_to_end(login)
        return hit.stored == stored and hmac.compare_digest(hit.mac, self._mac(login, password))

    def remember(self, login: str, password: str, stored: str) -> None:
        entry = _Verified(self._mac(login, password), stored)
        with self._lock:
            self._entries[login] = entry
            self._entries.move_to_end(login)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget(self, login: str) -> None:
        with self._lock:
            self._entries.pop(login, None)
