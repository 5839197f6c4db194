"""Result extraction refuses archives that would write outside their folder (zip slip)."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from xwclient.archive import UnsafeArchive, extract_replacing, member_target, safe_extract


def make_zip(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, content)
    return path


def test_a_well_formed_result_is_extracted_with_its_folders(tmp_path):
    archive = make_zip(
        tmp_path / "r.zip",
        {"stdout.txt": b"out\n", "stderr.txt": b"", "sub/dir/file.bin": b"\x00\x01", "sub/": b""},
    )
    written = safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "stdout.txt").read_bytes() == b"out\n"
    assert (tmp_path / "out" / "sub" / "dir" / "file.bin").read_bytes() == b"\x00\x01"
    assert len(written) == 3


@pytest.mark.parametrize(
    "evil",
    ["../escape.txt", "a/../../escape.txt", "/tmp/abs.txt", "..\\escape.txt", "a\\..\\..\\escape.txt", ".."],
)
def test_members_escaping_the_folder_are_refused_and_nothing_is_written(tmp_path, evil):
    archive = make_zip(tmp_path / "evil.zip", {"first.txt": b"ok", evil: b"pwned"})
    dest = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchive, match="outside"):
        safe_extract(archive, dest)
    assert not dest.exists()  # refused before the first write
    assert not (tmp_path / "deep" / "escape.txt").exists()


def test_symbolic_links_are_refused(tmp_path):
    archive = make_zip(tmp_path / "link.zip", {"link": b"/etc/passwd"}, modes={"link": stat.S_IFLNK | 0o777})
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_member_names_that_stay_inside_are_accepted(tmp_path):
    assert member_target("a/./b/c.txt", tmp_path) == (tmp_path / "a" / "b" / "c.txt").resolve()
    assert member_target("..hidden", tmp_path) == (tmp_path / "..hidden").resolve()
    assert member_target("win\\style.txt", tmp_path) == (tmp_path / "win" / "style.txt").resolve()


def test_any_parent_reference_is_refused_even_one_that_would_stay_inside(tmp_path):
    # Workers never write such names; refusing them all keeps the rule simple to check.
    with pytest.raises(UnsafeArchive):
        member_target("a/b/../c.txt", tmp_path)


def test_executable_bits_are_kept_but_never_setuid_or_world_writable(tmp_path):
    archive = make_zip(
        tmp_path / "m.zip",
        {"run.sh": b"#!/bin/sh\n", "w.txt": b"x"},
        modes={"run.sh": stat.S_IFREG | 0o4755, "w.txt": stat.S_IFREG | 0o666},
    )
    safe_extract(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "w.txt").stat().st_mode) == 0o644


def test_a_new_extraction_replaces_the_previous_one(tmp_path):
    dest = tmp_path / "ResultsOf_x"
    extract_replacing(make_zip(tmp_path / "1.zip", {"old.txt": b"1"}), dest)
    extract_replacing(make_zip(tmp_path / "2.zip", {"new.txt": b"2"}), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_refused_archive_leaves_the_previous_extraction_alone(tmp_path):
    dest = tmp_path / "ResultsOf_x"
    extract_replacing(make_zip(tmp_path / "1.zip", {"good.txt": b"1"}), dest)
    with pytest.raises(UnsafeArchive):
        extract_replacing(make_zip(tmp_path / "2.zip", {"../bad.txt": b"2"}), dest)
    assert (dest / "good.txt").read_bytes() == b"1"
    assert not (tmp_path / "bad.txt").exists()


def test_a_file_that_is_not_a_zip_is_reported(tmp_path):
    (tmp_path / "r.zip").write_bytes(b"this is not a zip")
    with pytest.raises(zipfile.BadZipFile):
        safe_extract(tmp_path / "r.zip", tmp_path / "out")
