"""User groups: SUPER creates and removes them; a member sees its own group.

Group labels and user logins follow one naming rule (:func:`check_identifier`): letters,
digits and ``_ . @ + -``, starting with a letter, digit or ``_``. Both appear in paths,
config files and command lines, so quotes, spaces, slashes and control characters have no
business in them.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, NotFound
from xwcommon.levels import UserLevel
from xwcommon.uri import is_uid, new_uid, parse_uid

from . import events
from .access import Caller
from .db.models import User, UserGroup
from .state import Server
from .wire import iso

log = logging.getLogger(__name__)

MAX_LABEL = 128
_IDENTIFIER = re.compile(r"\w[\w.@+-]*")


def check_identifier(value: Any, what: str, max_len: int) -> str:
    """``value`` if it is a valid login or label, else :class:`BadRequest` naming ``what``."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what} must be a non-empty string")
    if len(value) > max_len:
        raise BadRequest(f"{what} is longer than {max_len} characters")
    if not _IDENTIFIER.fullmatch(value) or not value.isprintable():
        raise BadRequest(
            f"{what} {value[:64]!r} may hold only letters, digits and _ . @ + - "
            "and must start with a letter, digit or _"
        )
    if is_uid(value):
        raise BadRequest(f"{what} must not look like a UID")
    return value


def may_be_identifier(key: str, max_len: int) -> bool:
    """Whether ``key`` could name a login or label (so looking it up is worth a query)."""
    return len(key) <= max_len and bool(_IDENTIFIER.fullmatch(key)) and key.isprintable()


async def find(session: AsyncSession, key: str) -> UserGroup | None:
    """The group of a UID, ``xw://`` URI or label; None if there is none."""
    if is_uid(key):
        where = UserGroup.uid == parse_uid(key)
    elif may_be_identifier(key, MAX_LABEL):
        where = UserGroup.label == key
    else:
        return None
    return (await session.execute(select(UserGroup).where(where))).scalar_one_or_none()


async def resolve(session: AsyncSession, key: Any, what: str = '"group"') -> UserGroup | None:
    """A group named in a request body (UID, URI or label); null or "" mean no group."""
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise BadRequest(f"{what} must be a user group's UID, URI or label, or null")
    group = await find(session, key)
    if group is None:
        raise NotFound(f"{what}: no user group {key[:64]!r}; list them with xwusergroups")
    return group


async def render(srv: Server, session: AsyncSession, groups: list[UserGroup]) -> list[dict[str, Any]]:
    """UserGroup JSON: ``{"uid","uri","label","created_at","members"}``."""
    ids = [g.id for g in groups]
    counts: dict[int, int] = {}
    for start in range(0, len(ids), 900):
        rows = await session.execute(
            select(User.group_id, func.count())
            .where(User.group_id.in_(ids[start : start + 900]))
            .group_by(User.group_id)
        )
        counts.update({gid: n for gid, n in rows if gid is not None})
    return [
        {
            "uid": g.uid,
            "uri": srv.wire.uri(g.uid),
            "label": g.label,
            "created_at": iso(g.created_at),
            "members": counts.get(g.id, 0),
        }
        for g in groups
    ]


async def create(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    caller.require(UserLevel.SUPER, "creating a user group")
    if not isinstance(body, dict):
        raise BadRequest('expected {"label": "..."}')
    unknown = set(body) - {"label"}
    if unknown:
        raise BadRequest(f"unknown user group fields: {', '.join(sorted(unknown))[:200]}")
    label = check_identifier(body.get("label"), "label", MAX_LABEL)
    try:
        async with srv.sessions.begin() as session:
            group = UserGroup(uid=new_uid(), label=label, owner_id=caller.id, created_at=time.time())
            session.add(group)
            await session.flush()
            await events.record(
                session, [events.event("usergroup", group.uid, "created", owner_id=caller.id, detail=label)]
            )
    except DBIntegrityError:
        raise Conflict(f"user group {label!r} already exists; choose another label") from None
    log.info("user group %s created by %s", label, caller.login)
    async with srv.sessions() as session:
        return (await render(srv, session, [group]))[0]


async def list_groups(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    """Every group for SUPER; the caller's own (if any) otherwise."""
    async with srv.sessions() as session:
        q = select(UserGroup).order_by(UserGroup.id)
        if not caller.is_super:
            if caller.group_id is None:
                return []
            q = q.where(UserGroup.id == caller.group_id)
        return await render(srv, session, list((await session.execute(q)).scalars()))


async def get(srv: Server, caller: Caller, key: str) -> dict[str, Any]:
    async with srv.sessions() as session:
        group = await find(session, key)
        if group is None or not (caller.is_super or group.id == caller.group_id):
            raise NotFound(f"no user group {key[:64]!r} visible to you; list them with xwusergroups")
        return (await render(srv, session, [group]))[0]


async def remove(srv: Server, caller: Caller, key: str) -> None:
    caller.require(UserLevel.SUPER, "removing a user group")
    try:
        async with srv.sessions.begin() as session:
            group = await find(session, key)
            if group is None:
                raise NotFound(f"no user group {key[:64]!r}; list them with xwusergroups")
            members = (
                await session.execute(select(func.count()).select_from(User).where(User.group_id == group.id))
            ).scalar_one()
            if members:
                raise Conflict(
                    f"user group {group.label!r} still has {members} member(s); move or remove them first"
                )
            await events.record(
                session,
                [
                    events.event(
                        "usergroup", group.uid, "removed", owner_id=group.owner_id, detail=group.label
                    )
                ],
            )
            await session.delete(group)
    except DBIntegrityError:  # a member joined meanwhile: the foreign key refuses the delete
        raise Conflict(f"user group {key[:64]!r} just got a member; move or remove them first") from None
    log.info("user group %s removed by %s", group.label, caller.login)
