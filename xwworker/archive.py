"""Zip archives in and out of a task's scratch directory.

Both directions treat content as hostile: an env archive comes from a user the volunteer
does not know, and a scratch directory was written by that user's program.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import zipfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import IO

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


#: most members an env archive may hold
ENV_MAX_MEMBERS = 10_000
#: most bytes a member may expand to per compressed byte (DEFLATE honestly reaches ~1000:1 on
#: zeros only; a sane environment stays far below)
ENV_MAX_RATIO = 200
#: bytes a member may expand to before its ratio is checked (tiny members compress wildly)
RATIO_GRACE_BYTES = 1024 * 1024
#: small reads: zipfile counts what it read ahead as consumed, which blurs the ratio
_CHUNK_BYTES = 64 * 1024


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int | None = None,
    total_limit: str = "the space allowed",
    max_member_bytes: int | None = None,
    member_limit: str = "limit.file_bytes",
    max_members: int = ENV_MAX_MEMBERS,
    max_ratio: float = ENV_MAX_RATIO,
) -> int:
    """Expand zip ``archive`` into ``dest``; every member is checked before anything is written.

    A zip bomb is stopped while it expands: the bytes actually written (not the sizes the
    archive declares) are counted against ``max_member_bytes`` per member and
    ``max_total_bytes`` in all, and a member may not grow past ``max_ratio`` times its
    compressed size. The archive may hold at most ``max_members`` members, no duplicate names
    and no overlapping members. Each refusal names its limit (``member_limit``,
    ``total_limit``); what was written is removed. Symbolic links in the archive are written as
    plain files (zipfile never creates links), and member modes keep only their execute bits,
    so nothing setuid lands on the disk. Returns the number of bytes written.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UnsafeArchive("env archive is not a zip file") from None
    written: list[Path] = []
    try:
        with zf:
            return _extract(
                zf,
                dest,
                written,
                max_total_bytes,
                total_limit,
                max_member_bytes,
                member_limit,
                max_members,
                max_ratio,
            )
    except BaseException:
        for path in reversed(written):
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _extract(
    zf: zipfile.ZipFile,
    dest: Path,
    written: list[Path],
    max_total_bytes: int | None,
    total_limit: str,
    max_member_bytes: int | None,
    member_limit: str,
    max_members: int,
    max_ratio: float,
) -> int:
    members = zf.infolist()
    if len(members) > max_members:
        raise UnsafeArchive(f"env archive holds {len(members)} members, more than the {max_members} allowed")
    names: set[str] = set()
    for info in members:
        name = check_member_name(info.filename).as_posix()
        if name in names:
            raise UnsafeArchive(f"env archive holds {info.filename!r} twice")
        names.add(name)
        if max_member_bytes is not None and info.file_size > max_member_bytes:
            raise UnsafeArchive(
                f"env archive member {info.filename!r} expands to {info.file_size} bytes, past "
                f"{member_limit} ({max_member_bytes} bytes)"
            )
    _check_no_overlap(members)
    declared = sum(info.file_size for info in members)
    if max_total_bytes is not None and declared > max_total_bytes:
        raise UnsafeArchive(
            f"env archive expands to {declared} bytes, more than the {max_total_bytes} allowed ({total_limit})"
        )
    dest_real = dest.resolve()
    total = 0
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
        size = 0
        with zf.open(info) as src, open(target, "wb") as out:
            written.append(target)
            while chunk := src.read(_CHUNK_BYTES):
                size += len(chunk)
                total += len(chunk)
                if max_member_bytes is not None and size > max_member_bytes:
                    raise UnsafeArchive(
                        f"env archive member {info.filename!r} expands past {member_limit} "
                        f"({max_member_bytes} bytes)"
                    )
                if max_total_bytes is not None and total > max_total_bytes:
                    raise UnsafeArchive(f"env archive expands past {total_limit} ({max_total_bytes} bytes)")
                if size > RATIO_GRACE_BYTES and size > max_ratio * max(compressed_read(src, info), 1):
                    raise UnsafeArchive(
                        f"env archive member {info.filename!r} expands more than {max_ratio:g} times its "
                        f"compressed size: refused as a zip bomb"
                    )
                out.write(chunk)
        unix_mode = (info.external_attr >> 16) & 0o777
        target.chmod(0o755 if unix_mode & 0o111 else 0o644)
    return total


def compressed_read(src: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Compressed bytes of ``info`` read so far: the ratio is checked as the member expands, not
    only at its end (zipfile's reader keeps what it has left to read; its total otherwise)."""
    left = getattr(src, "_compress_left", None)
    return info.compress_size - left if isinstance(left, int) else info.compress_size


def _check_no_overlap(members: list[zipfile.ZipInfo]) -> None:
    """Refuse members whose data overlap (a bomb made of one compressed block read many times)."""
    ordered = sorted(members, key=lambda i: i.header_offset)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.header_offset + 30 + before.compress_size > after.header_offset:
            raise UnsafeArchive(
                f"env archive members {before.filename!r} and {after.filename!r} overlap: refused as a zip bomb"
            )


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
