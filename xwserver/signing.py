"""The deployment's application-signing policy, and ``xwserver keys signing``.

The private key never stays on the server: ``make_signing_key`` writes it where the
administrator says (then keeps it elsewhere), the public key goes to
``keystore/app-signing.pub`` and into the home's worker config (``signing.key``), so that
workers installed from this home pin it as they pin the CA.

``apps.signatures=required`` (the default) refuses binaries without a valid signature as
soon as the public key exists. A home without one (every home made before signatures
existed, and a new one until its administrator runs ``xwserver keys signing``) accepts
unsigned binaries, and the server says so in a warning at every start.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import bindparam, select

from xwcommon import signing
from xwcommon.errors import ConfigError

from .db.models import AppBinary, Data
from .settings import ServerSettings

PUBLIC_KEY_NAME = "app-signing.pub"


def public_key_path(settings: ServerSettings) -> Path:
    return settings.keystore_dir / PUBLIC_KEY_NAME


@dataclass(frozen=True)
class SigningPolicy:
    """What the server does with the signatures of inserted binaries."""

    key: Ed25519PublicKey | None
    required: bool

    @classmethod
    def of(cls, settings: ServerSettings) -> SigningPolicy:
        path = public_key_path(settings)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return cls(None, False)
        return _load(str(path), stamp, settings.app_signatures == "required")

    def warning(self) -> str | None:
        """What an administrator must hear at start, if anything."""
        if self.key is None:
            return (
                "this deployment has no application-signing key: binaries are accepted unsigned "
                "and workers run them unchecked; make one with: xwserver keys signing --home HOME"
            )
        if not self.required:
            return "apps.signatures=optional: unsigned binaries are accepted"
        return None

    def check(self, signature: str | None, app_name: str, os_name: str, cpu: str, sha256: str) -> None:
        """Raise :class:`~xwcommon.signing.SignatureError` (400) unless the binary may be
        inserted: a signature, when given, must verify; none is refused when required."""
        if self.key is None:
            return
        if signature is None and not self.required:
            return
        signing.verify(self.key, signature, app_name, os_name, cpu, sha256)


_cache: dict[tuple[str, int, bool], SigningPolicy] = {}


def _load(path: str, stamp: int, required: bool) -> SigningPolicy:
    found = _cache.get((path, stamp, required))
    if found is None:
        found = SigningPolicy(signing.load_public_key(Path(path)), required)
        _cache.clear()
        _cache[(path, stamp, required)] = found
    return found


@dataclass(frozen=True)
class MadeKey:
    private_key: Path
    public_key: Path
    fingerprint: str
    worker_conf: Path | None


def make_signing_key(settings: ServerSettings, private_out: Path, *, force: bool = False) -> MadeKey:
    """Make the deployment's signing key pair: the private key to ``private_out`` (which must
    not exist: a key is never overwritten), the public key into the keystore, and
    ``signing.key`` into the home's worker config."""
    public = public_key_path(settings)
    if public.exists() and not force:
        raise ConfigError(
            f"this deployment has a signing key already ({public}); --force replaces it, and every "
            "application must then be signed again with the new key and every worker given the new "
            "public key"
        )
    if private_out.exists():
        raise ConfigError(f"{private_out} exists; choose another --out (a key is never overwritten)")
    private_out.parent.mkdir(parents=True, exist_ok=True)
    key = signing.generate()
    signing.write_private_key(private_out, key)
    settings.keystore_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = public.with_name(f".{public.name}.{os.getpid()}.tmp")
    tmp.write_bytes(signing.public_pem(key.public_key()))
    tmp.chmod(0o644)
    os.replace(tmp, public)
    worker_conf: Path | None = settings.conf_dir / "xtremweb.worker.conf"
    if worker_conf is not None and worker_conf.is_file():
        set_conf_key(worker_conf, "signing.key", str(public))
    else:
        worker_conf = None
    return MadeKey(private_out, public, signing.fingerprint(key.public_key()), worker_conf)


def set_conf_key(path: Path, key: str, value: str) -> None:
    """Set ``key=value`` in a properties file (its line, set or commented out, else a new
    line at the end), keeping the file's mode."""
    text = path.read_text(encoding="utf-8")
    line = f"{key}={value}"
    pattern = re.compile(rf"^#?{re.escape(key)}\s*[=:].*$", re.MULTILINE)
    new, count = pattern.subn(lambda _m: line, text, count=1)
    if not count:
        new = text.rstrip("\n") + "\n" + line + "\n"
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.replace(tmp, path)


#: what the claim adds to an assignment's binary on a cache miss (xwserver/scheduler.py):
#: the signature, the platform it was signed for, and the URL of data inserted by URL
BINARY_DETAILS = (
    select(AppBinary.app_id, AppBinary.os, AppBinary.cpu, Data.uid, AppBinary.signature, Data.url)
    .join(Data, Data.id == AppBinary.data_id)
    .where(AppBinary.app_id.in_(bindparam("app_ids", expanding=True)))
)

#: a task's inputs, with the URL of those inserted by URL
INPUTS = select(Data.id, Data.uid, Data.sha256, Data.size, Data.url).where(
    Data.id.in_(bindparam("ids", expanding=True))
)
