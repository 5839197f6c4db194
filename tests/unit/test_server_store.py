"""The content-addressed store: atomic writes, nothing under a real name after a failure."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xwcommon.errors import IntegrityError, PayloadTooLarge
from xwserver.store import DataStore


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if fail_after is not None and i == fail_after:
            raise ConnectionResetError("client went away")
        yield part


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> DataStore:
    return DataStore(tmp_path / "data")


async def test_a_stream_is_stored_under_its_sha256(store: DataStore) -> None:
    parts = [os.urandom(700_000), os.urandom(700_000), b"tail"]
    digest, size = await store.put(_chunks(*parts), max_bytes=10**7)
    whole = b"".join(parts)
    assert (digest, size) == (hashlib.sha256(whole).hexdigest(), len(whole))
    assert store.path_of(digest) == store.root / digest[:2] / digest
    assert store.path_of(digest).read_bytes() == whole
    assert _files(store.root) == [store.path_of(digest)]  # tmp/ is empty


async def test_the_same_content_twice_is_one_file(store: DataStore) -> None:
    a = await store.put(_chunks(b"same"), max_bytes=100, expected_sha256=hashlib.sha256(b"same").hexdigest())
    b = await store.put_bytes(b"same")
    assert a == b
    assert len(_files(store.root)) == 1


async def test_a_wrong_sha256_stores_nothing(store: DataStore) -> None:
    with pytest.raises(IntegrityError, match="differs from the announced"):
        await store.put(_chunks(b"abc"), max_bytes=100, expected_sha256="0" * 64)
    assert _files(store.root) == []


async def test_a_wrong_size_stores_nothing(store: DataStore) -> None:
    with pytest.raises(IntegrityError, match="received 3 bytes but 4 were announced"):
        await store.put(_chunks(b"abc"), max_bytes=100, expected_size=4)
    assert _files(store.root) == []


async def test_a_body_over_the_limit_stops_and_stores_nothing(store: DataStore) -> None:
    with pytest.raises(PayloadTooLarge, match="limit of 1000 bytes"):
        await store.put(_chunks(b"x" * 600, b"x" * 600, b"never read"), max_bytes=1000)
    assert _files(store.root) == []


async def test_a_stream_cut_short_leaves_no_file(store: DataStore) -> None:
    with pytest.raises(ConnectionResetError):
        await store.put(_chunks(os.urandom(2_000_000), b"more", fail_after=1), max_bytes=10**7)
    assert _files(store.root) == []


async def test_a_failure_keeps_what_was_stored_before(store: DataStore) -> None:
    digest, _ = await store.put_bytes(b"keep me")
    with pytest.raises(IntegrityError):
        await store.put(_chunks(b"keep me"), max_bytes=100, expected_size=1)
    assert _files(store.root) == [store.path_of(digest)]
    assert store.exists(digest)


async def test_delete_and_collect_remove_only_unreferenced_files(store: DataStore) -> None:
    keep, _ = await store.put_bytes(b"keep")
    drop, _ = await store.put_bytes(b"drop")
    other, _ = await store.put_bytes(b"other")
    store.delete(other)
    store.delete(other)  # twice is fine
    assert store.collect([keep]) == 1
    assert _files(store.root) == [store.path_of(keep)]
    assert not store.exists(drop)
