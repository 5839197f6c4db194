"""The deployment keystore: files, modes, certificate contents, and real TLS handshakes."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from xwcommon.errors import ConfigError
from xwcommon.transport import pinned_ssl_context
from xwserver import keystore
from xwserver.keystore import KeystorePaths, init_keystore, issue_certificate, server_ssl_context


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def deployment(tmp_path: Path) -> KeystorePaths:
    return init_keystore(tmp_path / "keystore", ["xw.example.org"])


# -- files and modes ---------------------------------------------------------------------------------
def test_init_writes_ca_and_server_files_in_the_keystore(tmp_path: Path) -> None:
    paths = init_keystore(tmp_path / "keystore", ["xw.example.org"])
    assert paths == KeystorePaths.of(tmp_path / "keystore")
    assert sorted(p.name for p in (tmp_path / "keystore").iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]


def test_private_keys_are_0600_and_the_folder_0700_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        paths = init_keystore(tmp_path / "keystore", ["xw.example.org"])
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keystore") == 0o700
    assert _mode(paths.ca_key) == 0o600
    assert _mode(paths.server_key) == 0o600
    assert _mode(paths.ca_cert) == 0o644
    assert _mode(paths.server_cert) == 0o644


def test_an_existing_folder_is_made_private(tmp_path: Path) -> None:
    (tmp_path / "keystore").mkdir(mode=0o755)
    os.chmod(tmp_path / "keystore", 0o755)
    init_keystore(tmp_path / "keystore", ["localhost"])
    assert _mode(tmp_path / "keystore") == 0o700


def test_existing_keys_are_never_replaced_without_force(deployment: KeystorePaths) -> None:
    before = {p: p.read_bytes() for p in deployment.all()}
    with pytest.raises(ConfigError, match="already holds keys.*--force"):
        init_keystore(deployment.ca_cert.parent, ["xw.example.org"])
    assert {p: p.read_bytes() for p in deployment.all()} == before


def test_a_single_leftover_file_is_enough_to_refuse(tmp_path: Path) -> None:
    d = tmp_path / "keystore"
    d.mkdir()
    (d / "server.key").write_text("left over\n")
    with pytest.raises(ConfigError, match=r"server\.key"):
        init_keystore(d, ["localhost"])
    assert (d / "server.key").read_text() == "left over\n"
    assert not (d / "ca.key").exists()


def test_force_replaces_every_key(deployment: KeystorePaths) -> None:
    before = {p: p.read_bytes() for p in deployment.all()}
    init_keystore(deployment.ca_cert.parent, ["xw.example.org"], force=True)
    after = {p: p.read_bytes() for p in deployment.all()}
    assert all(before[p] != after[p] for p in deployment.all())
    assert _mode(deployment.ca_key) == 0o600
    assert not [p for p in deployment.ca_cert.parent.iterdir() if p.name.endswith(".tmp")]


# -- certificate contents --------------------------------------------------------------------------------
def test_server_certificate_names_the_hosts_and_loopback(tmp_path: Path) -> None:
    paths = init_keystore(tmp_path / "ks", ["xw.example.org", "10.1.2.3", "[2001:db8::1]"])
    san = _cert(paths.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["localhost", "xw.example.org"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("2001:db8::1"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert keystore.covers_host(paths.server_cert, "XW.example.org")
    assert keystore.covers_host(paths.server_cert, "::1")
    assert not keystore.covers_host(paths.server_cert, "other.example.org")


def test_loopback_names_are_not_repeated(tmp_path: Path) -> None:
    paths = init_keystore(tmp_path / "ks", ["localhost", "127.0.0.1"])
    hosts = keystore.certificate_hosts(paths.server_cert)
    assert sorted(hosts) == sorted(["localhost", "127.0.0.1", "::1"])


def test_ca_may_only_sign_certificates_and_lasts_ten_years(deployment: KeystorePaths) -> None:
    ca = _cert(deployment.ca_cert)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and not ku.value.digital_signature
    assert ca.issuer == ca.subject
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) <= lifetime <= dt.timedelta(days=3651)


def test_server_certificate_is_signed_by_the_ca_for_server_auth_only(deployment: KeystorePaths) -> None:
    ca, server = _cert(deployment.ca_cert), _cert(deployment.server_cert)
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.not_valid_before_utc < dt.datetime.now(dt.UTC) < server.not_valid_after_utc
    assert server.not_valid_after_utc <= ca.not_valid_after_utc


def test_a_foreign_ca_does_not_sign_the_deployment_certificate(
    tmp_path: Path, deployment: KeystorePaths
) -> None:
    foreign = issue_certificate(tmp_path / "foreign", ["localhost"])
    with pytest.raises((ValueError, TypeError)):
        _cert(foreign.server_cert).verify_directly_issued_by(_cert(deployment.ca_cert))


# -- real TLS over loopback -----------------------------------------------------------------------------
async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> bytes:
    """Serve one TLS connection on loopback; the client sends ping, the server answers pong."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(4) == b"ping":
                writer.write(b"pong")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
        )
        try:
            writer.write(b"ping")
            await writer.drain()
            return await reader.readexactly(4)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_client_pinned_to_the_ca_talks_to_the_server(deployment: KeystorePaths) -> None:
    server_ctx = server_ssl_context(deployment.ca_cert.parent)
    client_ctx = pinned_ssl_context(deployment.ca_cert)
    assert await _handshake(server_ctx, client_ctx, "localhost") == b"pong"
    assert await _handshake(server_ctx, client_ctx, "xw.example.org") == b"pong"


async def test_a_server_with_a_foreign_ca_certificate_is_refused(
    tmp_path: Path, deployment: KeystorePaths
) -> None:
    foreign = issue_certificate(tmp_path / "foreign", ["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(
            server_ssl_context(foreign.server_cert.parent),
            pinned_ssl_context(deployment.ca_cert),
            "localhost",
        )


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path, deployment: KeystorePaths) -> None:
    other = issue_certificate(
        tmp_path / "other", ["other.example.org"], ca_dir=deployment.ca_cert.parent, include_loopback=False
    )
    assert other.ca_cert == deployment.ca_cert
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
        await _handshake(
            server_ssl_context(other.server_cert.parent), pinned_ssl_context(deployment.ca_cert), "localhost"
        )


async def test_an_expired_certificate_is_refused(tmp_path: Path, deployment: KeystorePaths) -> None:
    expired = issue_certificate(
        tmp_path / "expired",
        ["localhost"],
        ca_dir=deployment.ca_cert.parent,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
        valid_days=1,
    )
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        await _handshake(
            server_ssl_context(expired.server_cert.parent),
            pinned_ssl_context(deployment.ca_cert),
            "localhost",
        )


def test_the_server_context_accepts_tls_1_2_and_newer_only(deployment: KeystorePaths) -> None:
    ctx = server_ssl_context(deployment.ca_cert.parent)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_missing_server_certificate_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="xwserver init"):
        server_ssl_context(tmp_path / "nothing")
