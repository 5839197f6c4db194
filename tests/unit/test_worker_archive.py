"""Env archives in (zip-slip refused) and result archives out (links and fifos skipped)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from xwworker.archive import UnsafeArchive, check_member_name, safe_extract, zip_directory


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../evil", "a/../../evil", "a/b/../../../evil", "C:/evil", "\\evil", "..\\evil"]
)
def test_member_names_leaving_the_destination_are_rejected(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        check_member_name(name)


@pytest.mark.parametrize("name", ["a", "a/b/c.txt", "a..b", "dir/", "./x"])
def test_ordinary_member_names_are_accepted(name: str) -> None:
    check_member_name(name)


def test_zip_slip_archive_writes_nothing_at_all(tmp_path: Path) -> None:
    dest = tmp_path / "scratch"
    dest.mkdir()
    archive = make_zip(tmp_path / "env.zip", {"ok.txt": b"fine", "../escaped.txt": b"evil"})
    with pytest.raises(UnsafeArchive, match=r"'\.\./escaped\.txt'"):
        safe_extract(archive, dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(dest.iterdir()) == []  # checked before anything is written


def test_absolute_member_is_rejected(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "env.zip", {"/tmp/xw-absolute-evil.txt": b"evil"})
    (tmp_path / "d").mkdir()
    with pytest.raises(UnsafeArchive, match="absolute"):
        safe_extract(archive, tmp_path / "d")


def test_extract_keeps_tree_and_execute_bits(tmp_path: Path) -> None:
    archive = tmp_path / "env.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/input.txt", b"42\n")
        info = zipfile.ZipInfo("bin/tool")
        info.external_attr = (0o104755) << 16  # setuid + rwx: only the x bits survive
        zf.writestr(info, b"#!/bin/sh\necho tool\n")
    dest = tmp_path / "scratch"
    dest.mkdir()
    assert safe_extract(archive, dest) == 3 + len(b"#!/bin/sh\necho tool\n")
    assert (dest / "data" / "input.txt").read_bytes() == b"42\n"
    assert (dest / "bin" / "tool").stat().st_mode & 0o7777 == 0o755
    assert (dest / "data" / "input.txt").stat().st_mode & 0o7777 == 0o644


def test_archive_larger_than_allowed_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 1_000_000)
    (tmp_path / "d").mkdir()
    with pytest.raises(UnsafeArchive, match="more than the 1000 allowed"):
        safe_extract(archive, tmp_path / "d", max_total_bytes=1000)


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "env.zip"
    bogus.write_bytes(b"this is not a zip")
    with pytest.raises(UnsafeArchive, match="not a zip"):
        safe_extract(bogus, tmp_path)


def test_result_zip_skips_links_fifos_and_excluded_names(tmp_path: Path) -> None:
    src = tmp_path / "scratch"
    (src / "sub").mkdir(parents=True)
    (src / "stdout.txt").write_text("out\n")
    (src / "sub" / "result.dat").write_bytes(b"\1\2\3")
    (src / "app").write_text("binary")
    secret = tmp_path / "secret.txt"
    secret.write_text("the volunteer's file")
    (src / "link-to-secret").symlink_to(secret)
    (src / "link-dir").symlink_to(tmp_path)
    os.mkfifo(src / "fifo")
    dest = tmp_path / "results" / "r.zip"
    files, size = zip_directory(src, dest, exclude=("app",))
    assert files == 2
    assert size == dest.stat().st_size
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == ["stdout.txt", "sub/", "sub/result.dat"]
        assert zf.read("sub/result.dat") == b"\1\2\3"
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist() if not i.is_dir())
    assert not (dest.parent / "r.zip.part").exists()
