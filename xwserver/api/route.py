"""One entry of the route table (the OpenAPI document is generated from the table).

Every route says what its body is and what it answers: ``request`` is the type of its JSON
body (a :class:`xwcommon.protocol.Request`), :data:`BINARY` for a raw streamed body, or
None for no body; ``response`` is the type of its JSON answer (an
:class:`xwcommon.protocol.Answer`, or a union of them), or :data:`BINARY` for raw bytes;
``status`` is the HTTP status of a success. Neither has a default, so no route can be
added without saying them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .http import Handler

#: a raw ``application/octet-stream`` body or answer (uploads and downloads, streamed)
BINARY: Final = "application/octet-stream"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below /api/v1
    handler: Handler
    summary: str
    #: the JSON body's type, BINARY, or None (no body)
    request: Any
    #: the JSON answer's type, or BINARY
    response: Any
    #: the HTTP status of a success (201 where something is created)
    status: int = 200
    public: bool = False
    #: the query parameters it reads (all optional)
    query: tuple[str, ...] = ()

    @property
    def body(self) -> str | None:
        """``"json"``, ``"binary"`` or None: what the request carries."""
        if self.request is None:
            return None
        return "binary" if self.request == BINARY else "json"
