"""The access matrix's database cells, through the server's functions: ``list`` and ``delete``.

tests/security/test_access_matrix.py holds the table (:data:`EXPECTED`, written by hand from
XWHEP's manual and the wire contract; nothing here derives an expectation from the server's
code) and runs every cell over HTTP on SQLite. The cells whose answer the database computes
(``list``: the access bits and group membership are a WHERE clause in each database's SQL;
``delete``: what a removal may leave behind is the database's foreign keys and the counts it
answers) run here on every database, without HTTP: 304 cells per database.

The world is the HTTP matrix's, built by the same plan (its ``_build_owner``, ``_actor``,
``_target``) through the server's functions instead of the API: :class:`DomainWorld`
overrides the few calls that make users, groups and objects. An account's ``token`` is its
login here: the world acts as the caller that login resolves to at the time of the call (its
level as changed by SUPER, as a token after a new login would). A cell calls, as its actor,
what the route's handler calls, after the check every route but the worker's makes at the
door (a WORKER identity is refused with 403). Then, as over HTTP:

- allowed: no error AND the effect, seen afterwards by SUPER (the object is listed; removed:
  ``GET /objects/{uid}``'s function no longer finds it);
- denied: an error with the status the table's ``get`` row says (404 if the actor may not
  read the object, else 403 or 409; a list may instead leave the object out), AND the object
  as SUPER sees it is the same before and after.
Any other error fails the cell, and so does an error or traceback in the server's log.
:data:`KNOWN_BUGS` of the HTTP matrix marks its cells ``xfail(strict=True)`` here too.

Each database's world is built once, at module scope (the ``domain`` fixture here is the
bootstrapped server of one backend, shared by its cells, as the HTTP matrix shares a server).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from helpers import domain as d
from test_access_matrix import (
    CELL,
    DATABASE_ACTIONS,
    LEVELS,
    PLATFORM,
    RELATIONS,
    Account,
    Cell,
    Target,
    World,
    _actor,
    _binary,
    _build_owner,
    _matrix,
    _refusal_statuses,
    _target,
    base,
)
from xw_server_harness import (
    BACKENDS,
    XW,
    LogCapture,
    Reply,
    Templates,
    cheap_password_hashes,
    domain_server,
)

from xwcommon.errors import NotFound, XWError
from xwcommon.levels import UserLevel
from xwserver import apps, data, groups, hosts, jobs, objects, users
from xwserver.access import Caller
from xwserver.state import Server

#: the cells of a backend share its world, which lives in the module's event loop
IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


# -- the world, through the server's functions ---------------------------------------------------------
@dataclass
class DomainWorld(World):
    """The HTTP matrix's world on a :class:`Server`, made through the server's functions.
    An account's ``token`` is its login (see the module's docstring)."""

    srv: Server = cast(Server, None)
    log: LogCapture = dataclasses.field(default_factory=LogCapture)

    @property
    def admin(self) -> str:
        return "admin"

    async def as_(self, token: str) -> Caller:
        """The caller ``token`` (a login) resolves to now."""
        return await d.caller(self.srv, token)

    async def group(self, label: str, token: str | None = None) -> str:
        who = await self.as_(token or self.admin)
        with d.acting(who):
            return str((await groups.create(self.srv, who, {"label": label}))["uid"])

    async def user(self, prefix: str, level: str, group: str | None, *, log_in: bool = True) -> Account:
        login, password = self.name(prefix), "pw-" + secrets.token_hex(8)
        body = {"login": login, "password": password, "email": f"{login}@example.org", "rights": level}
        admin = await self.as_(self.admin)
        with d.acting(admin):
            made = await users.add(self.srv, admin, {**body, "group": group})
        assert made["rights"] == level and made["group_uid"] == group, made
        return Account(login, password, str(made["uid"]), login, group)

    async def set_level(self, account: Account, level: str) -> None:
        admin = await self.as_(self.admin)
        with d.acting(admin):
            changed = await users.modify(self.srv, admin, account.uid, {"rights": level})
        assert changed["rights"] == level, changed

    async def data(self, token: str, rights: str = "0750") -> str:
        content = f"data {secrets.token_hex(8)}\n".encode()
        stored = await d.upload(self.srv, await self.as_(token), content, self.name("data"), rights)
        shown = await objects.get(self.srv, await self.as_(self.admin), stored.uid)
        assert shown["object"]["access_rights"] == rights, shown
        return stored.uid

    async def app(self, token: str, rights: str, *, ask: str | None = None) -> Target:
        name = self.name("app")
        body: dict[str, Any] = {"name": name, "binaries": [_binary(PLATFORM, self.binary)]}
        if ask is not None:
            body["access_rights"] = ask
        who = await self.as_(token)
        with d.acting(who):
            a = await apps.insert(self.srv, who, body)
        assert a["access_rights"] == rights, (
            f"app inserted with {a['access_rights']}, the world wants {rights}"
        )
        return Target(str(a["uid"]), name)

    async def job(self, token: str, app: str, rights: str) -> Target:
        label = self.name("job")
        j = await d.submit(self.srv, await self.as_(token), app, label=label)
        assert j["access_rights"] == rights and j["status"] == "PENDING", j
        return Target(str(j["uid"]), label)

    async def host(self, token: str) -> Target:
        name = self.name("host")
        uid = await d.register(self.srv, await self.as_(token), name=name)
        admin = await self.as_(self.admin)
        with d.acting(admin):
            await objects.chmod(self.srv, admin, uid, {"rights": "0750"})
        return Target(uid, name)

    async def snapshot(self, uid: str) -> Reply:
        """The object as SUPER sees it (``GET /objects/{uid}``; 404 once it is gone)."""
        try:
            return Reply(200, await objects.get(self.srv, await self.as_(self.admin), uid))
        except NotFound as gone:
            return Reply(404, {"error": gone.code, "message": str(gone)})


async def build_domain_world(srv: Server) -> DomainWorld:
    """The HTTP matrix's ``build_world``, step for step, through the server's functions (one
    after the other: a session's transactions are cheap, and SQLite takes one writer)."""
    w = DomainWorld(xw=cast(XW, None), srv=srv)
    w.g1, w.g2 = await w.group("G1"), await w.group("G2")
    groups_by_relation = {"same_group": w.g1, "other_group": w.g2, "no_group": None}
    w.owner = await w.user("owner", "STANDARD", w.g1)
    w.advowner = await w.user("advowner", "ADVANCED", w.g1)
    for lv, (rel, g) in itertools.product(LEVELS, groups_by_relation.items()):
        w.actors[lv, rel] = await w.user(f"{lv.lower()}-{rel}", lv, g)
    for lv in LEVELS:
        w.selves[lv] = await w.user("self", lv, w.g1)
    keys = [(lv, rel, "delete") for lv, rel in itertools.product(LEVELS, RELATIONS[1:])]
    keys += [("*", rel, "change") for rel in RELATIONS[1:]]
    for key in keys:
        target = await w.user("target", "STANDARD", w.g1, log_in=False)
        w.user_targets[key] = Target(target.uid, target.login)

    w.binary = await w.data(w.admin, "0755")
    w.public_app = (await w.app(w.advowner.token, "0755")).uid
    w.group_app = (await w.app(w.advowner.token, "0750", ask="0750")).uid
    w.owner_private_app = (await w.app(w.owner.token, "0700")).uid
    w.owner_data = await w.data(w.owner.token)
    for level in LEVELS:
        await _build_owner(w, level)
    return w


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def domain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, db_templates: Templates
) -> AsyncIterator[Server]:
    """The domain tier's server on a fresh database of one backend, bootstrapped, shared by the
    backend's cells (the ``domain`` fixture of tests/unit/conftest.py, at module scope)."""
    backend = str(request.param)
    home: Path = tmp_path_factory.mktemp(f"domain-matrix-{backend}") / "home"
    async with domain_server(home, backend, db_templates) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(domain: Server) -> AsyncIterator[DomainWorld]:
    capture = LogCapture()
    with cheap_password_hashes(), capture.installed():
        w = await build_domain_world(domain)
        w.log = capture
        yield w


# -- the actions: what the list and delete routes call ----------------------------------------------------
#: the route each kind's list and delete are (for the door's message)
LIST_ROUTES = {
    "app": "GET /apps",
    "data": "GET /data",
    "job": "GET /jobs",
    "host": "GET /hosts",
    "user": "GET /users",
    "group": "GET /usergroups",
}
DELETE_ROUTES = {
    "app": "DELETE /apps/{uid}",
    "data": "DELETE /data/{uid}",
    "job": "DELETE /jobs/{uid}",
    "user": "DELETE /users/{key}",
    "group": "DELETE /usergroups/{key}",
}


async def _listed(srv: Server, who: Caller, kind: str, target: Target) -> list[dict[str, Any]]:
    """What the list route of ``kind`` answers ``who`` (jobs: by the target's label, as the
    HTTP probe asks)."""
    if kind == "app":
        return await apps.list_apps(srv, who)
    if kind == "data":
        return await data.list_data(srv, who)
    if kind == "job":
        return await jobs.list_jobs(srv, who, label=target.name, limit="5000")
    if kind == "host":
        return await hosts.list_hosts(srv, who)
    if kind == "user":
        return await users.list_users(srv, who)
    assert kind == "group"
    return await groups.list_groups(srv, who)


REMOVALS: dict[str, Callable[[Server, Caller, str], Awaitable[None]]] = {
    "app": apps.delete,
    "data": data.delete,
    "job": jobs.delete,
    "user": users.remove,
    "group": groups.remove,
}


@dataclass
class Outcome:
    """One action as its actor: the error it raised (None: done) and whether its effect is
    visible (to SUPER) afterwards."""

    what: str
    error: XWError | None
    effect: bool
    #: a list may deny by leaving the object out
    hidden_ok: bool = False

    def __str__(self) -> str:
        answer = "done" if self.error is None else f"{self.error.http_status} {self.error.code}: {self.error}"
        return f"{self.what} -> {answer:.200} effect={self.effect}"


async def _act(w: DomainWorld, cell: Cell) -> Outcome:
    kind, target = base(cell.kind), cell.target
    assert target is not None
    who = await w.as_(cell.actor.token)
    route = (LIST_ROUTES if cell.action == "list" else DELETE_ROUTES)[kind]
    error: XWError | None = None
    listed: list[dict[str, Any]] = []
    try:
        # every route but the worker's refuses a WORKER identity at the door
        who.require(UserLevel.STANDARD, route)
        with d.acting(who):
            if cell.action == "list":
                listed = await _listed(w.srv, who, kind, target)
            else:
                await REMOVALS[kind](w.srv, who, target.uid)
    except XWError as exc:
        error = exc
    if cell.action == "list":
        return Outcome(route, error, target.uid in {o.get("uid") for o in listed}, hidden_ok=True)
    return Outcome(route, error, (await w.snapshot(target.uid)).status == 404)


# -- the test --------------------------------------------------------------------------------------------------
@IN_MODULE_LOOP
@pytest.mark.parametrize(CELL, _matrix(DATABASE_ACTIONS))
async def test_access(
    world: DomainWorld, kind: str, action: str, level: str, relation: str, allowed: bool
) -> None:
    """One cell of the HTTP matrix's table, on the ``domain`` fixture's backend."""
    actor = _actor(world, kind, action, level, relation)
    cell = Cell(world, kind, action, level, relation, actor)
    cell.target = await _target(world, cell)
    before = await world.snapshot(cell.uid) if not allowed else None
    logged_before = len(world.log.records)

    seen = await _act(world, cell)

    case = f"{level} ({relation.replace('_', ' ')}) {action} {kind}"
    if allowed:
        assert seen.error is None and seen.effect, f"{case}: expected allowed, got {seen}"
    else:
        assert not seen.effect, f"{case}: expected denied, got {seen}"
        if seen.error is not None:
            statuses = _refusal_statuses(kind, action, level, relation)
            assert seen.error.http_status in statuses, f"{case}: refused, but not with {statuses}: {seen}"
        else:
            assert seen.hidden_ok, f"{case}: expected denied, got {seen}"
        assert before is not None
        after = await world.snapshot(cell.uid)
        assert (after.status, after.body) == (before.status, before.body), (
            f"{case}: denied ({seen}) but the object changed:\n before {before.body}\n after  {after.body}"
        )
    problems = [
        world.log.format(r)
        for r in world.log.records[logged_before:]
        if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert not problems, f"{case}: the server logged errors:\n" + "\n".join(problems)


def test_the_domain_cells_are_the_tables_list_and_delete_cells() -> None:
    """304 cells a database: every list and delete cell of the table, none derived elsewhere."""
    cells = _matrix(DATABASE_ACTIONS)
    assert len(cells) == 304
    assert {p.values[1] for p in cells} == {"list", "delete"}
