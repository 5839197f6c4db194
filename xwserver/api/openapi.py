"""The OpenAPI 3 document, generated from the route table so it cannot drift from it."""

from __future__ import annotations

import re
from typing import Any

from xwcommon import __version__, defaults

from ..state import Server

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}


def document(srv: Server | None = None) -> dict[str, Any]:
    from .routes import ROUTES

    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "responses": {
                "200": {
                    "description": "success",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "default": {"description": "error", "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", r.path)
        ]
        if params:
            op["parameters"] = params
        if r.public:
            op["security"] = []
        if r.body == "json":
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        elif r.body == "binary":
            op["requestBody"] = {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        paths.setdefault(defaults.API_PREFIX + r.path, {})[r.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "XtremWeb-Py", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
        "security": [{"bearer": []}],
    }
    if srv is not None:
        doc["servers"] = [{"url": srv.settings.url}]
    return doc
