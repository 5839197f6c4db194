"""Zip bombs, real ones (a 3 MB zip of one 3 GiB member), are refused while they expand.

The worker's env archive and the client's result archive are both bounded by a total size,
a member count and a compression ratio; each refusal names its limit and leaves nothing
written. A bomb must never actually expand: each test checks the disk stayed clean.
"""

from __future__ import annotations

import time
import uuid
import zipfile
from pathlib import Path

import pytest
from helpers.zipbomb import write_zip_bomb

from xwclient import archive as client_archive
from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwworker import archive as worker_archive
from xwworker.executor import Executor
from xwworker.sandbox import ResourceLimits


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.zip")


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_the_bomb_is_what_it_claims(bomb: Path) -> None:
    assert bomb.stat().st_size < 5 * 1024**2
    with zipfile.ZipFile(bomb) as zf:
        (info,) = zf.infolist()
        assert info.file_size == 3 * 1024**3


def test_the_worker_refuses_an_env_bomb_by_its_ratio_within_seconds(bomb: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(worker_archive.UnsafeArchive, match="200 times its compressed size"):
        worker_archive.safe_extract(
            bomb, tmp_path, max_total_bytes=10 * 1024**3, max_member_bytes=4 * 1024**3
        )
    assert time.monotonic() - started < 5
    assert tree_bytes(tmp_path) == 0


def test_the_worker_names_limit_file_bytes_for_a_member_past_it(bomb: Path, tmp_path: Path) -> None:
    with pytest.raises(worker_archive.UnsafeArchive, match=r"limit\.file_bytes \(1048576 bytes\)"):
        worker_archive.safe_extract(bomb, tmp_path, max_member_bytes=1024 * 1024)
    assert tree_bytes(tmp_path) == 0


def test_a_member_that_lies_about_its_size_is_still_stopped_at_the_total(tmp_path: Path) -> None:
    # honest zeros at a ratio the check lets pass, against a total counted as written
    src = tmp_path / "env.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", bytes(3 * 1024 * 1024))
        zf.writestr("b.bin", bytes(3 * 1024 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(worker_archive.UnsafeArchive, match="the job's declared disk need"):
        worker_archive.safe_extract(
            src, out, max_total_bytes=4 * 1024 * 1024, total_limit="the job's declared disk need"
        )
    assert tree_bytes(out) == 0


def test_too_many_members_and_duplicates_are_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(11):
            zf.writestr(f"f{i}", b"x")
    with pytest.raises(worker_archive.UnsafeArchive, match="11 members, more than the 10 allowed"):
        worker_archive.safe_extract(many, tmp_path / "a", max_members=10)
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as zf:
        zf.writestr("same", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("same", b"2")
    with pytest.raises(worker_archive.UnsafeArchive, match="twice"):
        worker_archive.safe_extract(twice, tmp_path / "b")


async def test_a_job_with_an_env_bomb_ends_error_naming_the_limit_within_seconds(
    bomb: Path, tmp_path: Path
) -> None:
    binary = tmp_path / "cache" / "app"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\necho ran\n")
    ex = Executor(tmp_path / "work", limits=ResourceLimits(file_bytes=4 * 1024**3))
    a = Assignment(
        task_uid=str(uuid.uuid4()),
        job_uid=str(uuid.uuid4()),
        seq=1,
        app_name="app",
        args=[],
        lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid=str(uuid.uuid4()), sha256="0" * 64),
        min_disk_bytes=100 * 1024**2,
    )
    started = time.monotonic()
    outcome = await ex.run(a, binary, env_archive=bomb)

    assert time.monotonic() - started < 10
    assert outcome.status is TaskStatus.ERROR
    # the declared size alone is past the job's declared disk need: refused before writing
    assert outcome.message is not None and "the job's declared disk need" in outcome.message, outcome.message
    assert outcome.exit_code is None  # the app never ran
    assert tree_bytes(ex.scratch_of(a.task_uid)) < 1024 * 1024


def test_the_client_refuses_a_result_bomb_by_its_ratio_and_keeps_the_old_folder(
    bomb: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "ResultsOf_x"
    dest.mkdir()
    (dest / "stdout.txt").write_text("previous\n")
    started = time.monotonic()
    with pytest.raises(client_archive.UnsafeArchive, match="500 times its compressed size"):
        client_archive.extract_replacing(bomb, dest)
    assert time.monotonic() - started < 5
    assert (dest / "stdout.txt").read_text() == "previous\n"
    assert tree_bytes(tmp_path) == 0 + len("previous\n")


def test_the_client_names_its_size_and_member_limits(bomb: Path, tmp_path: Path) -> None:
    with pytest.raises(client_archive.UnsafeArchive, match="more than the 1048576 allowed here"):
        client_archive.safe_extract(bomb, tmp_path / "a", max_total_bytes=1024 * 1024)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(3):
            zf.writestr(f"f{i}", b"x")
    with pytest.raises(client_archive.UnsafeArchive, match="3 members, more than the 2 allowed"):
        client_archive.safe_extract(many, tmp_path / "b", max_members=2)
