"""Zip archives in and out of a task's scratch directory.

Both directions treat content as hostile: an env archive comes from a user the volunteer
does not know, and a scratch directory was written by that user's program.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from xwcommon.errors import BadRequest

log = logging.getLogger(__name__)


class UnsafeArchive(BadRequest):
    """Raised when an archive member would land outside the destination or cannot fit."""


def check_member_name(name: str) -> PurePosixPath:
    """The relative path a member may be extracted to; :class:`UnsafeArchive` for zip-slip."""
    unix = name.replace("\\", "/")
    path = PurePosixPath(unix)
    if not unix or unix.startswith("/") or (len(unix) > 1 and unix[1] == ":"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchive(f"archive member {name!r} leaves the destination with '..'")
    if "\0" in unix:
        raise UnsafeArchive(f"archive member {name!r} has a NUL character")
    return path


def safe_extract(archive: Path, dest: Path, *, max_total_bytes: int | None = None) -> int:
    """Expand zip ``archive`` into ``dest``; every member is checked before anything is written.

    Symbolic links in the archive are written as plain files (zipfile never creates links),
    and member modes keep only their execute bits, so nothing setuid lands on the disk.
    Returns the number of bytes written.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UnsafeArchive("env archive is not a zip file") from None
    with zf:
        members = zf.infolist()
        for info in members:
            check_member_name(info.filename)
        # declared sizes bound what zipfile will write, so a zip bomb is stopped here
        total = sum(info.file_size for info in members)
        if max_total_bytes is not None and total > max_total_bytes:
            raise UnsafeArchive(
                f"env archive expands to {total} bytes, more than the {max_total_bytes} allowed"
            )
        dest_real = dest.resolve()
        for info in members:
            target = dest_real.joinpath(*check_member_name(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # a directory created by an earlier member cannot be a link (we made it), but check
            # anyway: resolve() of the parent must still be inside dest
            if not target.parent.resolve().is_relative_to(dest_real):
                raise UnsafeArchive(f"archive member {info.filename!r} leaves the destination")
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1024 * 1024):
                    out.write(chunk)
            unix_mode = (info.external_attr >> 16) & 0o777
            target.chmod(0o755 if unix_mode & 0o111 else 0o644)
        return total


def zip_directory(
    src: Path, dest: Path, *, exclude: Collection[str] = (), compresslevel: int = 6
) -> tuple[int, int]:
    """Write every regular file and folder under ``src`` into zip ``dest`` (deflated, streamed).

    ``exclude`` lists top-level names to leave out. Symbolic links, devices, fifos and
    sockets are skipped: a job could otherwise make the worker read the volunteer's files
    (a link to ``~/.ssh``) or block forever (a fifo). The zip is written under a temporary
    name and renamed. Returns (files, bytes of the zip).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    files = 0
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
                rel_dir = Path(dirpath).relative_to(src)
                if rel_dir == Path("."):
                    dirnames[:] = [d for d in dirnames if d not in exclude]
                    filenames = [f for f in filenames if f not in exclude]
                dirnames.sort()
                for d in list(dirnames):
                    full = Path(dirpath, d)
                    if full.is_symlink():
                        log.debug("result: skipping link %s", full)
                        dirnames.remove(d)
                        continue
                    zf.write(full, (rel_dir / d).as_posix() + "/")
                for name in sorted(filenames):
                    full = Path(dirpath, name)
                    mode = full.lstat().st_mode
                    if not stat.S_ISREG(mode):
                        log.debug("result: skipping %s (not a regular file)", full)
                        continue
                    zf.write(full, (rel_dir / name).as_posix())
                    files += 1
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return files, dest.stat().st_size
