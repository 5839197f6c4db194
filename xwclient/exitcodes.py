"""Exit codes of the client and the one place that turns an error into a message.

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     any other error (a job without result, a conflict, a local file problem…)
2     usage error: wrong command line, bad UID, invalid or missing config
3     authentication refused (wrong login or password) or permission refused
4     not found (no such job, data, application… visible to you)
5     server unreachable (none of ``dispatcher.servers`` answered)
6     TLS refused: the server's certificate is not signed by the deployment CA
130   interrupted (Ctrl-C)
====  ==========================================================================

Every error is one message on standard error, ``<program>: error: <what>; <what to do>``.
A command working on several objects (``xwresults A B``) goes on after a failure and exits
with the first failure's code. A macro stops at its first failing line and exits with that
line's code; its message names the file and the line and what took effect before it.
``xwsendwork --xwwait`` exits 1 when the job ends in ERROR or ABORTED.
"""

from __future__ import annotations

from xwcommon.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
    Forbidden,
    NotFound,
    ServerUnreachable,
    TLSError,
    XWError,
)

from .settings import ClientSettings

OK = 0
ERROR = 1
USAGE = 2
AUTH = 3
NOT_FOUND = 4
UNREACHABLE = 5
TLS = 6
INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, (BadRequest, ConfigError)):
        return USAGE
    if isinstance(exc, (AuthenticationError, Forbidden)):
        return AUTH
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, ServerUnreachable):
        return UNREACHABLE
    if isinstance(exc, TLSError):
        return TLS
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return ERROR


def describe_error(exc: BaseException, settings: ClientSettings | None = None) -> str:
    """What went wrong and, where the error alone does not say it, what to do."""
    config = f" in {settings.config_file}" if settings is not None else ""
    if isinstance(exc, AuthenticationError):
        return f"authentication refused: {exc}; check login and password{config}"
    if isinstance(exc, Forbidden):
        return f"permission refused: {exc}"
    if isinstance(exc, NotFound):
        return f"not found: {exc}"
    if isinstance(exc, TLSError):
        return f"{exc}; check that ca.file{config} is this deployment's CA certificate"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    if isinstance(exc, XWError):
        return str(exc) or exc.code
    return f"{type(exc).__name__}: {exc}"
