"""The deployment's keys: a private CA and the server certificate it signs.

``xwserver init`` makes one CA per deployment. Workers and clients are given its
``ca.pem`` and trust nothing else, so a server holding a certificate from any other
authority (a public one included) is refused. Private keys are created with mode 0600
and never replaced silently: re-keying a deployment means handing every worker and
client a new ``ca.pem``, so it has to be asked for.

Files in the keystore folder (mode 0700):

- ``ca.pem`` / ``ca.key``        the deployment CA (give ``ca.pem`` away, keep ``ca.key``)
- ``server.pem`` / ``server.key`` the server's certificate and key
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xwcommon.errors import ConfigError

from .settings import CA_CERT

log = logging.getLogger(__name__)

CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"

CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 3650
#: certificates start being valid a little in the past, so a volunteer's clock running
#: slow by a few minutes does not reject a freshly initialised server
BACKDATE_S = 3600

#: names always in the server certificate, so local tools and tests reach it by loopback
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class KeystorePaths:
    """Where a CA and a server certificate with their keys are."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def of(cls, keystore_dir: str | os.PathLike[str]) -> KeystorePaths:
        d = Path(keystore_dir)
        return cls(d / CA_CERT, d / CA_KEY, d / SERVER_CERT, d / SERVER_KEY)

    def all(self) -> tuple[Path, Path, Path, Path]:
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key)


# -- the public entry points ------------------------------------------------------------------------
def init_keystore(
    keystore_dir: str | os.PathLike[str], hosts: Sequence[str], *, force: bool = False
) -> KeystorePaths:
    """Create a deployment CA and a server certificate for ``hosts`` (plus loopback).

    Raises :class:`ConfigError` if any key or certificate is already there and ``force``
    is false: keys are never replaced silently.
    """
    return issue_certificate(keystore_dir, hosts, force=force, ca_common_name="XtremWeb-Py deployment CA")


def issue_certificate(
    dest_dir: str | os.PathLike[str],
    hosts: Sequence[str],
    *,
    ca_dir: str | os.PathLike[str] | None = None,
    include_loopback: bool = True,
    valid_days: int = SERVER_VALID_DAYS,
    not_before: dt.datetime | None = None,
    force: bool = False,
    ca_common_name: str = "XtremWeb-Py CA",
) -> KeystorePaths:
    """Write ``server.pem``/``server.key`` for ``hosts`` into ``dest_dir``.

    With ``ca_dir`` the certificate is signed by the CA found there (``ca.pem``/``ca.key``);
    without it a new CA is made in ``dest_dir`` too. Tests use this to stand up servers
    the deployment must refuse: a foreign CA, a name not in the certificate
    (``include_loopback=False``), an expired certificate (``not_before`` in the past and
    a short ``valid_days``).
    """
    dest = Path(dest_dir)
    own = KeystorePaths.of(dest)
    if ca_dir is None:
        paths = own
        targets: tuple[Path, ...] = own.all()
    else:
        ca = KeystorePaths.of(ca_dir)
        paths = KeystorePaths(ca.ca_cert, ca.ca_key, own.server_cert, own.server_key)
        targets = (own.server_cert, own.server_key)
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"keystore {dest} already holds keys ({', '.join(p.name for p in existing)}); "
            "refusing to replace them. Pass --force --new-keys to make new ones "
            "(every worker and client then needs the new ca.pem)"
        )
    _make_private_dir(dest)

    if ca_dir is None:
        ca_cert, ca_key = make_ca(ca_common_name, valid_days=CA_VALID_DAYS, not_before=not_before)
        _write_private(paths.ca_key, _key_pem(ca_key))
        _write_public(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert, ca_key = load_ca(paths.ca_cert, paths.ca_key)

    names = _unique([*hosts, *(LOOPBACK_NAMES if include_loopback else ())])
    if not names:
        raise ConfigError("a server certificate needs at least one host name")
    cert, key = make_server_certificate(ca_cert, ca_key, names, valid_days=valid_days, not_before=not_before)
    _write_private(paths.server_key, _key_pem(key))
    _write_public(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    log.info("server certificate for %s written to %s", ", ".join(names), paths.server_cert)
    return paths


#: the TLS 1.2 suites the server offers: forward secret (ECDHE) and AEAD only. CBC suites
#: (ECDHE-ECDSA-AES256-SHA384 and kin) are left out: their MAC-then-encrypt construction is
#: what LUCKY13 and its padding-oracle relatives attack, and every client of ours (Python's
#: ssl, OpenSSL 1.1+) speaks TLS 1.3 or an AEAD suite anyway. TLS 1.3 has AEAD suites only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def server_ssl_context(keystore_dir: str | os.PathLike[str]) -> ssl.SSLContext:
    """The server side TLS context: TLS 1.3, or TLS 1.2 with AEAD suites only; the server
    certificate loaded."""
    paths = KeystorePaths.of(keystore_dir)
    for p in (paths.server_cert, paths.server_key):
        if not p.is_file():
            raise ConfigError(f"{p} does not exist; create the keystore with: xwserver init")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    # no TLS 1.3 session tickets: our clients never resume a session, and making and sending
    # two tickets after each handshake was about a seventh of its server CPU
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(certfile=str(paths.server_cert), keyfile=str(paths.server_key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the server certificate {paths.server_cert}: {exc}") from exc
    return ctx


def certificate_hosts(cert_file: str | os.PathLike[str]) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for (its SANs)."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *san.get_values_for_type(x509.DNSName),
        *(str(a) for a in san.get_values_for_type(x509.IPAddress)),
    ]


def covers_host(cert_file: str | os.PathLike[str], host: str) -> bool:
    """Whether the certificate names ``host`` (IP addresses compared as addresses)."""
    wanted = _normalise_host(host)
    return any(_normalise_host(h) == wanted for h in certificate_hosts(cert_file))


# -- building blocks -----------------------------------------------------------------------------------
def make_ca(
    common_name: str, *, valid_days: int = CA_VALID_DAYS, not_before: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (path length 0: it signs server certificates only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "XtremWeb-Py"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    start = _start(not_before)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str],
    *,
    valid_days: int = SERVER_VALID_DAYS,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for ``hosts`` (names as DNS SANs, addresses as IP SANs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = _start(not_before)
    end = start + dt.timedelta(days=valid_days)
    end = min(end, ca_cert.not_valid_after_utc)  # a certificate cannot outlive its CA
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            sans.append(x509.DNSName(host))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "XtremWeb-Py"),
                    x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read a CA certificate and its key (as written by :func:`make_ca`)."""
    try:
        cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CA from {ca_cert} and {ca_key}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key}: expected an EC private key")
    return cert, key


# -- files -----------------------------------------------------------------------------------------------
def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask, and the folder may predate us


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file created with ``mode`` (a key is never readable by others,
    not even for an instant) and renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have cleared bits of a public file's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _start(not_before: dt.datetime | None) -> dt.datetime:
    if not_before is not None:
        return not_before
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=BACKDATE_S)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        n = n.strip()
        if n and _normalise_host(n) not in {_normalise_host(s) for s in seen}:
            seen[n] = None
    return list(seen)


def _normalise_host(host: str) -> str:
    h = host.strip().strip("[]").lower()
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        return h.rstrip(".")
