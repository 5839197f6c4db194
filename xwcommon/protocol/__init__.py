"""The wire, typed: every message server and worker exchange, defined once.

Each message is a :class:`Message` (a ``msgspec.Struct``) with one ``to_wire`` and one
``from_wire``/``decode``; validation names the field that was wrong. The OpenAPI document
takes its request and response schemas from the same classes (:func:`schema_components`),
so the description cannot drift from what the server checks.

Requests (sent to the server) refuse unknown fields, so a misspelled key is an error rather
than a silent default; answers (sent to workers and clients) accept them, so a newer server
may add fields without breaking an older worker.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Self

import msgspec

from ..errors import BadRequest

__all__ = [
    "Answer",
    "Bytes",
    "Message",
    "PRINTABLE_PATTERN",
    "Request",
    "Sha256",
    "Uid",
    "decode_json",
    "schema_components",
]

#: a signed 64-bit column holds it on every database
MAX_BYTES = 2**62

UID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: a canonical UID (lower-case UUID); what the server gives, what a worker sends back
Uid = Annotated[str, msgspec.Meta(pattern=UID_PATTERN, description="a UID (UUID)")]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", description="hex sha256 digest")]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES, description="a number of bytes")]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_BYTES, description="a number of seconds")]
#: no control characters (C0, DEL, C1): what a log line or a table can show as it is
PRINTABLE_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*$(?!\\n)"
#: how errors word a pattern, rather than quoting the regex (each module adds its own)
PATTERN_WORDS = {PRINTABLE_PATTERN: "of printable characters"}


_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _explain(exc: msgspec.ValidationError | msgspec.DecodeError, what: str) -> BadRequest:
    """``Expected `int` >= 1, got `0` - at `$.capacity``` → ``"capacity": expected `int` >= 1, got `0```."""
    text = str(exc)
    m = _AT.search(text)
    if m:
        path = m.group("path").lstrip(".")
        missing = _MISSING.match(text)
        if missing:  # name the missing field itself
            field = missing.group(1)
            return BadRequest(f'{what}: "{path + "." if path else ""}{field}" is required')
        text = text[: m.start()]
        for pattern, words in PATTERN_WORDS.items():
            text = text.replace(f"matching regex {pattern!r}", words)
        text = text[:1].lower() + text[1:]
        return BadRequest(f'{what}: "{path}": {text}' if path else f"{what}: {text}")
    return BadRequest(f"{what}: {text[:1].lower() + text[1:]}")


class Message(msgspec.Struct, kw_only=True):
    """Base of every message. ``wire_name`` says what it is in error messages."""

    #: how errors name this message ("work request", "report", ...)
    wire_name = "message"

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able data (what ``json.dumps`` or a transport sends)."""
        wire: dict[str, Any] = msgspec.to_builtins(self)
        return wire

    def encode(self) -> bytes:
        """The message as JSON bytes."""
        return _ENCODER.encode(self)

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        """Validate plain data (a parsed JSON body); :class:`BadRequest` names the field."""
        try:
            return msgspec.convert(value, cls, strict=True)
        except msgspec.ValidationError as exc:
            raise _explain(exc, cls.wire_name) from None

    @classmethod
    def decode(cls, data: bytes | str) -> Self:
        """Parse and validate JSON bytes in one pass (the server's hot path)."""
        try:
            return msgspec.json.decode(data, type=cls)
        except msgspec.ValidationError as exc:
            raise _explain(exc, cls.wire_name) from None
        except msgspec.DecodeError as exc:
            # NaN and Infinity are not JSON, but Python writes them: name the field they are in
            try:
                value = json.loads(data)
            except (ValueError, RecursionError):
                raise BadRequest(f"{cls.wire_name}: the body is not valid JSON ({exc})") from None
            return cls.from_wire(value)
        except RecursionError:
            raise BadRequest(f"{cls.wire_name}: the body is nested too deeply") from None


class Request(Message, kw_only=True, forbid_unknown_fields=True):
    """A message sent to the server: unknown fields are refused (they are typos)."""


class Answer(Message, kw_only=True):
    """A message sent by the server: unknown fields are ignored (a newer server may add some)."""


_ENCODER = msgspec.json.Encoder()


def decode_json(data: bytes | str, what: str = "body") -> Any:
    """Parse JSON without a type (nesting is bounded by the parser, never a RecursionError)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        # NaN and Infinity are not JSON, but Python writes them: let the checks that follow
        # name the field they are in
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise BadRequest(f"{what}: not valid JSON ({exc})") from None
    except RecursionError:  # "[" * 100_000
        raise BadRequest(f"{what}: nested too deeply") from None


def schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """JSON schemas of ``types`` for an OpenAPI 3 document: one schema per type (mostly a
    ``$ref``) and the named components they refer to."""
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
