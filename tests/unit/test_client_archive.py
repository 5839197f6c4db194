"""Result extraction refuses archives that would write outside their folder (zip slip)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from xwclient.archive import (
    EnvConflict,
    UnsafeArchive,
    build_env_archive,
    extract_replacing,
    member_target,
    safe_extract,
)


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


# -- env archives the client builds (--xwenv) ----------------------------------------------------------
def _env_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (folder / "sub" / "run.sh").chmod(0o755)
    single = tmp_path / "extra.txt"
    single.write_text("gamma")
    packed = make_zip(tmp_path / "packed.zip", {"z/inside.txt": b"zeta", "z/": b""})
    return folder, single, packed


def test_an_env_holds_a_folders_contents_files_by_name_and_zip_members(tmp_path):
    folder, single, packed = _env_tree(tmp_path)
    archive = build_env_archive([folder, single, packed], tmp_path / "env.zip")
    out = tmp_path / "scratch"
    safe_extract(archive, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.txt",
        "extra.txt",
        "sub/run.sh",
        "z/inside.txt",
    ]
    assert (out / "z" / "inside.txt").read_text() == "zeta"
    assert os.access(out / "sub" / "run.sh", os.X_OK) and not os.access(out / "a.txt", os.X_OK)


def test_the_same_inputs_give_the_same_archive_bytes(tmp_path):
    folder, single, packed = _env_tree(tmp_path)
    first = build_env_archive([folder, single, packed], tmp_path / "1.zip").read_bytes()
    os.utime(single, (1_000_000, 1_000_000))  # dates are not part of the archive
    second = build_env_archive([folder, single, packed], tmp_path / "2.zip").read_bytes()
    assert first == second


def test_two_sources_of_one_name_and_unsafe_zips_are_refused(tmp_path):
    folder, _, _ = _env_tree(tmp_path)
    clash = tmp_path / "a.txt"
    clash.write_text("another alpha")
    with pytest.raises(EnvConflict, match="'a.txt' comes from two sources"):
        build_env_archive([folder, clash], tmp_path / "env.zip")
    evil = make_zip(tmp_path / "evil.zip", {"../outside.txt": b"x"})
    with pytest.raises(UnsafeArchive):
        build_env_archive([evil], tmp_path / "env2.zip")
    with pytest.raises(FileNotFoundError):
        build_env_archive([tmp_path / "missing"], tmp_path / "env3.zip")
