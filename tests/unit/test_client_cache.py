"""The client's cache of uploads and the progress bars: what they keep, show, and forget."""

from __future__ import annotations

import io
import json
import os

from xwclient.cache import UploadCache
from xwclient.progress import Progress


def test_the_cache_remembers_uploads_across_runs_until_cleaned(tmp_path):
    folder = tmp_path / "cache"
    given = tmp_path / "in.txt"
    given.write_text("x")
    cache = UploadCache(folder)
    cache.remember_sha256(given, "ab" * 32)
    cache.remember_data("https://h:1", "alice", "ab" * 32, "uid-1")
    cache.save()
    again = UploadCache(folder)
    assert again.known_sha256(given) == "ab" * 32
    assert again.data_uid("https://h:1", "alice", "ab" * 32) == "uid-1"
    assert again.data_uid("https://h:1", "bob", "ab" * 32) is None  # per login
    os.utime(given, ns=(1, 1))  # a changed file is hashed again
    assert again.known_sha256(given) is None
    assert again.clean() == 1 and not folder.exists()
    assert UploadCache(folder).data_uid("https://h:1", "alice", "ab" * 32) is None


def test_a_damaged_cache_is_ignored_not_fatal(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "uploads.json").write_text("{not json")
    cache = UploadCache(folder)
    assert cache.data_uid("s", "l", "h") is None
    cache.remember_data("s", "l", "h", "u")
    cache.save()
    assert json.loads((folder / "uploads.json").read_text())["data"] == {"s|l|h": "u"}


def test_a_bar_draws_on_its_stream_and_erases_itself_when_done():
    stream = io.StringIO()
    clock = iter(range(100))
    with Progress(stream, "uploading f", 4 << 20, now=lambda: float(next(clock))) as bar:
        bar.advance(1 << 20)
        bar.advance(3 << 20)
    text = stream.getvalue()
    assert "uploading f [######------------------]  25% 1.0 MiB/4.0 MiB" in text
    assert "100% 4.0 MiB/4.0 MiB" in text
    assert text.endswith("\r")  # the line is blanked: the command's output stays alone on the screen


def test_a_disabled_bar_writes_nothing():
    stream = io.StringIO()
    with Progress(stream, "waiting", 3, unit="jobs", enabled=False) as bar:
        bar.advance(3)
    assert stream.getvalue() == ""
