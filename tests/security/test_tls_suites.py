"""The server speaks TLS 1.3, or TLS 1.2 with AEAD suites only: a CBC-only client is refused.

testssl flagged the ECDHE-ECDSA CBC-SHA256/384 suites the server used to offer under TLS 1.2
(obsolete, LUCKY13). Each test connects to the real in-process server with Python's ssl.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from conftest import XW

#: every ECDHE CBC suite OpenSSL knows under TLS 1.2 (SHA1, SHA256 and SHA384 MACs)
CBC_SUITES = ":".join(
    [
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA",
    ]
)


def _handshake(xw: XW, ctx: ssl.SSLContext) -> tuple[str | None, str | None]:
    """(protocol, cipher) the server agreed to; raises ssl.SSLError if it refused."""
    url = urlsplit(xw.url)
    assert url.hostname is not None and url.port is not None
    with (
        socket.create_connection((url.hostname, url.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=url.hostname) as tls,
    ):
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None


def _client(xw: XW, *, ciphers: str | None = None, tls12_only: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(xw.ca_file)
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


async def test_a_client_offering_only_cbc_suites_is_refused(xw: XW) -> None:
    ctx = _client(xw, ciphers=CBC_SUITES, tls12_only=True)
    assert all(not c["aead"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2")
    # the server drops the handshake (no shared cipher); OpenSSL reports an EOF or an alert
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, xw, ctx)
    await xw.assert_healthy()


async def test_a_tls12_client_gets_an_aead_suite_even_when_it_prefers_cbc(xw: XW) -> None:
    ctx = _client(xw, ciphers=CBC_SUITES + ":ECDHE+AESGCM", tls12_only=True)
    version, cipher = await asyncio.to_thread(_handshake, xw, ctx)
    assert version == "TLSv1.2"
    assert cipher is not None and "GCM" in cipher, cipher


async def test_a_default_client_speaks_tls13(xw: XW) -> None:
    version, cipher = await asyncio.to_thread(_handshake, xw, _client(xw))
    assert version == "TLSv1.3", (version, cipher)
