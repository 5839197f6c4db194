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
from xwcommon.protocol import MAX_BYTES, schema_components
from xwcommon.protocol import client as c
from xwcommon.protocol.client import Error
from xwcommon.protocol.usage import MOMENT_PATTERN
from xwcommon.status import JobStatus, TaskStatus

from .. import jobs
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
_UPLOAD_SCHEMA = {
    **_BINARY_SCHEMA,
    "minLength": 1,
    "description": "the content; empty content only with the query parameter size=0",
}
_HEX = "[0-9a-fA-F]"
#: a UID in a path: what ``parse_uid`` takes there (any case, hyphens optional)
_UID_PATH = {
    "type": "string",
    "pattern": f"^{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}$",
    "description": "a UID",
}
#: a login or a user group label, or a UID (``/users/{key}``, ``/usergroups/{key}``)
_KEY_PATH = {"type": "string", "pattern": r"^\w[\w.@+-]*$", "maxLength": 128}
#: a moment: what xwserver.usage.parse_time takes
_TIME = {
    "type": "string",
    "pattern": MOMENT_PATTERN,
    "description": "ISO 8601 date or date-time (UTC unless an offset is given), years 1000 to 8999",
}
#: the query parameters, as the handlers (and the domain functions they call) read them
_QUERY: dict[str, dict[str, Any]] = {
    "size": {"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
    "limit": {"type": "integer", "minimum": 1, "maximum": jobs.MAX_LIST},
    "offset": {"type": "integer", "minimum": 0, "maximum": jobs.MAX_OFFSET},
    "sha256": {"type": "string", "pattern": f"^{_HEX}{{64}}$"},
    "access_rights": {"type": "string", "pattern": c.ACCESS_RIGHTS_PATTERN},
    "name": {"type": "string", "pattern": c._NAME_PATTERN, "minLength": 1, "maxLength": c.MAX_NAME},
    "label": {"type": "string", "pattern": c._NAME_PATTERN, "minLength": 1, "maxLength": c.MAX_NAME},
    "owner": {"anyOf": [{"enum": ["me", ""]}, _UID_PATH], "description": "me, a user's UID, or none"},
    "since": _TIME,
    "until": _TIME,
}
#: a task's result is uploaded first or rides inline, not both
_ONE_RESULT = {
    "not": {
        "required": ["result_uid", "result_inline"],
        "properties": {"result_uid": {"type": "string"}, "result_inline": {"type": "object"}},
    }
}
#: components that say more than their type can: at least one field of a change; one result
_EXTRA: dict[str, dict[str, Any]] = {
    "UserChange": {"minProperties": 1},
    "Report": _ONE_RESULT,
    "TaskReport": _ONE_RESULT,
}
_DESCRIPTIONS = {200: "success", 201: "created"}


def _types(routes: Sequence[Route]) -> list[Any]:
    """The JSON types the routes name, each once, in route order; Error last."""
    found: list[Any] = []
    for r in routes:
        for t in (r.request, r.response):
            if t is not None and t != BINARY and not any(t is f for f in found):
                found.append(t)
    return [*found, Error]


def _content(kind: Any, schema_of: dict[int, dict[str, Any]], *, request: bool = False) -> dict[str, Any]:
    if kind == BINARY:
        # an upload's body is its content: empty only with size=0, which a schema cannot say
        # (the description does); a download may be empty data
        return {BINARY: {"schema": _UPLOAD_SCHEMA if request else _BINARY_SCHEMA}}
    return {"application/json": {"schema": schema_of[id(kind)]}}


def _any_case(name: str) -> str:
    return "".join(f"[{ch.lower()}{ch.upper()}]" for ch in name)


def _one_status(names: list[str]) -> dict[str, Any]:
    """One status, any case, no blanks ("" for all)."""
    return {"type": "string", "pattern": "^(" + "|".join(_any_case(n) for n in names) + ")?$(?!\\n)"}


def _statuses(names: list[str]) -> dict[str, Any]:
    """A comma-separated list of statuses, any case, blanks around each ("" for all)."""
    one = "(" + "|".join(_any_case(n) for n in names) + ")"
    return {"type": "string", "pattern": rf"^(\s*{one}\s*(,\s*{one}\s*)*)?$"}


def _query_schema(r: Route, name: str) -> dict[str, Any]:
    if name == "status" and r.path == "/tasks":
        return _one_status([s.value for s in TaskStatus])
    if name == "status":
        return _statuses([s.value for s in JobStatus])
    return _QUERY.get(name, _UID_PATH)


def _path_schema(r: Route, name: str) -> dict[str, Any]:
    if name == "key":
        return _KEY_PATH
    if r.path.startswith("/apps/"):  # an app by UID or by name
        return {"anyOf": [_UID_PATH, _QUERY["name"]]}
    return _UID_PATH


def _replace_pattern(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("pattern") == old:
            node["pattern"] = new
        for v in node.values():
            _replace_pattern(v, old, new)
    elif isinstance(node, list):
        for v in node:
            _replace_pattern(v, old, new)


def document(routes: Sequence[Route], srv: Server | None = None) -> dict[str, Any]:
    """The document of ``routes`` (the route table passes itself: no import loop)."""
    types = _types(routes)
    schemas, components = schema_components(types)
    schema_of = {id(t): s for t, s in zip(types, schemas, strict=True)}
    components["Error"]["properties"]["error"]["enum"] = list(ERROR_CODES)
    for name, extra in _EXTRA.items():
        if name in components:
            components[name].update(extra)
    if srv is not None:  # an xw:// URI must name this server or one of its aliases
        hosts = "|".join(re.escape(h) for h in sorted(srv.settings.uri_hosts))
        local = c.UID_REF_PATTERN.replace("(xw://([^/]*/)+", f"(xw://({hosts})/([^/]*/)*")
        _replace_pattern(components, c.UID_REF_PATTERN, local)
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
            {"name": n, "in": "path", "required": True, "schema": _path_schema(r, n)}
            for n in re.findall(r"{(\w+)}", r.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": _query_schema(r, n)} for n in r.query
        ]
        if params:
            op["parameters"] = params
        if r.public:
            op["security"] = []
        if r.request is not None:
            op["requestBody"] = {"required": True, "content": _content(r.request, schema_of, request=True)}
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
