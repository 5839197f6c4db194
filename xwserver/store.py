"""Content-addressed data store.

Files live under ``var/data/ab/abcdef…`` named by their sha256. A body is streamed to a
temporary file while hashed, fsynced, then renamed: a crash never leaves a half file
under a real name. Nothing here knows about the database; the collector is told which
digests are still referenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from xwcommon import defaults
from xwcommon.errors import IntegrityError, PayloadTooLarge, StorageFull

log = logging.getLogger(__name__)

#: what a full disk (or a spent quota) raises
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
#: how the 507 names the store (a client should know it is the server's disk, not its own)
STORE_NAME = "the server's data store (uploaded data, application binaries and results)"


class DataStore:
    """The one store interface: put a stream, open by digest, delete, collect."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def free_bytes(self) -> int:
        """Bytes free on the store's disk, as an unprivileged writer sees them."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def check_room(self, needed_bytes: int, reserve_bytes: int) -> None:
        """Refuse (507) an upload of ``needed_bytes`` that would leave less than
        ``reserve_bytes`` free: said at once, before a byte of it is read."""
        free = self.free_bytes()
        if needed_bytes > free - reserve_bytes:
            log.warning(
                "refused an upload of %d bytes: %s has %d bytes free, %d of them kept in reserve",
                needed_bytes,
                self.root,
                free,
                reserve_bytes,
            )
            raise StorageFull(
                f"{STORE_NAME} is full: {needed_bytes} bytes announced, "
                f"{max(free - reserve_bytes, 0)} bytes left; try again later or ask the administrator"
            )

    async def put(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
    ) -> tuple[str, int]:
        """Store a stream; returns (sha256, size). Raises if it is too big or not as announced
        (as soon as it is longer than announced), and :class:`StorageFull` (507) when the
        disk fills up; the temporary file is removed then, so nothing half-written stays."""
        try:
            return await self._put(chunks, max_bytes, expected_sha256, expected_size)
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            log.warning("%s is full: %s", self.root, exc)
            raise StorageFull(
                f"{STORE_NAME} is full ({os.strerror(exc.errno)}); nothing was stored: "
                "try again later or ask the administrator"
            ) from None

    async def _put(
        self,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        expected_sha256: str | None,
        expected_size: int | None,
    ) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        tmp = self.tmp / f"{os.getpid()}-{id(chunks)}-{os.urandom(6).hex()}"
        fh = await asyncio.to_thread(open, tmp, "wb")
        try:
            pending: list[bytes] = []
            pending_bytes = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"body larger than the limit of {max_bytes} bytes")
                if expected_size is not None and size > expected_size:
                    raise IntegrityError(
                        f"received more than the {expected_size} bytes announced; send it again"
                    )
                h.update(chunk)
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= defaults.STREAM_CHUNK_BYTES:
                    await asyncio.to_thread(fh.write, b"".join(pending))
                    pending, pending_bytes = [], 0
            if pending:
                await asyncio.to_thread(fh.write, b"".join(pending))
            await asyncio.to_thread(_flush_and_sync, fh)
        except BaseException:
            with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                fh.close()
            tmp.unlink(missing_ok=True)
            raise
        fh.close()
        digest = h.hexdigest()
        try:
            if expected_size is not None and size != expected_size:
                raise IntegrityError(
                    f"received {size} bytes but {expected_size} were announced; send it again"
                )
            if expected_sha256 is not None and digest != expected_sha256.lower():
                raise IntegrityError(
                    f"content sha256 {digest} differs from the announced {expected_sha256}; send it again"
                )
            final = self.path_of(digest)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
                await asyncio.to_thread(_sync_dir, final.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size

    async def put_bytes(self, body: bytes) -> tuple[str, int]:
        async def one() -> AsyncIterator[bytes]:
            yield body

        return await self.put(one(), max_bytes=len(body))

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)

    def collect(self, referenced: Iterable[str], *, older_than: float | None = None) -> int:
        """Delete stored files whose digest is not referenced, and abandoned temporary
        files; only files last modified before ``older_than`` (epoch seconds) when given,
        so that content whose data row is being written is never taken. Returns how many."""
        keep = set(referenced)
        removed = 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if sub != self.tmp and f.name in keep:
                    continue
                try:
                    if older_than is not None and f.stat().st_mtime >= older_than:
                        continue
                    f.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        return removed


def _flush_and_sync(fh: object) -> None:
    fh.flush()  # type: ignore[attr-defined]
    os.fsync(fh.fileno())  # type: ignore[attr-defined]


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
