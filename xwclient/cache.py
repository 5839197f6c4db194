"""The client's cache: what it uploaded, so that the same file is not sent twice.

A job's binary, standard input or environment is often the same file submission after
submission (a macro of 10,000 jobs reading one input). The cache remembers, per server and
login, the data each content was uploaded as (by sha256), and which sha256 a local file had
at a given size and modification time, so that neither the upload nor the hashing is done
again. An entry is only a hint: before reusing a data the client asks the server for it and
checks its sha256, so a data removed since, or a cache edited by hand, costs one request and
an upload, never a wrong input.

It lives in one JSON file, ``uploads.json``, in the folder ``cache.dir`` of the client config
(default: ``xwclient.cache`` next to the config file). ``--xwclean`` empties it. Several
clients may share it: each write replaces the whole file atomically, and an entry lost to a
concurrent write only costs an upload.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the one file of the cache
INDEX = "uploads.json"
#: entries kept at most per section (the oldest are dropped first)
MAX_ENTRIES = 10_000


class UploadCache:
    """Data UIDs by (server, login, sha256) and sha256 by (path, size, mtime)."""

    def __init__(self, folder: Path | None) -> None:
        #: ``None``: a cache that remembers nothing beyond this process
        self.folder = folder
        self._data: dict[str, str] = {}
        self._hashes: dict[str, str] = {}
        self._loaded = False
        self._dirty = False

    @property
    def index(self) -> Path | None:
        return None if self.folder is None else self.folder / INDEX

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.index is None:
            return
        try:
            raw: Any = json.loads(self.index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("client cache %s unreadable (%s); starting afresh", self.index, exc)
            return
        if isinstance(raw, dict):
            for section, target in (("data", self._data), ("hashes", self._hashes)):
                values = raw.get(section)
                if isinstance(values, dict):
                    target.update({str(k): str(v) for k, v in values.items()})

    @staticmethod
    def _file_key(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def known_sha256(self, path: Path) -> str | None:
        """The sha256 ``path`` had when it last had its present size and modification time."""
        self._load()
        try:
            return self._hashes.get(self._file_key(path))
        except OSError:
            return None

    def remember_sha256(self, path: Path, sha256: str) -> None:
        self._load()
        try:
            self._hashes[self._file_key(path)] = sha256
        except OSError:
            return
        self._dirty = True

    def data_uid(self, server: str, login: str, sha256: str) -> str | None:
        self._load()
        return self._data.get(f"{server}|{login}|{sha256}")

    def remember_data(self, server: str, login: str, sha256: str, uid: str) -> None:
        self._load()
        self._data[f"{server}|{login}|{sha256}"] = uid
        self._dirty = True

    def forget_data(self, server: str, login: str, sha256: str) -> None:
        self._load()
        if self._data.pop(f"{server}|{login}|{sha256}", None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed (atomically); a failure is logged, never raised."""
        if not self._dirty or self.folder is None or self.index is None:
            return
        body = {
            "data": dict(list(self._data.items())[-MAX_ENTRIES:]),
            "hashes": dict(list(self._hashes.items())[-MAX_ENTRIES:]),
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".uploads.", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh)
            os.replace(tmp, self.index)
            self._dirty = False
        except OSError as exc:
            log.warning(
                "could not write the client cache %s: %s; set cache.dir in the client config to a "
                "folder you may write",
                self.index,
                exc,
            )

    def clean(self) -> int:
        """Empty the cache (``--xwclean``); return how many files were removed."""
        self._data.clear()
        self._hashes.clear()
        self._loaded = True
        self._dirty = False
        if self.folder is None or not self.folder.is_dir():
            return 0
        count = sum(1 for p in self.folder.rglob("*") if p.is_file())
        shutil.rmtree(self.folder)
        return count
