"""A full disk answers 507 with a message naming the store, never a 500.

The server's data store is a real, small tmpfs mounted over ``var/data`` while the server runs
(the test mounts it, so it needs root and the right to mount; otherwise it is skipped with
the reason). Uploads (``POST /data``, what ``xwsenddata`` and ``xwsendapp`` send) and a
worker's result upload are pushed past its end: each is refused with ``storage_full`` and
nothing is left behind. An upload that announces more than the free space (minus the
``disk_reserve_bytes`` setting) is refused before its body is read, and a ``size`` that
disagrees with Content-Length at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from xwcommon import defaults
from xwcommon.errors import StorageFull
from xwcommon.transport import pinned_ssl_context

if TYPE_CHECKING:
    from conftest import XW

TMPFS_BYTES = 1024 * 1024
RESERVE_BYTES = 256 * 1024


@pytest.fixture
def server_conf() -> dict[str, str]:
    return {"max_body_bytes": str(10**12), "disk_reserve_bytes": str(RESERVE_BYTES)}


@pytest.fixture
def full_disk(xw: XW) -> Iterator[Path]:
    """A tmpfs of TMPFS_BYTES mounted over the running server's data store; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the data store needs root")
    store = xw.settings.data_dir
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(store)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (store / "tmp").mkdir()
        yield store
    finally:
        subprocess.run(["umount", "-l", str(store)], check=True)


def _stream(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body with no Content-Length (chunked): only the disk itself can stop it."""

    async def gen() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            n = min(chunk, total - sent)
            sent += n
            yield os.urandom(n)

    return gen()


def _leftovers(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file())


def _assert_storage_full(reply: Any) -> None:
    assert reply.status == 507, reply
    assert reply.body["error"] == "storage_full", reply
    assert "data store" in reply.body["message"], reply


async def test_an_upload_that_fills_the_disk_is_refused_with_507_and_leaves_nothing(
    xw: XW, full_disk: Path
) -> None:
    reply = await xw.call(
        "POST", "/data", token=xw.admin, data=_stream(2 * TMPFS_BYTES), params={"name": "big"}
    )
    _assert_storage_full(reply)
    assert "full" in reply.body["message"]
    assert _leftovers(full_disk) == []
    # what fits is still taken once the space is there again
    small = await xw.upload(xw.admin, b"small enough", name="small")
    assert small["size"] == len(b"small enough")
    await xw.assert_healthy()


async def test_an_announced_size_beyond_free_space_is_refused_before_the_body_is_read(
    xw: XW, full_disk: Path
) -> None:
    # 10 GB announced, nothing sent: the answer comes at once, without waiting for the body
    status, body = await asyncio.wait_for(_raw_post(xw, "/data?name=huge", 10 * 10**9, b""), 10)
    assert status == 507, body
    assert b"storage_full" in body and b"data store" in body
    # the reserve counts: what would fit in the disk but not beside the reserve is refused
    fits_disk = TMPFS_BYTES - RESERVE_BYTES // 2
    reply = await xw.call("POST", "/data", token=xw.admin, data=b"x" * fits_disk, params={"name": "reserve"})
    _assert_storage_full(reply)
    left = TMPFS_BYTES - RESERVE_BYTES
    assert f"{fits_disk} bytes announced, {left} bytes left" in reply.body["message"], reply
    assert _leftovers(full_disk) == []
    await xw.assert_healthy()


async def test_a_size_that_disagrees_with_content_length_is_refused_at_once(xw: XW, full_disk: Path) -> None:
    status, body = await asyncio.wait_for(_raw_post(xw, "/data?name=lie&size=5", 100_000, b""), 10)
    assert status == 422, body
    assert b"size=5" in body and b"100000" in body
    await xw.assert_healthy()


async def test_a_worker_result_upload_on_a_full_disk_is_507(xw: XW, full_disk: Path) -> None:
    await xw.insert_app(xw.admin, "tool")
    job = await xw.submit(xw.admin, "tool")
    host = await xw.register()
    [assignment] = await xw.request_work(host)
    assert assignment["job_uid"] == job["uid"]
    binary = _leftovers(full_disk)
    reply = await xw.call(
        "POST", f"/work/tasks/{assignment['task_uid']}/result", token=xw.worker, data=_stream(2 * TMPFS_BYTES)
    )
    _assert_storage_full(reply)
    # announced: refused before reading, with the code a worker backs off on
    archive = os.urandom(TMPFS_BYTES)
    reply = await xw.call(
        "POST",
        f"/work/tasks/{assignment['task_uid']}/result",
        token=xw.worker,
        data=archive,
        params={"sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive)},
    )
    _assert_storage_full(reply)
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"
    assert _leftovers(full_disk) == binary
    await xw.assert_healthy()


async def test_the_sdk_raises_storage_full_with_the_servers_message(
    xw: XW, full_disk: Path, tmp_path: Path
) -> None:
    from xwcommon.transport import Transport

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * TMPFS_BYTES))
    transport = Transport([xw.url], xw.ca_file, "admin", xw.admin_password, retry_for_s=5)
    try:
        with pytest.raises(
            StorageFull, match=r"data store \(.*\) is full: 2097152 bytes announced"
        ) as raised:
            await transport.upload("/data", big, params={"name": "big"})
    finally:
        await transport.close()
    assert raised.value.http_status == 507 and raised.value.code == "storage_full"
    assert _leftovers(full_disk) == []


async def _raw_post(xw: XW, path: str, content_length: int, body: bytes) -> tuple[int, bytes]:
    """POST with a Content-Length of our choosing and only ``body`` sent; the status and body
    of the answer (read without waiting for the rest of the announced body to be sent)."""
    url = urlsplit(xw.url)
    ctx: ssl.SSLContext = pinned_ssl_context(xw.ca_file)
    reader, writer = await asyncio.open_connection(url.hostname, url.port, ssl=ctx)
    try:
        head = (
            f"POST {defaults.API_PREFIX}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {xw.admin}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {content_length}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        answer = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), answer
    finally:
        writer.close()
