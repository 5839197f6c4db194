"""Server addresses and the pinned TLS context: what a program needs to name and trust a
deployment's servers, without the HTTP client (the launchers of ``xwserver`` and ``xwworker``
use it; importing aiohttp costs each of them ~0.1 s of CPU)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from . import defaults
from .errors import ConfigError


def normalize_server(text: str) -> str:
    """``host``, ``host:port`` or ``https://host:port`` → ``https://host:port``; plaintext refused."""
    s = text.strip().rstrip("/")
    scheme, sep, rest = s.partition("://")
    if sep:  # schemes are case-insensitive: HTTP:// is plaintext too
        if scheme.lower() == "http":
            raise ConfigError(f"server {text!r}: plaintext http is refused; use https://")
        if scheme.lower() not in {"https", "xw"}:
            raise ConfigError(f"server {text!r}: unknown scheme {scheme}://; use https://")
        s = rest
    hostport = s.split("/", 1)[0]
    if not hostport.rsplit("]", 1)[-1].count(":"):
        hostport = f"{hostport}:{defaults.DEFAULT_PORT}"
    return "https://" + hostport


def pinned_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A client context that trusts the deployment CA and nothing else."""
    path = Path(ca_file)
    if not path.is_file():
        raise ConfigError(f"CA certificate {path} does not exist; copy the deployment's ca.pem there")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"ca.file: {path} is not a usable PEM certificate ({exc}); use the deployment's ca.pem"
        ) from exc
    return ctx
