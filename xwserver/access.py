"""Who the caller is, and the access-bit checks every handler goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from xwcommon.errors import Forbidden
from xwcommon.levels import PRIVATE, PUBLIC, UserLevel

from .db.models import User

READ, WRITE, EXEC = 4, 2, 1


@dataclass(frozen=True)
class Caller:
    id: int
    uid: str
    login: str
    rights: UserLevel
    group_id: int | None
    #: set when the caller logged in with a host credential: it acts only as that host (a
    #: worker's calls), whatever its identity's rights
    host_uid: str | None = None

    @property
    def is_super(self) -> bool:
        return self.rights >= UserLevel.SUPER and self.host_uid is None

    def require(self, level: UserLevel, action: str) -> None:
        """Raise :class:`Forbidden` unless the caller is at least ``level`` (a caller acting as
        one host, only WORKER's)."""
        if self.rights < level:
            raise Forbidden(f"{action} needs {level.name} rights; {self.login} has {self.rights.name}")
        if self.host_uid is not None and level > UserLevel.WORKER:
            raise Forbidden(
                f"{action} needs a login with the password of {self.login}: a host credential "
                f"acts only as its host ({self.host_uid})"
            )


def may(caller: Caller, bit: int, *, owner_id: int, owner_group_id: int | None, access_rights: int) -> bool:
    """Unix-style check of one bit (READ, WRITE, EXEC) for owner, group, then other."""
    if caller.is_super or caller.id == owner_id:
        return True
    if caller.group_id is not None and caller.group_id == owner_group_id and access_rights & (bit << 3):
        return True
    return bool(access_rights & bit)


def may_sql(caller: Caller, bit: int, owner_id: Any, access_rights: Any) -> ColumnElement[bool]:
    """:func:`may` as a WHERE clause over an owner column and an access-rights column, so a
    list filters in the database: owner, or a member of the owner's group with the group
    bit, or anyone with the other bit; SUPER sees everything."""
    if caller.is_super:
        return true()
    allowed = [owner_id == caller.id, access_rights.op("&")(bit) != 0]
    if caller.group_id is not None:
        members = select(User.id).where(User.group_id == caller.group_id)
        allowed.append(and_(access_rights.op("&")(bit << 3) != 0, owner_id.in_(members)))
    return or_(*allowed)


async def owner_group(session: AsyncSession, owner_id: int) -> int | None:
    """The user group of an object's owner (group bits apply to its members)."""
    return (await session.execute(select(User.group_id).where(User.id == owner_id))).scalar_one_or_none()


async def may_on(
    session: AsyncSession, caller: Caller, bit: int, *, owner_id: int, access_rights: int
) -> bool:
    """:func:`may` for one object, looking its owner's group up only when it matters."""
    if caller.is_super or caller.id == owner_id or access_rights & bit:
        return True
    if caller.group_id is None or not access_rights & (bit << 3):
        return False
    return await owner_group(session, owner_id) == caller.group_id


def default_app_rights(caller: Caller) -> int:
    """An app is public only if inserted by ADVANCED or above, else private."""
    return PUBLIC if caller.rights >= UserLevel.ADVANCED else PRIVATE


DATA_DEFAULT_RIGHTS = PUBLIC
