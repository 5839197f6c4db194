"""Users and login tokens."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import AuthenticationError, BadRequest, Conflict
from xwcommon.levels import UserLevel
from xwcommon.uri import new_uid

from .access import Caller
from .db.models import Token, User
from .passwords import hash_password, new_token, token_digest, verify_password
from .state import Server

log = logging.getLogger(__name__)

MAX_LOGIN = 128
MAX_PASSWORD = 1024

# Verified against when the login is unknown, so both answers take the same time.
_DUMMY_HASH = hash_password("no such user")


def check_login_text(login: str) -> str:
    if not isinstance(login, str) or not login.strip():
        raise BadRequest("login must be a non-empty string")
    if len(login) > MAX_LOGIN or any(ord(c) < 32 for c in login) or "/" in login:
        raise BadRequest(f"login must be at most {MAX_LOGIN} printable characters without '/'")
    return login


async def create_user(
    session: AsyncSession,
    login: str,
    password: str,
    rights: UserLevel,
    *,
    email: str = "",
    group_id: int | None = None,
) -> User:
    check_login_text(login)
    if not password or len(password) > MAX_PASSWORD:
        raise BadRequest(f"password must be 1 to {MAX_PASSWORD} characters")
    pw_hash = await asyncio.to_thread(hash_password, password)
    user = User(
        uid=new_uid(),
        login=login,
        password_hash=pw_hash,
        email=email,
        rights=int(rights),
        group_id=group_id,
        created_at=time.time(),
    )
    session.add(user)
    try:
        await session.flush()
    except DBIntegrityError:
        raise Conflict(f"login {login!r} is already taken; choose another") from None
    return user


def caller_of(user: User) -> Caller:
    return Caller(
        id=user.id, uid=user.uid, login=user.login, rights=UserLevel(user.rights), group_id=user.group_id
    )


async def login(srv: Server, login_name: str, password: str) -> tuple[str, float, User]:
    """Check a password; return a new token, its expiry and the user."""
    if not isinstance(login_name, str) or not isinstance(password, str) or not login_name:
        raise BadRequest('login needs a JSON body {"login": "...", "password": "..."}')
    # no such login can exist (check_login_text); PostgreSQL cannot even compare a NUL (a 500)
    if len(login_name) > MAX_LOGIN or len(password) > MAX_PASSWORD or any(ord(c) < 32 for c in login_name):
        raise AuthenticationError("wrong login or password")
    async with srv.sessions() as session:
        user = (await session.execute(select(User).where(User.login == login_name))).scalar_one_or_none()
    stored = user.password_hash if user is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, password, stored)
    if user is None or not ok:
        log.info("failed login for %r", login_name[:64])
        raise AuthenticationError("wrong login or password")
    token = new_token()
    now = time.time()
    expires_at = now + srv.settings.token_ttl_s
    async with srv.sessions.begin() as session:
        session.add(
            Token(
                token_hash=token_digest(token),
                user_id=user.id,
                created_at=now,
                expires_at=expires_at,
                revoked=False,
            )
        )
    return token, expires_at, user


async def resolve_token(srv: Server, token: str) -> Caller:
    digest = token_digest(token)
    now = time.time()
    cached = srv.tokens.get(digest, now)
    if cached is not None:
        return cached
    async with srv.sessions() as session:
        row = (
            await session.execute(
                select(User, Token.expires_at)
                .join(Token, Token.user_id == User.id)
                .where(Token.token_hash == digest, Token.revoked.is_(False), Token.expires_at > now)
            )
        ).first()
    if row is None:
        raise AuthenticationError("token unknown, expired or revoked; log in again")
    user, expires_at = row
    caller = caller_of(user)
    srv.tokens.put(digest, caller, expires_at, now)
    return caller


async def logout(srv: Server, token: str) -> None:
    digest = token_digest(token)
    async with srv.sessions.begin() as session:
        await session.execute(update(Token).where(Token.token_hash == digest).values(revoked=True))
    srv.tokens.drop(digest)
