"""The worker's download cache: binaries and inputs, stored by content under ``cache/<sha256>``.

A file gets its real name only after its sha256 was checked (the transport downloads to a
temporary name and renames), so a name in the cache always means a complete, verified
file. Tasks that need the same content at the same time share one download. What to fetch
is the protocol's :class:`~xwcommon.protocol.work.DataRef`, as the assignment names it.
Data inserted by URL is fetched from that URL (xwcommon/urlfetch.py) and cached by the
sha256 recorded at insertion like any other content; a document that changed since fails
the fetch with :class:`~xwcommon.urlfetch.DocumentChanged`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Protocol

from xwcommon import defaults, urlfetch
from xwcommon.protocol import MAX_BYTES
from xwcommon.protocol.work import DataRef

__all__ = ["DataRef", "DownloadCache", "Downloader"]

log = logging.getLogger(__name__)

#: a cached file: read-only, and for the worker's user alone
CACHED_FILE_MODE = 0o400
#: the longest a fetch of data by URL may take, in all (then the job fails)
URL_TIMEOUT_S = defaults.URL_DOWNLOAD_TIMEOUT_S


class Downloader(Protocol):
    """What the cache needs from :class:`xwcommon.transport.Transport`."""

    async def download(
        self, path: str, dest: str | os.PathLike[str], *, expected_sha256: str | None = None
    ) -> str: ...


class DownloadCache:
    """Content-addressed files under ``root``; fetched once, shared by all tasks."""

    def __init__(
        self,
        root: Path,
        transport: Downloader,
        *,
        url_ca_file: Path | None = None,
        url_timeout_s: float = URL_TIMEOUT_S,
    ) -> None:
        self.root = Path(root)
        self._transport = transport
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        #: data by URL: extra CA certificates for https, and the longest a fetch may take
        self.url_ca_file = url_ca_file
        self.url_timeout_s = url_timeout_s

    def path_of(self, ref: DataRef) -> Path:
        return self.root / ref.sha256

    async def fetch(self, ref: DataRef) -> Path:
        """The local path of ``ref``'s content, downloading it if it is not cached yet."""
        path = self.path_of(ref)
        if path.is_file() and (ref.size is None or path.stat().st_size == ref.size):
            if path.stat().st_mode & 0o077:  # cached by an older worker, readable by others
                path.chmod(CACHED_FILE_MODE)
            return path
        task = self._inflight.get(ref.sha256)
        if task is None:
            task = asyncio.ensure_future(self._download(ref, path))
            self._inflight[ref.sha256] = task
            task.add_done_callback(lambda t: self._done(ref.sha256, t))
        # shield: one cancelled task must not abort a download other tasks wait for
        return await asyncio.shield(task)

    def _done(self, sha256: str, task: asyncio.Task[Path]) -> None:
        self._inflight.pop(sha256, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a download nobody awaits any more logs nothing

    async def _download(self, ref: DataRef, path: Path) -> Path:
        # the cache holds other users' inputs (some private): the worker's alone. Jobs never
        # read it: they get copies (binary, env) and open descriptors (stdin) from the worker
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        if ref.url:
            # data by URL: from where it lives, not through the server; the digest recorded at
            # insertion decides whether it is still the same document
            log.info(
                "fetching data %s from %s (sha256 %s, %s bytes)", ref.data_uid, ref.url, ref.sha256, ref.size
            )
            await urlfetch.fetch(
                ref.url,
                path,
                max_bytes=ref.size if ref.size is not None else MAX_BYTES,
                timeout_s=self.url_timeout_s,
                ca_file=self.url_ca_file,
                expected_sha256=ref.sha256,
                expected_size=ref.size,
            )
        else:
            log.info("downloading data %s (sha256 %s, %s bytes)", ref.data_uid, ref.sha256, ref.size)
            await self._transport.download(f"/data/{ref.data_uid}/content", path, expected_sha256=ref.sha256)
        # cached content is never changed in place; tasks get copies
        path.chmod(CACHED_FILE_MODE)
        return path
