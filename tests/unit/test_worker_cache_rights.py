"""The worker's cache is its own: other local users cannot read cached inputs, jobs still get them."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from xwcommon.protocol.work import DataRef
from xwworker.cache import DownloadCache


class FolderDownloader:
    """Serves data from a local folder, as the transport does: a temporary name, then the real one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def download(
        self, path: str, dest: str | os.PathLike[str], *, expected_sha256: str | None = None
    ) -> str:
        data_uid = path.split("/")[2]
        tmp = Path(f"{dest}.part")
        shutil.copyfile(self.folder / data_uid, tmp)
        assert hashlib.sha256(tmp.read_bytes()).hexdigest() == expected_sha256
        os.replace(tmp, dest)
        return str(dest)


async def test_cached_inputs_are_the_workers_alone(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    content = b"another user's private input\n"
    data_uid = str(uuid.uuid4())
    (served / data_uid).write_bytes(content)
    cache = DownloadCache(tmp_path / "cache", FolderDownloader(served))
    ref = DataRef(data_uid=data_uid, sha256=hashlib.sha256(content).hexdigest(), size=len(content))

    path = await cache.fetch(ref)

    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    # a file left readable by an older worker is closed on its next use
    path.chmod(0o444)
    assert await cache.fetch(ref) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
async def test_another_local_user_cannot_read_a_cached_input() -> None:
    # a folder every user may pass (pytest's own lies under a 0700 one): only the cache's
    # own rights are then in the way
    tmp_path = Path(tempfile.mkdtemp(prefix="xw-cache-"))
    tmp_path.chmod(0o755)
    try:
        await _another_user_reads(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


async def _another_user_reads(tmp_path: Path) -> None:
    for folder in tmp_path.parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            pytest.skip(f"{folder} is closed to other users anyway")
    served = tmp_path / "served"
    served.mkdir()
    content = b"secret\n"
    data_uid = str(uuid.uuid4())
    (served / data_uid).write_bytes(content)
    cache = DownloadCache(tmp_path / "cache", FolderDownloader(served))
    path = await cache.fetch(DataRef(data_uid=data_uid, sha256=hashlib.sha256(content).hexdigest()))

    other = subprocess.run(
        ["setpriv", "--reuid=65000", "--regid=65000", "--clear-groups", "--", "cat", str(path)],
        capture_output=True,
        check=False,
    )
    assert other.returncode != 0
    assert b"Permission denied" in other.stderr
    assert content not in other.stdout
