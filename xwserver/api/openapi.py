"""The OpenAPI 3.1 document, generated from the route table so it cannot drift from it.

Request and response schemas come from the protocol's types (``xwcommon.protocol``), the
same classes the server, the worker and the client use, rendered by
:func:`xwcommon.protocol.schema_components` as named components.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from xwcommon import __version__, defaults, errors
from xwcommon.protocol import schema_components
from xwcommon.protocol.client import Error

from ..state import Server
from .http import _STATUS_CODES as STATUS_CODES
from .route import BINARY, Route

#: codes only a client or a worker makes up (no server answers them)
_CLIENT_SIDE = {errors.ServerUnreachable.code, errors.ConfigError.code, errors.TLSError.code}

#: every ``error`` code a server may answer: the errors' own, the HTTP layer's, and the two
#: fallbacks (``internal`` for a 500, ``error`` for an HTTP status without a code)
ERROR_CODES: tuple[str, ...] = tuple(
    sorted(
        {cls.code for cls in errors._BY_CODE.values()} - _CLIENT_SIDE
        | {errors.LOGIN_BUSY, "internal", "error"}
        | set(STATUS_CODES.values())
    )
)

_BINARY_SCHEMA = {"type": "string", "format": "binary"}
#: query parameters that are whole numbers (the others are strings)
_INTEGER_QUERY = {"size", "limit", "offset"}
_DESCRIPTIONS = {200: "success", 201: "created"}


def _types(routes: Sequence[Route]) -> list[Any]:
    """The JSON types the routes name, each once, in route order; Error last."""
    found: list[Any] = []
    for r in routes:
        for t in (r.request, r.response):
            if t is not None and t != BINARY and not any(t is f for f in found):
                found.append(t)
    return [*found, Error]


def _content(kind: Any, schema_of: dict[int, dict[str, Any]]) -> dict[str, Any]:
    if kind == BINARY:
        return {BINARY: {"schema": _BINARY_SCHEMA}}
    return {"application/json": {"schema": schema_of[id(kind)]}}


def document(routes: Sequence[Route], srv: Server | None = None) -> dict[str, Any]:
    """The document of ``routes`` (the route table passes itself: no import loop)."""
    types = _types(routes)
    schemas, components = schema_components(types)
    schema_of = {id(t): s for t, s in zip(types, schemas, strict=True)}
    components["Error"]["properties"]["error"]["enum"] = list(ERROR_CODES)
    error = {"description": "error", "content": {"application/json": {"schema": schema_of[id(Error)]}}}

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "responses": {
                str(r.status): {
                    "description": _DESCRIPTIONS.get(r.status, "success"),
                    "content": _content(r.response, schema_of),
                },
                "default": error,
            },
        }
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", r.path)
        ]
        params += [
            {
                "name": n,
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0} if n in _INTEGER_QUERY else {"type": "string"},
            }
            for n in r.query
        ]
        if params:
            op["parameters"] = params
        if r.public:
            op["security"] = []
        if r.request is not None:
            op["requestBody"] = {"required": True, "content": _content(r.request, schema_of)}
        paths.setdefault(defaults.API_PREFIX + r.path, {})[r.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "XtremWeb-Py", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
        "security": [{"bearer": []}],
    }
    if srv is not None:
        doc["servers"] = [{"url": srv.settings.url}]
    return doc
