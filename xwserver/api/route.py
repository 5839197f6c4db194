"""One entry of the route table (the OpenAPI document is generated from the table)."""

from __future__ import annotations

from dataclasses import dataclass

from .http import Handler


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below /api/v1
    handler: Handler
    summary: str
    body: str | None = None  # "json" or "binary"
    public: bool = False
