"""The error hierarchy shared by server, worker and client."""

from __future__ import annotations

from typing import Any


class XWError(Exception):
    """Root of every error raised on purpose by XtremWeb-Py."""

    #: machine-readable code sent on the wire
    code = "error"
    #: HTTP status the server answers with
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


class BadRequest(XWError):
    """Raised when a request or a command line is malformed or invalid."""

    code = "bad_request"
    http_status = 400


class AuthenticationError(XWError):
    """Raised when credentials or a token are missing, wrong or expired."""

    code = "unauthorized"
    http_status = 401


class Forbidden(XWError):
    """Raised when the caller is known but may not do what it asked."""

    code = "forbidden"
    http_status = 403


class NotFound(XWError):
    """Raised when an object does not exist or is not visible to the caller."""

    code = "not_found"
    http_status = 404


class Conflict(XWError):
    """Raised when a request conflicts with the current state (e.g. a forbidden transition)."""

    code = "conflict"
    http_status = 409


class Unprocessable(BadRequest):
    """Raised when each value is well formed but together they say something impossible
    (a cap below the target it caps): the request's shape is right, its content is not."""

    code = "unprocessable"
    http_status = 422


class HostDisabled(Forbidden):
    """Raised when a worker calls for a host an administrator disabled (it waits, then asks again)."""

    code = "host_disabled"


class HostUnknown(NotFound):
    """Raised when a worker names a host the server does not know for its identity (register again)."""

    code = "host_unknown"


class TaskGone(Conflict):
    """Raised when a worker reports on or uploads for a task that is no longer its live task
    (its lease expired, its job was removed or went elsewhere): drop it, report nothing."""

    code = "task_gone"


class Busy(XWError):
    """Raised when the server cannot serve a request now (pool saturated, a deadlock retried
    too often); ``retry_after_s`` says when to try again."""

    code = "busy"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int | None = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(XWError):
    """Raised when a body is larger than the configured limit."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(XWError):
    """Raised when a body comes with a content type the endpoint does not take (JSON
    endpoints take ``application/json`` only)."""

    code = "unsupported_media_type"
    http_status = 415


class StorageFull(XWError):
    """Raised when the server has no room left for what it was sent (its data store or its
    database): 507; the message says which. Try again later, not at once."""

    code = "storage_full"
    http_status = 507


class IntegrityError(XWError):
    """Raised when transferred content does not match its announced sha256 or size."""

    code = "integrity"
    http_status = 422


class TooManyRequests(XWError):
    """Raised when a caller is throttled; ``retry_after_s`` says when to try again."""

    code = "too_many_requests"
    http_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: int | None = None,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        #: whole seconds to wait, sent as the Retry-After header
        self.retry_after_s = retry_after_s


class ServerUnreachable(XWError):
    """Raised by a client or worker when no configured server answers."""

    code = "unreachable"
    http_status = 503


class ConfigError(XWError):
    """Raised when a configuration file or setting is invalid; the message names the key."""

    code = "config"
    http_status = 500


class TLSError(XWError):
    """Raised when the server's certificate is not signed by the deployment CA."""

    code = "tls"
    http_status = 495


_BY_CODE: dict[str, type[XWError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unprocessable,
        AuthenticationError,
        Forbidden,
        NotFound,
        Conflict,
        HostDisabled,
        HostUnknown,
        TaskGone,
        Busy,
        PayloadTooLarge,
        UnsupportedMediaType,
        StorageFull,
        IntegrityError,
        TooManyRequests,
        ServerUnreachable,
        ConfigError,
        TLSError,
    )
}


#: the code of a 429 that means "this login has too many logins in progress", not "too many
#: failures": a client with the right password just tries again a moment later
LOGIN_BUSY = "login_busy"


def error_from_wire(
    code: str, message: str, http_status: int, *, retry_after_s: int | None = None
) -> XWError:
    """Rebuild the error a server sent as ``{"error": code, "message": message}``."""
    cls = _BY_CODE.get(code, TooManyRequests if http_status == TooManyRequests.http_status else XWError)
    if issubclass(cls, TooManyRequests | Busy):
        return cls(message, code=code, http_status=http_status, retry_after_s=retry_after_s)
    return cls(message, code=code, http_status=http_status)
