"""The worker's login: as its host with the host credential, else with the password.

Registering a host with the password gives the worker a host credential, a random key it
keeps in its state folder (``xwworker.hostkey``, 0600). From then on the worker logs in as
its host with that key: the server checks it with a fast hash (it is 256 random bits), so a
restart or an expired token costs no slow password hash, and a stolen key acts only as that
one host. The server replaces an old key at its next use; the new one is written before it
is used. A key the server refuses (401: its identity's password changed, the host was
removed, a rotation's answer was lost) is forgotten and the worker logs in with the
password, naming its host, which gives a new key.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xwcommon.errors import AuthenticationError
from xwcommon.transport import Transport

log = logging.getLogger(__name__)

#: longest key accepted from the file (the server's are 43 characters)
_MAX_KEY_CHARS = 128


class HostKeyFile:
    """The host credential in the state folder: read, written atomically (0600), forgotten."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not text or len(text) > _MAX_KEY_CHARS or not text.isprintable():
            return None
        return text

    def write(self, key: str) -> None:
        """Replace the key: a temporary file made 0600 from its creation, then renamed."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (key + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class HostTransport(Transport):
    """A worker's transport: logs in as its host (``host_uid()``) with its key when it has one."""

    def __init__(
        self, *args: Any, key_file: HostKeyFile, host_uid: Callable[[], str | None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.key_file = key_file
        self._host_uid = host_uid
        #: how the last login was made: "host key" or "password" (logs and tests)
        self.last_login: str | None = None

    async def _login(self) -> None:
        host_uid = self._host_uid()
        key = self.key_file.read() if host_uid else None
        if host_uid and key:
            body = {"login": self.login_name, "host_uid": host_uid, "host_key": key}
            try:
                answer = await self._call("POST", "/login/host", json=body, auth=False)
            except AuthenticationError as exc:
                log.warning(
                    "the server refused this host's key (%s); logging in with the password", exc.message
                )
                self.key_file.forget()
            else:
                self.last_login = "host key"
                self.logged_in(answer)
                return
        await super()._login()
        self.last_login = "password"

    def password_login(self) -> dict[str, Any]:
        """Naming the host (if any) binds the token to it and gives it a new key."""
        body = super().password_login()
        host_uid = self._host_uid()
        if host_uid:
            body["host_uid"] = host_uid
        return body

    def logged_in(self, body: dict[str, Any]) -> None:
        key = body.get("host_key")
        if isinstance(key, str) and key:
            self.keep(key)
        super().logged_in(body)

    def keep(self, key: str) -> None:
        """Keep a key the server gave; a failure to write it costs a password login later."""
        try:
            self.key_file.write(key)
        except OSError as exc:
            log.warning("cannot keep the host key in %s (%s)", self.key_file.path, exc.strerror or exc)
