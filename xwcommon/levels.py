"""User levels (XWHEP's user rights) and Unix-style access bits."""

from __future__ import annotations

import enum
import re

from .errors import BadRequest


class UserLevel(enum.IntEnum):
    """The rights ladder; a higher level may do everything a lower one may."""

    WORKER = 10
    STANDARD = 20
    ADVANCED = 30
    SUPER = 40

    @classmethod
    def parse(cls, text: str) -> UserLevel:
        """Accept ``STANDARD`` and XWHEP's ``STANDARD_USER``, any case."""
        name = text.strip().upper()
        name = {
            "WORKER_USER": "WORKER",
            "STANDARD_USER": "STANDARD",
            "ADVANCED_USER": "ADVANCED",
            "ADMINISTRATOR": "SUPER",
            "SUPER_USER": "SUPER",
        }.get(name, name)
        try:
            return cls[name]
        except KeyError:
            raise BadRequest(
                f"unknown user rights {text!r}; use one of WORKER, STANDARD, ADVANCED, SUPER"
            ) from None


PRIVATE = 0o700
GROUP = 0o750
PUBLIC = 0o755

_OCTAL = re.compile(r"^(?:0x|0o|0)?([0-7]{3})$")


def parse_access_rights(text: str | int) -> int:
    """Parse ``0755``, ``755``, XWHEP's ``0x755`` or an int into access bits."""
    if isinstance(text, int):
        if not 0 <= text <= 0o777:
            raise BadRequest(f"access rights {text!r} out of range 000-777")
        return text
    match = _OCTAL.match(text.strip().lower())
    if not match:
        raise BadRequest(f"invalid access rights {text!r}; write them like 0755")
    return int(match.group(1), 8)


def format_access_rights(bits: int) -> str:
    """Show access bits as ``0755``."""
    return f"0{bits:03o}"
