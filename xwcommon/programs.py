"""Imported first by the command-line programs (xwclient, xwworker, xwserver console): aiohttp
without its default TLS contexts reading the system's certificate authorities.

As it is imported, aiohttp makes a verifying and a non-verifying default context, and each
reads the system's CA bundle: ~40 ms of CPU, a fifth of a client command. The project's
connections never use those defaults: each passes a context of its own, the deployment's CA
pinned (:func:`xwcommon.servers.pinned_ssl_context`) or, for a fetch from a public URL, the
system's authorities loaded then (:mod:`xwcommon.urlfetch`). Made without the system's CAs,
the verifying default trusts no one, so a connection that forgot its own context fails its
TLS check instead of trusting the system's authorities.

Only the programs import this module, before anything imports aiohttp; a program of a user
that imports the SDK (``xwclient``) keeps aiohttp as aiohttp makes itself.
"""

from __future__ import annotations

import ssl
import sys


def _skip(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
    return None


def import_aiohttp_without_system_cas() -> None:
    """Import aiohttp (once) while contexts do not load the system's default CAs."""
    if "aiohttp" in sys.modules:
        return
    saved = ssl.SSLContext.load_default_certs, ssl.SSLContext.set_default_verify_paths
    ssl.SSLContext.load_default_certs = _skip  # type: ignore[method-assign]
    ssl.SSLContext.set_default_verify_paths = _skip  # type: ignore[method-assign]
    try:
        import aiohttp.connector  # noqa: F401
    finally:
        ssl.SSLContext.load_default_certs, ssl.SSLContext.set_default_verify_paths = saved  # type: ignore[method-assign]


import_aiohttp_without_system_cas()
