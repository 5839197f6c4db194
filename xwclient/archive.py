"""Zip archives the client handles: job results it extracts (and, later, environments it builds).

A result archive is written by a volunteer worker, which the client does not trust: every
member name is checked before anything is written, so an archive that would write outside
its folder (``../x``, ``/etc/x``, ``C:\\x``, a symbolic link) is refused as a whole
("zip slip").
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from xwcommon import defaults
from xwcommon.errors import IntegrityError


class UnsafeArchive(IntegrityError):
    """Raised when an archive holds a member that would land outside its extraction folder."""

    code = "unsafe_archive"


def member_target(name: str, dest: Path) -> Path:
    """Where member ``name`` is extracted under ``dest``; :class:`UnsafeArchive` if outside."""
    # Zips made on Windows may use backslashes; treat them as separators for the check.
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    if (
        not norm
        or norm.startswith("/")
        or (os.name == "nt" and ":" in norm)  # a drive letter: C:/x or C:x
        or ".." in parts
        or "\x00" in norm
    ):
        raise UnsafeArchive(f"archive member {name!r} would be written outside {dest}; archive refused")
    root = dest.resolve()
    target = (root / norm).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchive(f"archive member {name!r} would be written outside {dest}; archive refused")
    return target


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_archive(zf: zipfile.ZipFile, dest: Path) -> None:
    """Refuse the whole archive if any member is unsafe; nothing is written."""
    for info in zf.infolist():
        member_target(info.filename, dest)
        if _is_symlink(info):
            raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link; archive refused")


#: most members a result archive may hold
RESULT_MAX_MEMBERS = 100_000
#: most bytes a member may expand to per compressed byte: DEFLATE reaches ~1030:1 on zeros only,
#: and real results stay far below; the refused archive is kept, so its owner can still open it
RESULT_MAX_RATIO = 500
#: bytes a member may expand to before its ratio is checked
RATIO_GRACE_BYTES = 1024 * 1024
_RATIO_READ_BYTES = 64 * 1024
#: disk left free when a result is extracted with no explicit size limit
DISK_RESERVE_BYTES = 64 * 1024 * 1024


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_total_bytes: int | None = None,
    max_members: int = RESULT_MAX_MEMBERS,
    max_ratio: float = RESULT_MAX_RATIO,
) -> list[Path]:
    """Extract ``archive`` into the folder ``dest`` (created); return the files written.

    Raises :class:`UnsafeArchive` (and writes nothing) when a member would escape ``dest``,
    and :class:`zipfile.BadZipFile` when ``archive`` is not a zip file. A zip bomb is refused
    while it expands (:class:`UnsafeArchive` naming the limit): more than ``max_members``
    members, more than ``max_total_bytes`` written (default: the free disk less a reserve), a
    member growing past ``max_ratio`` times the compressed bytes read for it.
    """
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        check_archive(zf, dest)
        members = zf.infolist()
        if len(members) > max_members:
            raise UnsafeArchive(
                f"result archive holds {len(members)} members, more than the {max_members} allowed"
            )
        dest.mkdir(parents=True, exist_ok=True)
        if max_total_bytes is None:
            max_total_bytes = max(0, shutil.disk_usage(dest).free - DISK_RESERVE_BYTES)
        declared = sum(info.file_size for info in members)
        if declared > max_total_bytes:
            raise UnsafeArchive(
                f"result archive expands to {declared} bytes, more than the {max_total_bytes} allowed here"
            )
        written: list[Path] = []
        total = 0
        for info in members:
            target = member_target(info.filename, dest)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with zf.open(info) as src, open(target, "wb") as out:
                written.append(target)
                # small reads: zipfile counts what it read ahead as consumed, which blurs the ratio
                while chunk := src.read(_RATIO_READ_BYTES):
                    size += len(chunk)
                    total += len(chunk)
                    if total > max_total_bytes:
                        raise UnsafeArchive(
                            f"result archive expands past the {max_total_bytes} bytes allowed here"
                        )
                    if size > RATIO_GRACE_BYTES and size > max_ratio * max(_compressed_read(src, info), 1):
                        raise UnsafeArchive(
                            f"result archive member {info.filename!r} expands more than {max_ratio:g} times "
                            "its compressed size: refused as a zip bomb"
                        )
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                # Keep the executable bits a job set, never set-uid/gid or world-writable.
                os.chmod(target, (mode & 0o755) | 0o600)
    return written


def _compressed_read(src: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Compressed bytes of ``info`` read so far (zipfile's reader keeps what it has left)."""
    left = getattr(src, "_compress_left", None)
    return info.compress_size - left if isinstance(left, int) else info.compress_size


def extract_replacing(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract into a fresh sibling folder, then put it in place of ``dest``.

    A refused or broken archive leaves ``dest`` as it was; a previous extraction is replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; results are ordinary files
        safe_extract(archive, staging)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- environments the client builds -------------------------------------------------------------------
#: the date written in every member of a built env archive, so that the same inputs always give
#: the same archive (same sha256): the upload cache then recognises it
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


class EnvConflict(IntegrityError):
    """Raised when two sources of one env archive would put different files under one name."""

    code = "env_conflict"


def env_members(sources: list[Path]) -> dict[str, tuple[Path | None, zipfile.ZipFile | None, str]]:
    """What an env archive built from ``sources`` holds: ``{member name: (file, zip, member)}``.

    - a directory gives its files, under their paths relative to it (its contents land at the
      top of the job's scratch directory, as ``cd DIR && zip -r``);
    - a zip file (``*.zip``) gives its members (checked: none may leave the scratch directory);
    - any other file gives itself, by its name.

    The same name from two sources is refused (:class:`EnvConflict`). Zip files are left open
    for the caller, who closes them (see :func:`build_env_archive`).
    """
    members: dict[str, tuple[Path | None, zipfile.ZipFile | None, str]] = {}

    def add(name: str, entry: tuple[Path | None, zipfile.ZipFile | None, str], origin: Path) -> None:
        if name in members:
            raise EnvConflict(f"--xwenv: {name!r} comes from two sources (the second is {origin})")
        members[name] = entry

    for src in sources:
        if src.is_dir():
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    add(path.relative_to(src).as_posix(), (path, None, ""), src)
        elif src.is_file() and zipfile.is_zipfile(src) and src.suffix.lower() == ".zip":
            zf = zipfile.ZipFile(src)
            for info in zf.infolist():
                member_target(info.filename, Path("env"))
                if _is_symlink(info):
                    raise UnsafeArchive(f"{src}: member {info.filename!r} is a symbolic link")
                if not info.is_dir():
                    add(info.filename.replace("\\", "/"), (None, zf, info.filename), src)
        elif src.is_file():
            add(src.name, (src, None, ""), src)
        else:
            raise FileNotFoundError(2, "no such file or directory", str(src))
    return members


def build_env_archive(sources: list[Path], dest: Path) -> Path:
    """One zip archive at ``dest`` holding ``sources`` as :func:`env_members` lays them out.

    The archive depends only on the names, contents and execute bits of its members (fixed
    dates, sorted names), so building it twice from the same inputs gives the same bytes.
    """
    members = env_members(sources)
    zips = {id(z): z for _, z, _ in members.values() if z is not None}
    try:
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as out:
            for name in sorted(members):
                path, zf, member = members[name]
                info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                if path is not None:
                    executable = os.access(path, os.X_OK)
                    info.external_attr = (0o755 if executable else 0o644) << 16
                    with open(path, "rb") as src, out.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, defaults.STREAM_CHUNK_BYTES)
                elif zf is not None:
                    original = zf.getinfo(member)
                    executable = bool((original.external_attr >> 16) & 0o111)
                    info.external_attr = (0o755 if executable else 0o644) << 16
                    with zf.open(original) as src, out.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, defaults.STREAM_CHUNK_BYTES)
    finally:
        for z in zips.values():
            z.close()
    return dest
