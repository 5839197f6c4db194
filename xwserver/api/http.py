"""Middlewares and helpers shared by the handlers."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from xwcommon import defaults
from xwcommon.errors import (
    AuthenticationError,
    BadRequest,
    Busy,
    IntegrityError,
    PayloadTooLarge,
    StorageFull,
    TooManyRequests,
    UnsupportedMediaType,
    XWError,
)
from xwcommon.protocol import Message, decode_json
from xwcommon.uri import LOCAL_SERVERS

from .. import events
from ..access import Caller
from ..data import EMPTY_BODY
from ..state import Server
from ..users import resolve_token

log = logging.getLogger(__name__)

SERVER_KEY = web.AppKey("server", Server)

# Typed keys for what auth_middleware stores on the request: aiohttp 3.14 warns about str
# keys (an error under the test suite's warnings-as-errors); older aiohttp has no RequestKey.
_RequestKey: Any = getattr(web, "RequestKey", None)
CALLER_KEY: Any = _RequestKey("caller", Caller) if _RequestKey else "caller"
TOKEN_KEY: Any = _RequestKey("token", str) if _RequestKey else "token"
#: the route's request type (a protocol ``Request``), for :func:`read_json`
BODY_TYPE_KEY: Any = _RequestKey("body_type", object) if _RequestKey else "body_type"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=Message)

#: the methods of a path as the route table documents them (a literal path over a template:
#: /jobs/bulk takes POST only, though /jobs/{uid} would match it too), for the Allow of a 405
#: (a module-level hook, not app state: aiohttp gives a 405's request no application)
ALLOW: dict[str, Callable[[str], str | None]] = {}

#: routes anyone may call without a token
PUBLIC_PATHS = {
    f"{defaults.API_PREFIX}/login",
    f"{defaults.API_PREFIX}/login/host",
    f"{defaults.API_PREFIX}/version",
    f"{defaults.API_PREFIX}/openapi.json",
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "integrity",
    429: "too_many_requests",
    507: "storage_full",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes JSON {"error", "message"}; never a traceback, never a 500 for bad input."""
    try:
        return await handler(request)
    except XWError as exc:
        response = error_response(exc.http_status, exc.code, exc.message)
        if isinstance(exc, TooManyRequests | Busy) and exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = (
                f"request body too large ({exc.reason}); the limit is set by max_json_bytes/max_body_bytes"
            )
        response = error_response(exc.status, code, message or exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
            documented = ALLOW.get("documented")
            allow = (documented(request.path) if documented else None) or exc.headers["Allow"]
            response.headers["Allow"] = allow
            response.text = json.dumps(
                {"error": code, "message": f"{request.method} is not allowed here; use {allow}"}
            )
        return response
    except (ConnectionResetError, web.RequestPayloadError) as exc:
        log.info("client went away during %s %s: %s", request.method, request.path, exc)
        return error_response(400, "bad_request", "the request body was cut short")
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            log.exception("internal error on %s %s", request.method, request.path)
            return _internal()
        log.error("disk full on %s %s: %s", request.method, request.path, exc)
        full = StorageFull("the server's disk is full; try again later or ask the administrator")
        return error_response(full.http_status, full.code, full.message)
    except PoolTimeout:
        # every database connection stayed busy for db_wait_s: the server is busy, the
        # request was fine (the hot path's transaction() says the same)
        log.warning("no database connection within db_wait_s for %s %s", request.method, request.path)
        busy = Busy("every database connection is busy; try again in a moment", retry_after_s=2)
        response = error_response(busy.http_status, busy.code, busy.message)
        response.headers["Retry-After"] = str(busy.retry_after_s)
        return response
    except DBAPIError as exc:
        if not _database_full(exc):
            log.exception("internal error on %s %s", request.method, request.path)
            return _internal()
        log.error("database full on %s %s: %s", request.method, request.path, exc.orig)
        full = StorageFull("the server's database is full; try again later or ask the administrator")
        return error_response(full.http_status, full.code, full.message)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return _internal()


def _internal() -> web.Response:
    return error_response(
        500, "internal", "internal server error; the administrator will find it in xwserver.log"
    )


#: how each database says its disk is full: SQLite (SQLITE_FULL), PostgreSQL (53100
#: disk_full), MariaDB (1021 ER_DISK_FULL, 1114 ER_RECORD_FILE_FULL)
_DATABASE_FULL = ("database or disk is full", "could not extend file", "no space left on device")


def _database_full(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "53100" or getattr(exc.orig, "pgcode", None) == "53100":
        return True
    args = getattr(exc.orig, "args", ())
    if args and args[0] in (1021, 1114):
        return True
    text = str(exc.orig).lower()
    return any(sign in text for sign in _DATABASE_FULL)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # xw:// URIs in this request must name this server (or one of its aliases)
    local = LOCAL_SERVERS.set(request.app[SERVER_KEY].settings.uri_hosts)
    try:
        return await _authenticated(request, handler)
    finally:
        LOCAL_SERVERS.reset(local)


async def _authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or not request.path.startswith(defaults.API_PREFIX + "/"):
        # beyond the API (/metrics, the dashboard) each part checks access its own way
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing bearer token; log in with POST /api/v1/login")
    caller = await resolve_token(request.app[SERVER_KEY], token.strip())
    request[CALLER_KEY] = caller
    request[TOKEN_KEY] = token.strip()
    acting = events.acting(caller.id, request.remote)  # who the event history names
    try:
        return await handler(request)
    finally:
        events.ACTOR.reset(acting)


def server_of(request: web.Request) -> Server:
    return request.app[SERVER_KEY]


def caller_of(request: web.Request) -> Caller:
    caller: Caller = request[CALLER_KEY]
    return caller


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_body(request: web.Request) -> bytes:
    """The whole JSON body, as bytes (a typed message decodes and validates it in one pass)."""
    if not request.body_exists:
        raise BadRequest("this call needs a JSON body")
    if not is_json(request.content_type):
        given = request.headers.get("Content-Type")
        raise UnsupportedMediaType(
            f"this call takes a JSON body: send it with Content-Type: application/json (got {given!r})"
            if given
            else "this call takes a JSON body: send it with Content-Type: application/json (none was given)"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SERVER_KEY].settings.max_json_bytes
        raise PayloadTooLarge(
            f"JSON body larger than the limit of {limit} bytes; split it (max_json_bytes)"
        ) from None


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body, with no field its route's request type does not declare (at any
    depth): a misspelled key is refused, never silently ignored. The handler's own checks
    judge the rest as the type does (tests/unit/test_openapi_schemas.py holds them equal)
    and word their errors for people."""
    body = _integral(decode_json(await read_body(request), "malformed JSON body"))
    body_type = request.get(BODY_TYPE_KEY)
    if body_type is not None:
        try:
            body_type.from_wire(body)
        except BadRequest as exc:
            if "unknown field" in exc.message:
                raise
    return body


async def read_message(request: web.Request, cls: type[M]) -> M:
    """The JSON body as the protocol message ``cls``, parsed and checked in one pass. A body
    that pass refuses is read once more with integral numbers as integers (``2.0`` is the
    integer 2 to JSON Schema, as to the document), so only refused bodies pay twice."""
    body = await read_body(request)
    try:
        return cls.decode(body)
    except BadRequest as refused:
        try:
            value = decode_json(body)
        except BadRequest:
            raise refused from None
        return cls.from_wire(_integral(value))


def _integral(value: Any) -> Any:
    """``105.0`` as ``105``: JSON (and the document's JSON Schema) has one number type, in which
    a number with no fraction is an integer, whatever its spelling."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def message_response(message: Message, *, status: int = 200) -> web.Response:
    """A protocol message as the JSON answer (encoded once, by msgspec)."""
    return web.Response(body=message.encode(), status=status, content_type="application/json")


def query_int(request: web.Request, key: str) -> int | None:
    value = request.query.get(key)
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"query parameter {key} must be an integer") from None
    if n < 0:
        raise BadRequest(f"query parameter {key} must not be negative")
    return n


def upload_chunks(request: web.Request, size: int | None) -> AsyncIterator[bytes]:
    """The raw body of an upload as a stream, after what can be refused before reading it:
    no content and no ``size`` (400), a length over ``max_body_bytes`` (413), a ``size``
    that disagrees with Content-Length (422), and a length the data store has no room for,
    its reserve kept (507)."""
    settings = request.app[SERVER_KEY].settings
    length = request.content_length
    if size is None and (length == 0 or not request.body_exists):
        raise BadRequest(EMPTY_BODY)
    if length is not None and length > settings.max_body_bytes:
        raise PayloadTooLarge(
            f"body of {length} bytes is over the limit of {settings.max_body_bytes} bytes (max_body_bytes)"
        )
    if size is not None and length is not None and size != length:
        raise IntegrityError(f"size={size} was announced but the body is {length} bytes (Content-Length)")
    announced = size if size is not None else length
    if announced:
        request.app[SERVER_KEY].store.check_room(announced, settings.disk_reserve_bytes)
    return request.content.iter_chunked(defaults.STREAM_CHUNK_BYTES)


def ok() -> web.Response:
    return web.json_response({"ok": True})
