"""The server's memory after load: the C heap's free pages go back to the system, and the
access log never stops (nor grows without bound) when its file cannot be written."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xwserver import accesslog, app
from xwserver.accesslog import AccessLogFile

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or app._libc_trim() is None, reason="malloc_trim is glibc's"
)


@glibc
def test_trimming_hands_the_c_heaps_free_pages_back_to_the_system() -> None:
    # In a process of its own: 200 MiB of 20 KiB C allocations (the size of a TLS record
    # buffer), one small block after them so the heap's top stays, then all but that freed.
    probe = textwrap.dedent(
        """
        import ctypes, json, psutil
        from xwserver.app import _libc_trim
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(20 * 1024) for _ in range(10_000)]
        for b in blocks:
            ctypes.memset(b, 1, 20 * 1024)
        pin = libc.malloc(64)
        for b in blocks:
            libc.free(b)
        before = psutil.Process().memory_info().rss
        _libc_trim()()
        after = psutil.Process().memory_info().rss
        print(json.dumps([before, after]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = (int(n) for n in done.stdout.strip("[]\n").split(","))
    assert before - after > 150 * 2**20, (before, after)


def test_a_log_file_that_cannot_be_written_keeps_its_lines_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.mkdir()  # opening it for appending fails (also for root, which ignores modes)
    log_file = AccessLogFile(path)
    log_file.lines += ["a\n", "b\n"]
    with pytest.raises(OSError):
        log_file.flush()
    assert log_file.lines == ["a\n", "b\n"]
    path.rmdir()
    log_file.lines.append("c\n")
    log_file.flush()
    assert path.read_text() == "a\nb\nc\n" and log_file.lines == []


def test_lines_kept_while_failing_are_bounded_oldest_dropped_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accesslog, "MAX_KEPT_LINES", 3)
    path = tmp_path / "access.log"
    path.mkdir()
    log_file = AccessLogFile(path)
    log_file.lines += [f"{n}\n" for n in range(5)]
    with pytest.raises(OSError):
        log_file.flush()
    assert log_file.lines == ["2\n", "3\n", "4\n"] and log_file.dropped == 2


async def test_the_flush_loop_outlives_a_failing_file_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(accesslog, "FLUSH_INTERVAL_S", 0.02)
    path = tmp_path / "access.log"
    path.mkdir()
    log_file = AccessLogFile(path)
    caplog.set_level(logging.INFO, logger="xwserver.accesslog")
    flushing = asyncio.create_task(log_file.run())
    try:
        log_file.lines.append("during\n")
        await asyncio.sleep(0.2)  # about ten failed flushes
        assert not flushing.done()
        path.rmdir()
        log_file.lines.append("after\n")
        for _ in range(100):
            if path.is_file() and path.read_text() == "during\nafter\n":
                break
            await asyncio.sleep(0.02)
        assert path.read_text() == "during\nafter\n"
    finally:
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot write the access log" in errors[0].getMessage()
    assert any("is written again" in r.getMessage() for r in caplog.records)
