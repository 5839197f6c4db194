"""Users, passwords and login tokens.

SUPER manages users (XWHEP's ``xwsenduser``, ``xwusers``, ``xwrm``); anyone sees and
changes themselves. A token is random, stored hashed and expires; it is revoked at logout,
when its user's password, rights or group change, and when the user is removed. Revoking
drops the user's tokens from this process's cache at once; other processes sharing the
database stop honouring them within the cache's TTL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import AuthenticationError, BadRequest, Conflict, Forbidden, HostDisabled, NotFound
from xwcommon.levels import UserLevel
from xwcommon.protocol import UID_PATTERN
from xwcommon.status import TaskStatus
from xwcommon.uri import is_uid, new_uid, parse_uid

from . import credit, events, groups, lifecycle
from .access import Caller
from .db.engine import transaction
from .db.models import App, Data, Host, Job, JobGroup, JobSession, Task, Token, User, UserGroup
from .passwords import (
    hash_password,
    host_key_digest,
    new_host_key,
    new_token,
    same_digest,
    token_digest,
    verify_password,
)
from .state import Server

log = logging.getLogger(__name__)

MAX_LOGIN = 128
MAX_PASSWORD = 1024
MAX_EMAIL = 254
#: ``GET /users/me`` is the caller; no login may shadow it
RESERVED_LOGINS = {"me"}
_USER_FIELDS = {"login", "password", "email", "rights", "group"}
_PATCH_FIELDS = {"rights", "group", "email"}


@functools.cache
def dummy_hash() -> str:
    """Verified against when the login is unknown, so both answers take the same time. The
    server makes it as it starts (:func:`xwserver.app.serve`), so that not even the first
    unknown login pays for it; not at import, which every CLI start would pay (~0.05 s)."""
    return hash_password("no such user")


# -- validation ----------------------------------------------------------------------------------------
def check_login_text(login: Any) -> str:
    check = groups.check_identifier(login, "login", MAX_LOGIN)
    if check in RESERVED_LOGINS:
        raise BadRequest(f"login {check!r} is reserved; choose another")
    return check


def check_password(password: Any, what: str = "password") -> str:
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        raise BadRequest(f"{what} must be a string of 1 to {MAX_PASSWORD} characters")
    if not _encodable(password):
        raise BadRequest(f"{what} must be valid Unicode text")
    return password


def check_email(email: Any) -> str:
    """An address ``local@domain`` without spaces, quotes of SQL or control characters; "" for none."""
    if email is None or email == "":
        return ""
    if not isinstance(email, str) or len(email) > MAX_EMAIL:
        raise BadRequest(f"email must be a string of at most {MAX_EMAIL} characters")
    local, at, domain = email.rpartition("@")
    ok = (
        at
        and local
        and domain
        and all(c.isalnum() or c in "._%+-!#$&*=?^`{|}~" for c in local)
        and all(part and all(c.isalnum() or c == "-" for c in part) for part in domain.split("."))
    )
    if not ok:
        raise BadRequest(f"email {email[:64]!r} is not an address like name@example.org")
    return email


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def _could_exist(login: str) -> bool:
    """Whether a stored login could equal ``login`` (else no query is worth making; PostgreSQL
    cannot even compare a NUL)."""
    return groups.may_be_identifier(login, MAX_LOGIN)


# -- rows ------------------------------------------------------------------------------------------------
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
    check_password(password)
    email = check_email(email)
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
    await events.record(session, [events.event("user", user.uid, "created", owner_id=user.id, detail=login)])
    return user


async def render(
    srv: Server, session: AsyncSession, users: list[User], *, credit_of: bool = False
) -> list[dict[str, Any]]:
    """User JSON, ``group_uid`` filled in with one query."""
    group_ids = sorted({u.group_id for u in users if u.group_id is not None})
    group_uids: dict[int, str] = {}
    if group_ids:
        rows = await session.execute(select(UserGroup.id, UserGroup.uid).where(UserGroup.id.in_(group_ids)))
        group_uids = {gid: guid for gid, guid in rows}
    # credit sums the tasks of the users' hosts: in listings (xwusers) only, never on a
    # login's answer (a fleet's logins would each add up every task of the public worker
    # identity); one user shown alone is shown as its login shows it
    credits = await credit.of_owners(session, [u.id for u in users]) if credit_of else {}
    return [
        {
            **srv.wire.user(u, group_uids.get(u.group_id) if u.group_id else None),
            **(credits.get(u.id, credit.Credit()).shown() if credit_of else {}),
        }
        for u in users
    ]


async def _find(session: AsyncSession, key: str) -> User | None:
    """The user of a UID, ``xw://`` URI or login; None if there is none."""
    if is_uid(key):
        where = User.uid == parse_uid(key)
    elif _could_exist(key):
        where = User.login == key
    else:
        return None
    return (await session.execute(select(User).where(where))).scalar_one_or_none()


def _target(caller: Caller, key: str) -> str:
    """A user key from a path; ``me`` is the caller (no login may be ``me``)."""
    return caller.uid if key in RESERVED_LOGINS else key


def _is_self(caller: Caller, key: str) -> bool:
    return key == caller.login or (is_uid(key) and parse_uid(key) == caller.uid)


async def _revoke_tokens(session: AsyncSession, user_id: int) -> None:
    """Revoke every token and host credential of a user (its workers log in with the password
    again); the cache forgets the tokens once the transaction commits."""
    await session.execute(
        update(Token).where(Token.user_id == user_id, Token.revoked.is_(False)).values(revoked=True)
    )
    await session.execute(
        update(Host)
        .where(Host.owner_id == user_id, Host.key_hash.is_not(None))
        .values(key_hash=None, key_issued_at=None)
    )


# -- login and tokens --------------------------------------------------------------------------------------
# A fleet's workers log in and register by the thousand: these paths run prebuilt Core
# statements in short transactions (db.engine.transaction), like the work path, not ORM
# sessions (whose close lets the event loop turn while SQLite's one connection is held).


@dataclass(frozen=True)
class Account:
    """A user as a login reads it: what its answer shows (``wire.user``) and who the token
    acts as."""

    id: int
    uid: str
    login: str
    rights: int
    email: str
    group_id: int | None
    group_uid: str | None


_ACCOUNT = (
    User.id,
    User.uid,
    User.login,
    User.rights,
    User.email,
    User.group_id,
    UserGroup.uid.label("group_uid"),
)
_ACCOUNT_BY_LOGIN = (
    select(*_ACCOUNT, User.password_hash)
    .outerjoin(UserGroup, UserGroup.id == User.group_id)
    .where(User.login == bindparam("login"))
)
_HOST_TO_BIND = (
    select(Host.id, Host.owner_id, Host.enabled).where(Host.uid == bindparam("uid")).with_for_update()
)
_SET_HOST_KEY = (
    update(Host)
    .where(Host.id == bindparam("b_id"))
    .values(key_hash=bindparam("key_hash"), key_issued_at=bindparam("key_issued_at"))
)
_ROTATE_HOST_KEY = (
    update(Host)
    .where(Host.id == bindparam("b_id"), Host.key_hash == bindparam("b_key_hash"))
    .values(key_hash=bindparam("key_hash"), key_issued_at=bindparam("key_issued_at"))
)
_HOST_LOGIN = (
    select(*_ACCOUNT, Host.id.label("host_id"), Host.enabled, Host.key_hash, Host.key_issued_at)
    .join(User, User.id == Host.owner_id)
    .outerjoin(UserGroup, UserGroup.id == User.group_id)
    .where(Host.uid == bindparam("uid"))
)
_NEW_TOKEN = insert(Token)
_TOKEN_CALLER = (
    select(
        User.id,
        User.uid,
        User.login,
        User.rights,
        User.group_id,
        Token.host_id,
        Token.expires_at,
        Host.uid.label("host_uid"),
    )
    .join(Token, Token.user_id == User.id)
    .outerjoin(Host, Host.id == Token.host_id)
    .where(
        Token.token_hash == bindparam("digest"),
        Token.revoked.is_(False),
        Token.expires_at > bindparam("now"),
    )
)


def _account(row: Any) -> Account:
    return Account(row.id, row.uid, row.login, row.rights, row.email, row.group_id, row.group_uid)


@dataclass(frozen=True)
class LoggedIn:
    """A login's outcome: a token (bound to a host when ``host_uid`` is set) and, when the
    login gave the host a new credential, that ``host_key`` (shown this once)."""

    token: str
    expires_at: float
    user: Account
    host_uid: str | None = None
    host_key: str | None = None


async def login(
    srv: Server, login_name: Any, password: Any, address: str | None = None, *, host_uid: Any = None
) -> LoggedIn:
    """Check a password; return a new token.

    Throttled per login and per client ``address``: a login or address that failed too
    often gets :class:`TooManyRequests` before its password is looked at. A password this
    process verified lately is recognised without the slow hash (see
    :class:`xwserver.passwords.VerifiedPasswords`). Naming ``host_uid``, one of the user's
    enabled hosts, binds the token to that host and gives the host a new credential; a host
    that is not (removed, disabled) is ignored: its worker's registration will say why.
    """
    if not isinstance(login_name, str) or not isinstance(password, str) or not login_name:
        raise BadRequest('login needs a JSON body {"login": "...", "password": "..."}')
    if host_uid is not None and not isinstance(host_uid, str):
        raise BadRequest('"host_uid" must be a host UID')
    user = await _password_login(srv, login_name, password, address)
    now = time.time()
    token, expires_at = new_token(), now + srv.settings.token_ttl_s
    wanted = parse_uid(host_uid) if host_uid and is_uid(host_uid) else None
    key = new_host_key() if wanted else None

    async def work(conn: Any) -> bool:
        host_id = None
        if key is not None:
            host = (await conn.execute(_HOST_TO_BIND, {"uid": wanted})).first()
            if host is not None and host.owner_id == user.id and host.enabled:
                host_id = host.id
                await conn.execute(
                    _SET_HOST_KEY, {"b_id": host_id, "key_hash": host_key_digest(key), "key_issued_at": now}
                )
        await conn.execute(_NEW_TOKEN, _token_row(token, user.id, host_id, now, expires_at))
        return host_id is not None

    if await transaction(srv.engine, work):  # bound to the host, which has a new credential
        return LoggedIn(token, expires_at, user, wanted, key)
    return LoggedIn(token, expires_at, user)


async def _password_login(srv: Server, login_name: str, password: str, address: str | None) -> Account:
    throttle = srv.login_throttle
    throttle.refuse_if_blocked(login_name, address)
    account, stored = await _account_named(srv, login_name)
    if account is not None and stored is not None and srv.passwords.matches(login_name, password, stored):
        throttle.succeeded(login_name)  # known right: no slow hash, no place among attempts
        return account
    throttle.admit(login_name, address)
    verdict: bool | None = None
    try:
        verdict = await _verify(srv, login_name, password, stored)
    finally:
        throttle.record(login_name, address, verdict)
    if account is None or not verdict:
        log.info("failed login for %r from %s", login_name[:64], address)
        raise AuthenticationError("wrong login or password")
    return account


def _token_row(
    token: str, user_id: int, host_id: int | None, now: float, expires_at: float
) -> dict[str, Any]:
    return {
        "token_hash": token_digest(token),
        "user_id": user_id,
        "host_id": host_id,
        "created_at": now,
        "expires_at": expires_at,
        "revoked": False,
    }


async def host_login(srv: Server, login_name: Any, host_uid: Any, key: Any, address: str | None) -> LoggedIn:
    """Log in as one host with its credential: the token acts only as that host.

    The key is 256 random bits: no guessing it, so no throttle. One older than
    ``host_key_rotate_s`` is replaced, the new one in the answer. Refused (401) if the key is
    not that host's current one or the host is not the login's; 403 if the host is disabled.
    """
    if not all(isinstance(v, str) and v for v in (login_name, host_uid, key)):
        raise BadRequest('expected {"login": "...", "host_uid": "...", "host_key": "..."}')
    if not re.fullmatch(UID_PATTERN, host_uid):
        raise BadRequest('"host_uid" must be a host UID')
    return await _host_login(srv, login_name, host_uid, key, address)


async def _host_login(srv: Server, login_name: str, host_uid: str, key: str, address: str | None) -> LoggedIn:
    refused = AuthenticationError(
        "wrong login, host or host key (a key is replaced when its identity's password changes); "
        "log in with the password"
    )
    if not is_uid(host_uid) or not _could_exist(login_name):
        raise refused
    uid = parse_uid(host_uid)
    now = time.time()
    digest = host_key_digest(key)
    token, expires_at = new_token(), now + srv.settings.token_ttl_s
    fresh_key = new_host_key()

    async def work(conn: Any) -> tuple[Account, bool]:
        row = (await conn.execute(_HOST_LOGIN, {"uid": uid})).first()
        if row is None or row.login != login_name or not same_digest(row.key_hash, digest):
            log.info("refused host key for host %s of %r from %s", host_uid[:40], login_name[:64], address)
            raise refused
        if not row.enabled:
            raise HostDisabled(f"host {uid} is disabled by an administrator")
        rotated = False
        if now - (row.key_issued_at or 0.0) >= srv.settings.host_key_rotate_s:
            # replaced only if still the key presented: of two logins with it, one rotates
            done = await conn.execute(
                _ROTATE_HOST_KEY,
                {
                    "b_id": row.host_id,
                    "b_key_hash": digest,
                    "key_hash": host_key_digest(fresh_key),
                    "key_issued_at": now,
                },
            )
            rotated = bool(done.rowcount)
        await conn.execute(_NEW_TOKEN, _token_row(token, row.id, row.host_id, now, expires_at))
        return _account(row), rotated

    user, rotated = await transaction(srv.engine, work)
    if rotated:
        log.info("host %s: its credential is replaced (older than %gs)", uid, srv.settings.host_key_rotate_s)
    return LoggedIn(token, expires_at, user, uid, fresh_key if rotated else None)


async def _account_named(srv: Server, login_name: str) -> tuple[Account | None, str | None]:
    """The user of a login and its password's hash, in one short read; (None, None) if none."""
    if not _could_exist(login_name):
        return None, None

    async def read(conn: Any) -> Any:
        return (await conn.execute(_ACCOUNT_BY_LOGIN, {"login": login_name})).first()

    row = await transaction(srv.engine, read)
    return (None, None) if row is None else (_account(row), row.password_hash)


async def _verify(srv: Server, login_name: str, password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (the user's hash; None: no such user), with the
    slow hash, in the same time whether the user exists or not; a success is remembered
    (:attr:`Server.passwords`)."""
    if len(password) > MAX_PASSWORD or not _encodable(password):
        return False
    ok = await asyncio.to_thread(
        lambda: verify_password(password, stored if stored is not None else dummy_hash())
    )
    if ok and stored is not None:
        srv.passwords.remember(login_name, password, stored)
    return ok and stored is not None


async def _check_password(srv: Server, login_name: str, password: str) -> bool:
    """Whether ``password`` is the user's (always with the slow hash)."""
    _, stored = await _account_named(srv, login_name)
    return await _verify(srv, login_name, password, stored)


async def resolve_token(srv: Server, token: str) -> Caller:
    digest = token_digest(token)
    now = time.time()
    cached = srv.tokens.get(digest, now)
    if cached is not None:
        return cached

    async def read(conn: Any) -> Any:
        return (await conn.execute(_TOKEN_CALLER, {"digest": digest, "now": now})).first()

    row = await transaction(srv.engine, read)
    if row is None or (row.host_id is not None and row.host_uid is None):  # its host is gone
        raise AuthenticationError("token unknown, expired or revoked; log in again")
    caller = Caller(
        id=row.id,
        uid=row.uid,
        login=row.login,
        rights=UserLevel(row.rights),
        group_id=row.group_id,
        host_uid=row.host_uid,
    )
    srv.tokens.put(digest, caller, row.expires_at, now)
    return caller


async def logout(srv: Server, token: str) -> None:
    digest = token_digest(token)
    async with srv.sessions.begin() as session:
        await session.execute(update(Token).where(Token.token_hash == digest).values(revoked=True))
    srv.tokens.drop(digest)


# -- the user API -------------------------------------------------------------------------------------------
async def me(srv: Server, caller: Caller) -> dict[str, Any]:
    async with srv.sessions() as session:
        user = await session.get(User, caller.id)
        if user is None:  # removed while its token sat in another process's cache
            raise AuthenticationError("token unknown, expired or revoked; log in again")
        return (await render(srv, session, [user]))[0]


async def add(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    """``POST /users`` (SUPER): a new user, rights parsed as XWHEP wrote them too."""
    caller.require(UserLevel.SUPER, "creating a user")
    if not isinstance(body, dict):
        raise BadRequest('expected {"login", "password", "email", "rights", "group"}')
    unknown = set(body) - _USER_FIELDS
    if unknown:
        raise BadRequest(f"unknown user fields: {', '.join(sorted(unknown))[:200]}")
    rights = _rights(body.get("rights", "STANDARD"))
    login_name = check_login_text(body.get("login"))
    password = check_password(body.get("password"))
    email = check_email(body.get("email"))
    async with srv.sessions.begin() as session:
        group = await groups.resolve(session, body.get("group"))
        user = await create_user(
            session, login_name, password, rights, email=email, group_id=group.id if group else None
        )
    log.info("user %s (%s) created by %s", login_name, rights.name, caller.login)
    async with srv.sessions() as session:
        return (await render(srv, session, [user]))[0]


def _rights(value: Any) -> UserLevel:
    if not isinstance(value, str):
        raise BadRequest('"rights" must be one of WORKER, STANDARD, ADVANCED, SUPER')
    return UserLevel.parse(value[:64])


async def list_users(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    """Every user for SUPER; only the caller otherwise."""
    async with srv.sessions() as session:
        q = select(User).order_by(User.id)
        if not caller.is_super:
            q = q.where(User.id == caller.id)
        return await render(srv, session, list((await session.execute(q)).scalars()), credit_of=True)


def _not_found(key: str) -> NotFound:
    return NotFound(f"no user {key[:64]!r} visible to you; list them with xwusers")


async def get(srv: Server, caller: Caller, key: str) -> dict[str, Any]:
    """One user: oneself, or anyone for SUPER (others get 404, as if it did not exist)."""
    key = _target(caller, key)
    if not (caller.is_super or _is_self(caller, key)):
        raise _not_found(key)
    async with srv.sessions() as session:
        user = await _find(session, key)
        if user is None:
            raise _not_found(key)
        return (
            await render(
                srv,
                session,
                [user],
            )
        )[0]


async def modify(srv: Server, caller: Caller, key: str, body: Any) -> dict[str, Any]:
    """``PATCH /users/{key}`` (SUPER): rights, group, email. A change of rights or group
    revokes that user's tokens, so no token carries the old ones."""
    key = _target(caller, key)
    caller.require(UserLevel.SUPER, "changing a user")
    if not isinstance(body, dict) or not body:
        raise BadRequest('expected some of {"rights", "group", "email"}')
    unknown = set(body) - _PATCH_FIELDS
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}; only rights, group, email")
    rights = _rights(body["rights"]) if "rights" in body else None
    email = check_email(body["email"]) if "email" in body else None
    async with srv.sessions.begin() as session:
        user = await _find(session, key)
        if user is None:
            raise _not_found(key)
        before = (user.rights, user.group_id)
        if rights is not None:
            if user.id == caller.id and rights < UserLevel(user.rights):
                raise Forbidden("a SUPER cannot lower its own rights; another SUPER may")
            user.rights = int(rights)
        if "group" in body:
            group = await groups.resolve(session, body["group"])
            user.group_id = group.id if group else None
        if email is not None:
            user.email = email
        revoked = (user.rights, user.group_id) != before
        if revoked:
            await _revoke_tokens(session, user.id)
    if revoked:
        srv.tokens.drop_user(user.id)
    log.info("user %s changed by %s%s", user.login, caller.login, "; tokens revoked" if revoked else "")
    async with srv.sessions() as session:
        return (await render(srv, session, [user]))[0]


async def change_password(srv: Server, caller: Caller, key: str, body: Any, address: str | None) -> None:
    """Oneself with the old password, or SUPER for anyone else; revokes every token of the user.

    A wrong old password counts as a failed login: a stolen token must not become a way to
    guess the password without the login throttle.
    """
    key = _target(caller, key)
    if not isinstance(body, dict):
        raise BadRequest('expected {"password": "new", "old_password": "current"}')
    unknown = set(body) - {"password", "old_password"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}; only password, old_password")
    own = _is_self(caller, key)
    if not own and not caller.is_super:
        raise Forbidden("changing another user's password needs SUPER rights")
    password = check_password(body.get("password"))
    if own:
        old = body.get("old_password")
        if not isinstance(old, str) or not old:
            raise BadRequest('"old_password" is required to change one\'s own password')
        srv.login_throttle.admit(caller.login, address)
        verdict: bool | None = None
        try:
            verdict = await _check_password(srv, caller.login, old)
        finally:
            srv.login_throttle.record(caller.login, address, verdict)
        if not verdict:
            raise Forbidden('"old_password" is not the current password')
    pw_hash = await asyncio.to_thread(hash_password, password)
    async with srv.sessions.begin() as session:
        user = await _find(session, key)
        if user is None:
            raise _not_found(key)
        user.password_hash = pw_hash
        await _revoke_tokens(session, user.id)
    srv.tokens.drop_user(user.id)
    srv.passwords.forget(user.login)
    log.info("password of %s changed by %s; its tokens are revoked", user.login, caller.login)


async def remove(srv: Server, caller: Caller, key: str) -> None:
    """``DELETE /users/{key}`` (SUPER, not oneself).

    Refused (409) while the user owns apps, data or jobs: they are the user's work, and
    removing them is a decision of its own. Otherwise the user's tokens are revoked, its
    hosts disabled, their running tasks handed back (jobs PENDING, no retry spent), and
    hosts, their past task records, tokens and the user removed. The jobs those tasks ran
    keep their status, exit code and result.
    """
    key = _target(caller, key)
    caller.require(UserLevel.SUPER, "removing a user")
    async with srv.sessions.begin() as session:
        user = await _find(session, key)
        if user is None:
            raise _not_found(key)
        if user.id == caller.id:
            raise Forbidden("a user cannot remove itself; another SUPER may")
        await _refuse_if_owner(session, user)
        await _revoke_tokens(session, user.id)
        await events.record(
            session, [events.event("user", user.uid, "removed", owner_id=user.id, detail=user.login)]
        )
        await lifecycle.disable_hosts_of(session, user.id)
        host_rows = (await session.execute(select(Host.id, Host.uid).where(Host.owner_id == user.id))).all()
    srv.tokens.drop_user(user.id)
    for host in host_rows:
        srv.hosts.drop(host.uid)
    released = 0
    for host in host_rows:
        async with srv.sessions.begin() as session:
            released += await lifecycle.release_host(session, host.id)
    srv.notifier.notify(released)
    host_ids = [h.id for h in host_rows]
    try:
        async with srv.sessions.begin() as session:
            await _refuse_if_owner(session, user)
            if host_ids:
                still = (
                    await session.execute(
                        select(func.count())
                        .select_from(Task)
                        .where(Task.host_id.in_(host_ids), Task.status == TaskStatus.RUNNING)
                    )
                ).scalar_one()
                if still:
                    raise Conflict(f"a host of {user.login} took work while being removed; try again")
                await lifecycle.remove_host_tasks(session, host_ids)
                await session.execute(delete(Host).where(Host.id.in_(host_ids)))
            await session.execute(delete(Token).where(Token.user_id == user.id))
            await session.execute(delete(User).where(User.id == user.id))
    except DBIntegrityError:  # something of theirs appeared meanwhile
        raise Conflict(f"user {user.login} got new objects while being removed; try again") from None
    srv.tokens.drop_user(user.id)
    log.info(
        "user %s removed by %s with %d host(s); %d running task(s) handed back",
        user.login,
        caller.login,
        len(host_ids),
        released,
    )


async def _refuse_if_owner(session: AsyncSession, user: User) -> None:
    owned = []
    for what, model in (
        ("apps", App),
        ("data", Data),
        ("jobs", Job),
        ("sessions", JobSession),
        ("groups of jobs", JobGroup),
    ):
        n = (
            await session.execute(select(func.count()).select_from(model).where(model.owner_id == user.id))
        ).scalar_one()
        if n:
            owned.append(f"{n} {what}")
    if owned:
        raise Conflict(
            f"user {user.login} still owns {', '.join(owned)}; remove them first (xwrm), then the user"
        )
