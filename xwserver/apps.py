"""Applications: one binary (a data object) per (os, cpu)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import UserLevel, format_access_rights, parse_access_rights
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.uri import is_uid, new_uid, parse_uid

from . import events, requirements, validation
from .access import EXEC, READ, WRITE, Caller, default_app_rights, may_on, may_sql
from .data import check_name, get_readable
from .db.models import App, AppBinary, Data, Job
from .signing import SigningPolicy
from .state import Server, uid_maps


async def insert(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    caller.require(UserLevel.STANDARD, "inserting an application")
    if not isinstance(body, dict):
        raise BadRequest('expected a JSON object {"name": ..., "binaries": [{"os","cpu","data_uid"}]}')
    name = check_name(body.get("name"), "application name")  # type: ignore[arg-type]
    if is_uid(name):
        raise BadRequest("an application name must not look like a UID")
    binaries = body.get("binaries")
    if not isinstance(binaries, list) or not binaries:
        raise BadRequest('"binaries" must be a non-empty list of {"os","cpu","data_uid"}')
    rights = app_rights(caller, body.get("access_rights"))
    needs_network = body.get("needs_network")
    if needs_network is not None and not isinstance(needs_network, bool):
        raise BadRequest('"needs_network" must be true or false')
    replicated = validation.replication(body, validation.DEFAULT_REPLICATION)
    volatile = validation.volatile_names(body.get("volatile"))
    comparator = await _comparator(srv, caller, body.get("comparator_uid"))
    needs = requirements.of_app(body)
    wanted: list[tuple[str, str, Data, str | None]] = []
    policy = SigningPolicy.of(srv.settings)
    for b in binaries:
        if not isinstance(b, dict) or not all(isinstance(b.get(k), str) for k in ("os", "cpu", "data_uid")):
            raise BadRequest('each binary must be {"os": str, "cpu": str, "data_uid": str}')
        signature = b.get("signature")
        if signature is not None and not isinstance(signature, str):
            raise BadRequest('a binary\'s "signature" must be a string (base64)')
        data = await get_readable(srv, caller, parse_uid(b["data_uid"], "data_uid"))
        os_name, cpu = normalize_os(b["os"]), normalize_cpu(b["cpu"])
        # checked here too, not only by workers: a binary no worker would run is refused at once
        policy.check(signature, name, os_name, cpu, data.sha256)
        wanted.append((os_name, cpu, data, signature))
    async with srv.sessions.begin() as session:
        app = (await session.execute(select(App).where(App.name == name))).scalar_one_or_none()
        if app is None:
            app = App(
                uid=new_uid(),
                name=name,
                owner_id=caller.id,
                access_rights=rights,
                created_at=time.time(),
                needs_network=bool(needs_network),
                volatile=volatile,
                comparator_data_id=comparator,
                **replicated,
                **needs,
            )
            session.add(app)
            await session.flush()
            await events.record(
                session, [events.event("app", app.uid, "created", owner_id=caller.id, detail=name)]
            )
        elif not await may_on(session, caller, WRITE, owner_id=app.owner_id, access_rights=app.access_rights):
            raise Conflict(f"application name {name!r} is taken by another user; choose another name")
        else:  # jobs already submitted keep the copies they took
            if needs_network is not None:
                app.needs_network = needs_network
            for key in validation.DEFAULT_REPLICATION:
                if key in body:
                    setattr(app, key, replicated[key])
            if "volatile" in body:
                app.volatile = volatile
            if "comparator_uid" in body:
                app.comparator_data_id = comparator
            for key, value in needs.items():
                if key in body or (key == "required_tags" and "tags" in body):
                    setattr(app, key, value)
        for os_name, cpu, data, signature in wanted:
            existing = (
                await session.execute(
                    select(AppBinary).where(
                        AppBinary.app_id == app.id, AppBinary.os == os_name, AppBinary.cpu == cpu
                    )
                )
            ).scalar_one_or_none()
            if existing is None:
                session.add(
                    AppBinary(app_id=app.id, os=os_name, cpu=cpu, data_id=data.id, signature=signature)
                )
            else:
                existing.data_id = data.id
                existing.signature = signature
        await session.flush()
        srv.binaries.clear()
        srv.app_platforms.clear()
        return (await render(srv, session, [app]))[0]


async def _comparator(srv: Server, caller: Caller, ref: Any) -> int | None:
    """The comparison program an app names (a data the caller may read), or None. It runs on
    the server (in the validator's sandbox): only ADVANCED users and above may name one."""
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise BadRequest('"comparator_uid" must be a data UID or URI')
    if caller.rights < UserLevel.ADVANCED:
        raise Forbidden(
            f"a comparison program runs on the server: naming one needs ADVANCED rights; "
            f"{caller.login} has {caller.rights.name}"
        )
    data = await get_readable(srv, caller, parse_uid(ref, "comparator_uid"))
    return int(data.id)


def app_rights(caller: Caller, asked: Any) -> int:
    """The rights of a new app: ADVANCED and up choose (public 0755 by default, group 0750,
    private 0700); anyone else's apps are private, whatever was asked (XWHEP: only an
    administrator-level user inserts public or group applications)."""
    if caller.rights < UserLevel.ADVANCED or asked is None:
        return default_app_rights(caller)
    return parse_access_rights(asked)


async def render(srv: Server, session: AsyncSession, apps: list[App]) -> list[dict[str, Any]]:
    if not apps:
        return []
    rows = await session.execute(
        select(
            AppBinary.app_id,
            AppBinary.os,
            AppBinary.cpu,
            Data.uid,
            Data.sha256,
            Data.size,
            AppBinary.signature,
        )
        .join(Data, Data.id == AppBinary.data_id)
        .where(AppBinary.app_id.in_([a.id for a in apps]))
        .order_by(AppBinary.os, AppBinary.cpu)
    )
    by_app: dict[int, list[dict[str, Any]]] = {}
    for app_id, os_name, cpu, data_uid, sha, size, signature in rows:
        binary = {"os": os_name, "cpu": cpu, "data_uid": data_uid, "sha256": sha, "size": size}
        if signature:
            binary["signature"] = signature
        by_app.setdefault(app_id, []).append(binary)
    maps = await uid_maps(
        session, {"user": [a.owner_id for a in apps], "data": [a.comparator_data_id for a in apps]}
    )
    users, data = maps["user"], maps["data"]
    return [
        {
            **srv.wire.app(a, users.get(a.owner_id, ""), by_app.get(a.id, [])),
            **{key: getattr(a, key) for key in validation.DEFAULT_REPLICATION},
            "volatile": validation.parse_volatile(a.volatile),
            "comparator_uid": data.get(a.comparator_data_id) if a.comparator_data_id else None,
            "tags": requirements.parse_tags(a.required_tags),
            "min_cores": a.min_cores,
            "min_gpus": a.min_gpus,
        }
        for a in apps
    ]


async def list_apps(srv: Server, caller: Caller) -> list[dict[str, Any]]:
    """The apps the caller may read, by name."""
    async with srv.sessions() as session:
        q = select(App).where(may_sql(caller, READ, App.owner_id, App.access_rights)).order_by(App.name)
        apps = list((await session.execute(q)).scalars())
        return await render(srv, session, apps)


def _check_ref(ref: str) -> None:
    if not isinstance(ref, str) or not ref:
        raise BadRequest("an application is named by its name, UID or URI")
    if any(ord(c) < 32 for c in ref):  # no name has one (check_name); PostgreSQL cannot compare a NUL
        raise NotFound(f"no application {ref!r}; list them with xwapps")


async def _check_rights(conn: Any, caller: Caller, app: Any, ref: str, bit: int) -> None:
    """404 unless the caller may read ``app`` (None: not found), 403 unless it may ``bit`` it."""
    if app is None or not await may_on(
        conn, caller, READ, owner_id=app.owner_id, access_rights=app.access_rights
    ):
        raise NotFound(f"no application {ref!r}; list them with xwapps")
    if bit != READ and not await may_on(
        conn, caller, bit, owner_id=app.owner_id, access_rights=app.access_rights
    ):
        doing = "execute" if bit == EXEC else "change"
        raise Forbidden(
            f"you may not {doing} application {app.name!r}: its access rights are "
            f"{format_access_rights(app.access_rights)}"
        )


async def find(session: AsyncSession, caller: Caller, ref: str, bit: int = READ) -> App:
    """An app by UID, URI or name: 404 unless the caller may read it, 403 unless it may ``bit`` it."""
    _check_ref(ref)
    q = select(App).where(App.uid == parse_uid(ref)) if is_uid(ref) else select(App).where(App.name == ref)
    app = (await session.execute(q)).scalar_one_or_none()
    await _check_rights(session, caller, app, ref, bit)
    assert app is not None  # _check_rights: 404
    return app


#: what a submission reads of an app, by UID or by name (prebuilt: no statement to build)
APP_ROW = (
    App.id,
    App.uid,
    App.name,
    App.owner_id,
    App.access_rights,
    App.needs_network,
    *(getattr(App, key) for key in validation.DEFAULT_REPLICATION),
    App.required_tags,
    App.min_cores,
    App.min_gpus,
)
_APP_ROW_BY_UID = select(*APP_ROW).where(App.uid == bindparam("ref"))
_APP_ROW_BY_NAME = select(*APP_ROW).where(App.name == bindparam("ref"))


async def find_row(conn: Any, caller: Caller, ref: str, bit: int = READ) -> Any:
    """:func:`find` as a row of :data:`APP_ROW`, on any connection (the hot path's too)."""
    _check_ref(ref)
    if is_uid(ref):
        app = (await conn.execute(_APP_ROW_BY_UID, {"ref": parse_uid(ref)})).first()
    else:
        app = (await conn.execute(_APP_ROW_BY_NAME, {"ref": ref})).first()
    await _check_rights(conn, caller, app, ref, bit)
    return app


async def get(srv: Server, caller: Caller, ref: str) -> dict[str, Any]:
    async with srv.sessions() as session:
        app = await find(session, caller, ref)
        return (await render(srv, session, [app]))[0]


async def delete(srv: Server, caller: Caller, ref: str) -> None:
    async with srv.sessions.begin() as session:
        app = await find(session, caller, ref, WRITE)
        jobs = (
            await session.execute(select(func.count()).select_from(Job).where(Job.app_id == app.id))
        ).scalar_one()
        if jobs:
            raise Conflict(f"application {app.name!r} still has {jobs} jobs; remove them first")
        await session.execute(sa_delete(AppBinary).where(AppBinary.app_id == app.id))
        await events.record(
            session, [events.event("app", app.uid, "removed", owner_id=app.owner_id, detail=app.name)]
        )
        await session.delete(app)
    srv.binaries.clear()
    srv.app_platforms.clear()
