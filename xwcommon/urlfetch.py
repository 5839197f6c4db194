"""Data by URL: fetch an ``http://`` or ``https://`` document, streamed, bounded and hashed.

A worker fetches the inputs and binaries inserted by URL straight from where they live
(xwworker/cache.py); the server fetches a URL once, when its administrator allows it, to
learn the size and sha256 of data inserted without them (xwserver/urls.py). Integrity
comes from the sha256 recorded at insertion, not from the transport: plain ``http://``
is accepted, and a document that changed since fails with :class:`DocumentChanged`.

``https://`` trusts the system's certificate authorities plus, if given, a CA file.
``public_only`` refuses every address that is not globally routable (loopback, private,
link-local...), checked on each address a name resolves to and on every redirect: what
a server that fetches URLs its users name needs so that it cannot be made to reach its
own network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .errors import BadRequest, XWError

__all__ = ["DocumentChanged", "URLFetchError", "check_url", "fetch", "is_url"]

MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 20


class URLFetchError(XWError):
    """Raised when a data URL cannot be fetched (refused, unreachable, an HTTP error, too big)."""

    code = "url_fetch_failed"
    http_status = 422


class DocumentChanged(URLFetchError):
    """Raised when the document at a data URL is not the one recorded at its insertion."""

    code = "document_changed"


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, of at most 2048 characters."""
    if not isinstance(url, str) or not is_url(url):
        raise BadRequest("a data URL must start with http:// or https://")
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"a data URL is at most {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise BadRequest("a data URL must not hold spaces or control characters")
    parts = urlsplit(url)
    if not parts.hostname:
        raise BadRequest(f"no host in the data URL {url!r}")
    if parts.username or parts.password:
        raise BadRequest("a data URL must not carry credentials (they would be shown to every reader)")
    try:
        parts.port  # noqa: B018  # raises on a port out of range
    except ValueError:
        raise BadRequest(f"bad port in the data URL {url!r}") from None
    return url


def _refuse_address(host: str) -> None:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if not address.is_global:
        raise URLFetchError(f"{host} is not a public address: this server fetches only public URLs")


class _PublicResolver(AbstractResolver):
    """Resolves names, refusing any that resolves to an address that is not global."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            _refuse_address(entry["host"])
        return found

    async def close(self) -> None:
        await self._inner.close()


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


async def fetch(
    url: str,
    dest: Path | None = None,
    *,
    max_bytes: int,
    timeout_s: float,
    ca_file: Path | None = None,
    public_only: bool = False,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
) -> tuple[str, int]:
    """Fetch ``url``; its (sha256, size). With ``dest`` the content is written there (to a
    temporary name first, renamed once checked); without, only hashed. Past ``max_bytes``,
    ``timeout_s`` in all, or a digest or size other than the expected ones, it fails."""
    check_url(url)
    connector = aiohttp.TCPConnector(
        ssl=_ssl_context(ca_file), resolver=_PublicResolver() if public_only else None, limit=1
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part") if dest is not None else None
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            return await _fetch(
                session, url, tmp, max_bytes, public_only, expected_sha256, expected_size, dest
            )
    except URLFetchError:
        raise
    except TimeoutError:
        raise URLFetchError(f"{url}: no complete answer within {timeout_s:g} s") from None
    except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
        raise URLFetchError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    tmp: Path | None,
    max_bytes: int,
    public_only: bool,
    expected_sha256: str | None,
    expected_size: int | None,
    dest: Path | None,
) -> tuple[str, int]:
    here = url
    for _hop in range(MAX_REDIRECTS + 1):
        host = urlsplit(here).hostname or ""
        if public_only:
            try:
                _refuse_address(host.strip("[]"))
            except ValueError:
                pass  # a name: the resolver checks what it resolves to
        async with session.get(here, allow_redirects=False) as answer:
            if answer.status in (301, 302, 303, 307, 308) and "Location" in answer.headers:
                here = check_url(urljoin(here, answer.headers["Location"]))
                continue
            if answer.status != 200:
                raise URLFetchError(f"{here} answered HTTP {answer.status} {answer.reason or ''}".rstrip())
            return await _read(answer, url, tmp, max_bytes, expected_sha256, expected_size, dest)
    raise URLFetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _read(
    answer: aiohttp.ClientResponse,
    url: str,
    tmp: Path | None,
    max_bytes: int,
    expected_sha256: str | None,
    expected_size: int | None,
    dest: Path | None,
) -> tuple[str, int]:
    limit = max_bytes if expected_size is None else min(max_bytes, expected_size)
    digest = hashlib.sha256()
    size = 0
    out: Any = open(tmp, "wb") if tmp is not None else None  # noqa: SIM115  # closed below
    try:
        async for chunk in answer.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                if expected_size is not None and size > expected_size:
                    raise DocumentChanged(
                        f"the document at {url} changed since it was inserted: it is longer than "
                        f"the {expected_size} bytes recorded"
                    )
                raise URLFetchError(f"{url} is larger than {max_bytes} bytes")
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    sha = digest.hexdigest()
    if (expected_sha256 is not None and sha != expected_sha256) or (
        expected_size is not None and size != expected_size
    ):
        raise DocumentChanged(
            f"the document at {url} changed since it was inserted: sha256 {sha} ({size} bytes), "
            f"recorded {expected_sha256} ({expected_size if expected_size is not None else '?'} bytes)"
        )
    if tmp is not None and dest is not None:
        os.replace(tmp, dest)
    return sha, size
