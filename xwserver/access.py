"""Who the caller is, and the access-bit checks every handler goes through."""

from __future__ import annotations

from dataclasses import dataclass

from xwcommon.errors import Forbidden
from xwcommon.levels import PRIVATE, PUBLIC, UserLevel

READ, WRITE, EXEC = 4, 2, 1


@dataclass(frozen=True)
class Caller:
    id: int
    uid: str
    login: str
    rights: UserLevel
    group_id: int | None

    @property
    def is_super(self) -> bool:
        return self.rights >= UserLevel.SUPER

    def require(self, level: UserLevel, action: str) -> None:
        """Raise :class:`Forbidden` unless the caller is at least ``level``."""
        if self.rights < level:
            raise Forbidden(f"{action} needs {level.name} rights; {self.login} has {self.rights.name}")


def may(caller: Caller, bit: int, *, owner_id: int, owner_group_id: int | None, access_rights: int) -> bool:
    """Unix-style check of one bit (READ, WRITE, EXEC) for owner, group, then other."""
    if caller.is_super or caller.id == owner_id:
        return True
    if caller.group_id is not None and caller.group_id == owner_group_id and access_rights & (bit << 3):
        return True
    return bool(access_rights & bit)


def default_app_rights(caller: Caller) -> int:
    """An app is public only if inserted by ADVANCED or above, else private."""
    return PUBLIC if caller.rights >= UserLevel.ADVANCED else PRIVATE


DATA_DEFAULT_RIGHTS = PUBLIC
