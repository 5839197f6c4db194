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
_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=][rwx]*)+)$")
_OPS = re.compile(r"([-+=])([rwx]*)")
_WHO_SHIFT = {"u": 6, "g": 3, "o": 0}
_PERM_BITS = {"r": 4, "w": 2, "x": 1}
_EXAMPLE = "write them like 0755, 0x750 or u+rwx,g-w,o=r"


def parse_access_rights(text: str | int, current: int = 0) -> int:
    """Parse ``0755``, ``755``, XWHEP's ``0x755``, an int, or a symbolic change applied to ``current``.

    Symbolic forms are chmod's: comma-separated clauses of who (``u``, ``g``, ``o``, ``a``;
    none means ``a``), then one or more operations ``+``, ``-`` or ``=`` with permissions
    ``r``, ``w``, ``x``: ``u+r``, ``g-w``, ``o+x``, ``a+r``, ``ugo+rwx``, ``go=rx``, ``u+rw-x``.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise BadRequest(f"access rights must be a string or an integer; {_EXAMPLE}")
    if isinstance(text, int):
        if not 0 <= text <= 0o777:
            raise BadRequest(f"access rights {text!r} out of range 000-777; {_EXAMPLE}")
        return text
    if not 0 <= current <= 0o777:
        raise ValueError(f"current access rights {current!r} out of range 000-777")
    cleaned = text.strip().lower()
    match = _OCTAL.match(cleaned)
    if match:
        return int(match.group(1), 8)
    if not cleaned:
        raise BadRequest(f"access rights are empty; {_EXAMPLE}")
    if cleaned[0].isdigit():
        raise BadRequest(f"invalid access rights {text!r}: octal rights have three digits 0-7; {_EXAMPLE}")
    bits = current
    for clause in cleaned.split(","):
        bits = _apply_clause(text, clause.strip(), bits)
    return bits


def apply_access_rights(text: str | int, current: int) -> int:
    """The access bits ``text`` sets: absolute (``0750``) or a symbolic change of ``current``."""
    return parse_access_rights(text, current)


def _apply_clause(text: str, clause: str, bits: int) -> int:
    match = _CLAUSE.match(clause)
    if not match:
        raise BadRequest(
            f"invalid access rights {text!r}: {clause!r} is not who (u, g, o, a) then + - or = "
            f"then permissions (r, w, x); {_EXAMPLE}"
        )
    who = match.group(1) or "a"
    shifts = {0, 3, 6} if "a" in who else {_WHO_SHIFT[w] for w in who}
    for op, perms in _OPS.findall(match.group(2)):
        value = sum(_PERM_BITS[p] for p in set(perms))
        for shift in shifts:
            if op == "+":
                bits |= value << shift
            elif op == "-":
                bits &= ~(value << shift) & 0o777
            else:
                bits = (bits & ~(7 << shift) & 0o777) | (value << shift)
    return bits


def format_access_rights(bits: int) -> str:
    """Show access bits as ``0755``."""
    return f"0{bits:03o}"
