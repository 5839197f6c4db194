"""Application signatures: what a deployment's signing key signs, and how it is checked.

A deployment has one Ed25519 key pair for its applications. The private key stays with
the administrator, off the server (``xwserver keys signing`` makes the pair and says so);
the public key sits in the server's keystore and in every worker's config, pinned at
install time like the CA. ``xwsendapp --xwsign KEYFILE`` signs each binary; a worker that
has the public key runs only binaries whose signature verifies.

What is signed binds the content to its place: the binary's sha256, the application's
name and the binary's platform (os, cpu, normalized). A signature therefore cannot be moved
to another application, another platform or other content. A compromised server can refuse
to serve a binary, but it cannot make a worker run one the key did not sign: the worker
takes the public key from its own config, never from the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, XWError
from .platforms import normalize_cpu, normalize_os

if TYPE_CHECKING:  # cryptography is imported where a key is used: the client's every command
    # imports this module, and cryptography's import alone cost it ~30 ms of its ~250
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SignatureError",
    "fingerprint",
    "generate",
    "load_private_key",
    "load_public_key",
    "message",
    "sign",
    "verify",
]

#: the first line of every signed message: a version, so the format may change later
_DOMAIN = b"xtremweb-py application binary v1"


class SignatureError(XWError):
    """Raised when a binary's signature is missing, malformed or does not verify."""

    code = "bad_signature"
    http_status = 400


def message(app_name: str, os_name: str, cpu: str, sha256: str) -> bytes:
    """The bytes signed for one binary of one application on one platform."""
    fields = (app_name, normalize_os(os_name), normalize_cpu(cpu), sha256.lower())
    if any("\n" in f for f in fields):
        raise SignatureError("an application name, platform or digest holds a line break")
    return b"\n".join([_DOMAIN, *(f.encode("utf-8") for f in fields)])


def sign(key: Ed25519PrivateKey, app_name: str, os_name: str, cpu: str, sha256: str) -> str:
    """The signature of a binary, in standard base64."""
    return base64.b64encode(key.sign(message(app_name, os_name, cpu, sha256))).decode("ascii")


def verify(
    key: Ed25519PublicKey, signature: str | None, app_name: str, os_name: str, cpu: str, sha256: str
) -> None:
    """Return if ``signature`` is the deployment key's signature of this binary, else raise
    :class:`SignatureError` saying why."""
    where = f"the binary of application {app_name!r} for {normalize_os(os_name)}/{normalize_cpu(cpu)}"
    if not signature:
        raise SignatureError(f"{where} is not signed, and this deployment requires signed binaries")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"the signature of {where} is not base64") from None
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(raw, message(app_name, os_name, cpu, sha256))
    except InvalidSignature:
        raise SignatureError(
            f"{where} (sha256 {sha256}) does not match its signature: it was altered, or signed "
            "for another application, platform or deployment"
        ) from None


def generate() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short name of a public key (sha256 of its raw bytes, first 16 hex digits)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"no signing key {path}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key (make one with xwserver keys signing)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"no public signing key {path}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` to ``path``, mode 0600 from its creation on; never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem(key))
