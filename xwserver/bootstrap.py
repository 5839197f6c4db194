"""First start of a deployment: schema, the SUPER admin and the public worker identity."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.levels import UserLevel

from .db.engine import create_engine, migrate, sessionmaker
from .db.models import Token, User
from .passwords import hash_password, new_password
from .settings import ServerSettings
from .users import create_user

WORKER_LOGIN = "worker"


@dataclass
class Bootstrap:
    admin_login: str
    admin_password: str
    worker_login: str
    worker_password: str


async def bootstrap(
    settings: ServerSettings, admin_login: str = "admin", admin_password: str | None = None
) -> Bootstrap:
    """Migrate the database and create the two first identities (reset if they exist)."""
    engine = create_engine(settings.db_url)
    try:
        await migrate(engine)
        admin_password = admin_password or new_password()
        worker_password = new_password()
        async with sessionmaker(engine).begin() as session:
            await _ensure_user(session, admin_login, admin_password, UserLevel.SUPER)
            await _ensure_user(session, WORKER_LOGIN, worker_password, UserLevel.WORKER)
        return Bootstrap(admin_login, admin_password, WORKER_LOGIN, worker_password)
    finally:
        await engine.dispose()


async def _ensure_user(session: AsyncSession, login: str, password: str, rights: UserLevel) -> None:
    """Create the identity; on a database that already has it, reset its password and rights."""
    user = (await session.execute(select(User).where(User.login == login))).scalar_one_or_none()
    if user is None:
        await create_user(session, login, password, rights)
        return
    user.password_hash = await asyncio.to_thread(hash_password, password)
    user.rights = int(rights)
    await session.execute(update(Token).where(Token.user_id == user.id).values(revoked=True))
