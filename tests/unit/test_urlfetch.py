"""Fetching data by URL (xwcommon/urlfetch.py) against real web servers on loopback: plain
http, https with a CA given on purpose, a changed document, the size bound, and the public
addresses only mode that keeps a server from fetching its own network."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.webserver import WebServer

from xwcommon import urlfetch
from xwcommon.errors import BadRequest

DOC = b"1 2 3 4 5\n"
SHA = hashlib.sha256(DOC).hexdigest()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    with WebServer(tmp_path / "www", tls_dir=tmp_path / "tls") as server:
        yield server


async def test_an_https_document_is_fetched_hashed_and_written_once_checked(
    web: WebServer, tmp_path: Path
) -> None:
    url = web.put("doc.txt", DOC)
    dest = tmp_path / "cache" / SHA
    dest.parent.mkdir()
    got = await urlfetch.fetch(
        url,
        dest,
        max_bytes=1 << 20,
        timeout_s=30,
        ca_file=web.ca_file,
        expected_sha256=SHA,
        expected_size=len(DOC),
    )
    assert got == (SHA, len(DOC)) and dest.read_bytes() == DOC
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left


async def test_https_is_refused_without_the_ca_that_signed_the_server(web: WebServer) -> None:
    with pytest.raises(urlfetch.URLFetchError, match="cannot fetch"):
        await urlfetch.fetch(web.put("doc.txt", DOC), None, max_bytes=1 << 20, timeout_s=30)


async def test_a_changed_document_fails_with_what_changed_and_leaves_nothing(
    web: WebServer, tmp_path: Path
) -> None:
    url = web.put("doc.txt", b"1 2 3 4 6\n")  # same size, other content
    dest = tmp_path / SHA
    with pytest.raises(urlfetch.DocumentChanged, match="changed since it was inserted"):
        await urlfetch.fetch(
            url,
            dest,
            max_bytes=1 << 20,
            timeout_s=30,
            ca_file=web.ca_file,
            expected_sha256=SHA,
            expected_size=len(DOC),
        )
    web.put("doc.txt", DOC + b"more")
    with pytest.raises(urlfetch.DocumentChanged, match="longer than"):
        await urlfetch.fetch(
            url,
            dest,
            max_bytes=1 << 20,
            timeout_s=30,
            ca_file=web.ca_file,
            expected_sha256=SHA,
            expected_size=len(DOC),
        )
    assert list(tmp_path.glob(f"*{SHA}*")) == []


async def test_plain_http_works_and_the_size_bound_holds(tmp_path: Path) -> None:
    with WebServer(tmp_path / "www") as web:
        url = web.put("big.bin", b"x" * 5000)
        assert (await urlfetch.fetch(url, None, max_bytes=5000, timeout_s=30))[1] == 5000
        with pytest.raises(urlfetch.URLFetchError, match="larger than 4999 bytes"):
            await urlfetch.fetch(url, None, max_bytes=4999, timeout_s=30)
        with pytest.raises(urlfetch.URLFetchError, match="HTTP 404"):
            await urlfetch.fetch(f"{web.url}/missing", None, max_bytes=10, timeout_s=30)


async def test_public_only_refuses_loopback_by_address_and_by_name(tmp_path: Path) -> None:
    with WebServer(tmp_path / "www") as web:
        url = web.put("doc.txt", DOC)
        with pytest.raises(urlfetch.URLFetchError, match="not a public address"):
            await urlfetch.fetch(url, None, max_bytes=100, timeout_s=30, public_only=True)
        by_name = url.replace("127.0.0.1", "localhost")
        with pytest.raises(urlfetch.URLFetchError, match="not a public address"):
            await urlfetch.fetch(by_name, None, max_bytes=100, timeout_s=30, public_only=True)
        assert web.requests == []  # nothing reached the server


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "https://user:pw@example.org/x", "https://exa mple.org/", "https:///x"]
)
def test_what_is_not_a_plain_http_url_is_refused(url: str) -> None:
    with pytest.raises(BadRequest):
        urlfetch.check_url(url)


async def test_the_server_fetches_only_when_allowed_public_addresses_only_and_a_few_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from xwcommon.errors import Busy, Forbidden
    from xwserver import urls
    from xwserver.settings import ServerSettings

    with WebServer(tmp_path / "www") as web:
        url = web.put("doc.txt", DOC)
        closed = SimpleNamespace(settings=ServerSettings(home=tmp_path))
        with pytest.raises(Forbidden, match="data.url_fetch=false"):
            await urls.fetch_digest(closed, url)  # type: ignore[arg-type]
        public = SimpleNamespace(settings=ServerSettings(home=tmp_path, url_fetch=True))
        with pytest.raises(urlfetch.URLFetchError, match="not a public address"):
            await urls.fetch_digest(public, url)  # type: ignore[arg-type]
        private = SimpleNamespace(
            settings=ServerSettings(home=tmp_path, url_fetch=True, url_fetch_private=True)
        )
        assert await urls.fetch_digest(private, url) == (SHA, len(DOC))  # type: ignore[arg-type]
        monkeypatch.setattr(urls, "_fetching", urls.MAX_CONCURRENT_FETCHES)
        with pytest.raises(Busy, match="fetching 4 URLs already"):
            await urls.fetch_digest(private, url)  # type: ignore[arg-type]
        assert web.requests == ["/doc.txt"]
