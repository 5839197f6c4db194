"""The access matrix: who may do what to whose objects, tried cell by cell against a real server.

Every user level (WORKER, STANDARD, ADVANCED, SUPER) × relation to the object (owner, same
group, other group, no group) × object kind × action (list, get, insert, modify, chmod,
delete, execute) has an expected answer in :data:`EXPECTED` below, written out by hand
from XWHEP's manual (v5.7.5: "User rights", "Access rights", "Usage levels",
"Volunteer computing management", 8.2.4) and the wire contract (docs/api.md, "Users and
user groups", "Access rights"). Nothing in it is derived from the server's code. Each
cell is one test that performs the action for real and checks:

- allowed: a 2xx answer AND the effect, seen afterwards by SUPER (the object is listed,
  got, created, changed, removed, the job exists...);
- denied: a JSON error ``{"error", "message"}`` with 403, 404 or 409 (a list may instead
  simply leave the object out), AND no change: the object as SUPER sees it through
  ``GET /objects/{uid}`` is the same before and after, and nothing new was created.
Any other answer (400, 500, a 2xx without its effect) fails the cell, and so does an error
or traceback in the server's log. Where the server departs from the table, the cell is
marked ``xfail(strict=True)`` in :data:`KNOWN_BUGS` with the bug, and the table stays as
the manual says.

The world
---------
Two user groups G1 and G2. ``owner``: a STANDARD user in G1, owner of the objects under
test; ``advowner``: an ADVANCED user in G1, owner of the public apps (only ADVANCED and
above insert public apps). One actor per level and relation:

- owner:        the object is the actor's own. Objects a level cannot make (a WORKER makes
                no app; only SUPER makes a user group) were made by the actor while it
                had the level that could, and SUPER then set its level (PATCH /users): a
                demoted owner keeps its objects but not the powers of its old level.
                The actor is in G1.
- same group:   the actor is in G1, the owner's group.
- other group:  the actor is in G2.
- no group:     the actor belongs to no group.

The objects under test and their rights. A cell that changes or removes its object (modify,
chmod, delete) gets a fresh one, so that it touches no other cell's; the read-only cells
(list, get, execute) of a kind share one per relation (owner: one per level):

- ``app/private``  0700: a STANDARD user's app (an app is private unless inserted by
  ADVANCED or above, and its rights never change). Binaries for windows only, so that no
  (linux) test host ever claims a job of the matrix.
- ``app/group``    0750: an ADVANCED user's app inserted with ``access_rights=0750`` (only
  ADVANCED and above choose an app's rights at insertion).
- ``app/public``   0755: an ADVANCED user's app (their default).
- ``data``         0750 (group): uploaded with ``access_rights=0750``, so that the group
  bits are what decides for a member of G1 (data is public by default).
- ``job/private``  0700: the owner's job on its own private app (a job's rights are its app's).
- ``job/group``    0750: the owner's job on a group app of G1 (executable by G1's members).
- ``job/public``   0755: the owner's job on the public app.
- ``host``         0750: registered by its owner's identity (a STANDARD identity: a private
  worker), then set to 0750 by SUPER.
- ``user``         the user itself; for the other relations, a STANDARD user in G1 (one per
  removal; the email changes, unique values, share one per relation).
- ``group``        same group: G1 itself (the actor and others are members); owner: a group
  the actor created while SUPER (and is not a member of); other group / no group: an empty
  group. A group with members cannot be removed (409), an empty one can.

The whole table runs here on SQLite: 880 cells. The cells whose answer the database computes,
``list`` (the access bits and group membership are a WHERE clause, ``access_rights & bit``, in
each database's SQL) and ``delete`` (what a removal may leave behind is the database's foreign
keys and the counts it answers), 304 a database, run in the domain tier on SQLite, PostgreSQL
and MariaDB (skipped locally when absent, required in CI): tests/security/test_domain_access_matrix.py
builds this world through the server's functions and checks those cells of this table as each
actor, without HTTP. Over HTTP, PostgreSQL and MariaDB keep a smoke set: the ``list`` cells of
one kind (:data:`SMOKE_KIND`, 16 each). The other actions read one object and decide in
Python; their SQL is the same on every database and the domain tests run it there. A fresh
server per cell (the ``xw`` fixture) would cost minutes, so each backend's cells share one
server (the same harness, ``running_server``, at module scope).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from xw_server_harness import XW, Reply, Templates, running_server

#: the cells of a backend share its server, which runs in the module's event loop
IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

LEVELS = ("WORKER", "STANDARD", "ADVANCED", "SUPER")
RELATIONS = ("owner", "same_group", "other_group", "no_group")
ACTIONS = ("list", "get", "insert", "modify", "chmod", "delete", "execute")

# -- the expected table ---------------------------------------------------------------------------------
# One row per (kind, action): 16 cells, four per level in the order
#     WORKER        STANDARD      ADVANCED      SUPER
#     o  g  x  n    o  g  x  n    o  g  x  n    o  g  x  n
# o owner, g same group, x other group, n no group.
# Y allowed, N denied, - the API has no such action for this kind (not a test).
#
# Rules the rows apply (XWHEP manual v5.7.5):
#  W  "Worker level ... cannot be used to insert/modify/delete anything (applications, datas,
#     jobs etc.)"; it only downloads a job it manages and its data and writes its result.
#     api.md: "WORKER identities may only use the worker endpoints, GET /users/me,
#     POST /logout and the content of the inputs of a task they hold" -> N everywhere but
#     registering a host and requesting work for its own host.
#  S  "Standard user level ... insert, modify and delete its own applications, datas, ...
#     jobs. A standard user can not insert public applications, but private ones only."
#  A  "Advanced ... can also be used to insert, modify and delete public applications and
#     workers": ADVANCED inserts public apps and manages every host (api.md: list, disable).
#     It is read as its *own* public apps: the access bits give group and others no write,
#     and only SUPER overrides the bits (DESIGN: "SUPER: users and user groups; everything").
#  U  "Super user level ... can also be used to insert, modify and delete users and user
#     groups", and reads and writes every object whatever its bits.
#  Bits: "Access rights ... must be understood as file system ones": 0400/0040/0004 read by
#     owner/group/other, 0200/0020/0002 write, 0100/0010/0001 execute (apps); "The group
#     access rights does not allow users not belonging to the group to access objects of
#     the group." Private 0700, group 0750, public 0755.
#  Rights: "Access rights can only be modified by owner and privileged users" (api.md: owner
#     or SUPER); "There is no way to change applications access rights"; "Job access rights
#     are those of the referred application. There is no way neither to override this rule,
#     nor to change job access rights" -> chmod of an app or a job is refused to everyone,
#     SUPER included (8.2.4: "even xwchmod can't help").
EXPECTED: dict[str, dict[str, str]] = {
    # 0700 app of a STANDARD user in G1: "Only the owner can access private objects."
    "app/private": {
        "list": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "get": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        # insert a new app whose binary is the relation's data (0750, in G1): inserting an app
        # needs reading its binary (else one could republish data one may not read).
        "insert": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        # add a binary: POST /apps with the app's name (needs write; others get a 409, "the
        # name is taken", and the app is untouched)
        "modify": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        # submit a job to it (execute bit)
        "execute": "N N N N | Y N N N | Y N N N | Y Y Y Y",
    },
    # 0750 app of an ADVANCED user in G1 ("This is the minimal level to insert group and public
    # applications"): read and executed by G1's members, written by its owner only.
    "app/group": {
        "list": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        "get": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        "insert": "- - - - | - - - - | - - - - | - - - -",  # the same action as app/private's
        "modify": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "execute": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
    },
    # 0755 app of an ADVANCED user in G1: read and executed by all, written by its owner only.
    "app/public": {
        "list": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",
        "get": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",
        "insert": "- - - - | - - - - | - - - - | - - - -",  # the same action as app/private's
        "modify": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "execute": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",
    },
    # 0750 data of a STANDARD user in G1.
    "data": {
        "list": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        "get": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",  # the object and its content
        "insert": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",  # a new data, public by default
        "modify": "- - - - | - - - - | - - - - | - - - -",  # content is immutable (sha256)
        "chmod": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        # use it as a job's stdin (on the public app): a job may only refer to data its
        # submitter may read, else a job would be a way to read any data
        "execute": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
    },
    # 0700 job: the owner's job on its own private app.
    "job/private": {
        "list": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "get": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "insert": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",  # submit a new job to the public app
        "modify": "- - - - | - - - - | - - - - | - - - -",  # no call changes a job
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "execute": "- - - - | - - - - | - - - - | - - - -",  # workers run jobs: see test_scheduling_rights
    },
    # 0750 job: the owner's job on a group app of G1 ("any job referring a group application is
    # a group job").
    "job/group": {
        "list": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        "get": "N N N N | Y Y N N | Y Y N N | Y Y Y Y",
        "insert": "- - - - | - - - - | - - - - | - - - -",  # the same action as job/private's
        "modify": "- - - - | - - - - | - - - - | - - - -",
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "execute": "- - - - | - - - - | - - - - | - - - -",
    },
    # 0755 job: the owner's job on the public app.
    "job/public": {
        "list": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",
        "get": "N N N N | Y Y Y Y | Y Y Y Y | Y Y Y Y",
        "insert": "- - - - | - - - - | - - - - | - - - -",  # the same action as job/private's
        "modify": "- - - - | - - - - | - - - - | - - - -",
        "chmod": "N N N N | N N N N | N N N N | N N N N",
        "delete": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "execute": "- - - - | - - - - | - - - - | - - - -",
    },
    # 0750 host registered by a STANDARD identity in G1 (a private worker).
    "host": {
        # ADVANCED manages workers (lists them all); GET /hosts is not a worker endpoint
        "list": "N N N N | Y Y N N | Y Y Y Y | Y Y Y Y",
        "get": "N N N N | Y Y N N | Y Y Y Y | Y Y Y Y",  # GET /objects/{uid}
        # register a new host: any identity may run a worker (WORKER: public or group
        # worker; STANDARD and above: a private worker)
        "insert": "Y Y Y Y | Y Y Y Y | Y Y Y Y | Y Y Y Y",
        # disable it: ADVANCED and above manage workers (api.md POST /hosts/{uid}/disable)
        "modify": "N N N N | N N N N | Y Y Y Y | Y Y Y Y",
        "chmod": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "delete": "- - - - | - - - - | - - - - | - - - -",  # no host removal: disabling withdraws one
        # request work as that host: only the identity that registered it. The manual is
        # silent; a host is its identity's (as a BOINC host is its account's): acting as
        # another's host would run jobs under that host's name and rights, so not even SUPER.
        "execute": "Y N N N | Y N N N | Y N N N | Y N N N",
    },
    # users: "Super user level ... insert, modify and delete users"; xwusers lists all users
    # for an administrator, "otherwise one gets its own user informations only".
    "user": {
        # a WORKER sees itself through GET /users/me only
        "list": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "get": "N N N N | Y N N N | Y N N N | Y Y Y Y",
        "insert": "N N N N | N N N N | N N N N | Y Y Y Y",  # POST /users (a STANDARD user in G1)
        "modify": "N N N N | N N N N | N N N N | Y Y Y Y",  # PATCH /users/{uid} (its email)
        "chmod": "N N N N | N N N N | N N N N | N N N N",  # a user carries no access rights
        # SUPER removes users but not itself (a deployment must keep an administrator)
        "delete": "N N N N | N N N N | N N N N | N Y Y Y",
        "execute": "- - - - | - - - - | - - - - | - - - -",
    },
    # user groups: SUPER only manages them; a member sees its own group (xwusergroups).
    "group": {
        "list": "N N N N | N Y N N | N Y N N | Y Y Y Y",
        "get": "N N N N | N Y N N | N Y N N | Y Y Y Y",
        "insert": "N N N N | N N N N | N N N N | Y Y Y Y",  # POST /usergroups
        "modify": "- - - - | - - - - | - - - - | - - - -",  # a group is its label: no call changes it
        "chmod": "N N N N | N N N N | N N N N | N N N N",  # a user group carries no access rights
        # same group: G1 has members, so even SUPER gets a 409 (api.md)
        "delete": "N N N N | N N N N | N N N N | Y N Y Y",
        "execute": "- - - - | - - - - | - - - - | - - - -",
    },
}

#: cells where the server does not (yet) do what the table says: (kind, action, level,
#: relation) -> the bug, precisely; "*" matches any level or relation
KNOWN_BUGS: dict[tuple[str, str, str, str], str] = {}


def _cells(row: str) -> list[str]:
    cells = row.replace("|", " ").split()
    assert len(cells) == 16 and set(cells) <= {"Y", "N", "-"}, row
    return cells


def _known_bug(kind: str, action: str, level: str, relation: str) -> str | None:
    for (k, a, lv, rel), reason in KNOWN_BUGS.items():
        if k == kind and a == action and lv in ("*", level) and rel in ("*", relation):
            return reason
    return None


#: the actions whose cells run on every database, in the domain tier (see the module's docstring)
DATABASE_ACTIONS = ("list", "delete")
#: the kind whose ``list`` cells also run over HTTP on PostgreSQL and MariaDB: group bits and
#: membership, the WORKER at the door, SUPER over the bits
SMOKE_KIND = "job/group"


def _matrix(actions: tuple[str, ...] = ACTIONS, kinds: tuple[str, ...] | None = None) -> list[Any]:
    params = []
    for kind, rows in EXPECTED.items():
        if kinds is not None and kind not in kinds:
            continue
        for action in actions:
            for i, cell in enumerate(_cells(rows[action])):
                if cell == "-":
                    continue
                level, relation = LEVELS[i // 4], RELATIONS[i % 4]
                bug = _known_bug(kind, action, level, relation)
                marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
                params.append(
                    pytest.param(
                        kind,
                        action,
                        level,
                        relation,
                        cell == "Y",
                        id=f"{kind}-{action}-{level}-{relation}",
                        marks=marks,
                    )
                )
    return params


CELL = ("kind", "action", "level", "relation", "allowed")

# -- the world ------------------------------------------------------------------------------------------------
#: windows binaries only: no test host (linux) ever claims a job of the matrix
PLATFORM = ("windows", "x86_64")
#: kinds whose owner-relation objects are made before the owner takes its level
POOLED = ("app/private", "app/group", "app/public", "data", "job/private", "job/group", "job/public", "group")


@dataclass
class Account:
    login: str
    password: str
    uid: str
    token: str
    group: str | None  # group uid


@dataclass
class Target:
    uid: str
    name: str = ""  # an app's name, a job's label, a user's login, a group's label


@dataclass
class World:
    xw: XW
    g1: str = ""
    g2: str = ""
    owner: Account | None = None
    advowner: Account | None = None
    #: (level, relation) -> the actor, relation other than "owner"
    actors: dict[tuple[str, str], Account] = field(default_factory=dict)
    #: level -> the owner-relation actor (in G1)
    own: dict[str, Account] = field(default_factory=dict)
    #: (level, kind, slot) -> an object of own[level]: slot "read" for the read-only
    #: actions, else the changing action it is made for
    pool: dict[tuple[str, str, str], Target] = field(default_factory=dict)
    #: data an app's binary may be (public, the admin's)
    binary: str = ""
    public_app: str = ""  # advowner's app, for public jobs and job inputs
    group_app: str = ""  # advowner's 0750 app, for group jobs
    owner_private_app: str = ""  # owner's app, for its private jobs
    owner_data: str = ""  # owner's 0750 data (the binary of app inserts)
    own_data: dict[str, str] = field(default_factory=dict)  # the same, of own[level]
    #: level -> an account whose own user record the owner-relation user-delete cell removes
    selves: dict[str, Account] = field(default_factory=dict)
    #: (level, relation, "delete") -> a user that cell removes; ("*", relation, "change") -> a
    #: user the modify and chmod cells of that relation change
    user_targets: dict[tuple[str, str, str], Target] = field(default_factory=dict)
    #: targets shared by read-only cells, see _target
    shared: dict[tuple[str, str, str], Target] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    @property
    def admin(self) -> str:
        return self.xw.admin

    # -- users and groups, through the API -------------------------------------------------------------
    async def group(self, label: str, token: str | None = None) -> str:
        body = await self.xw.ok(
            "POST", "/usergroups", token=token or self.admin, json={"label": label}, expect=201
        )
        return str(body["uid"])

    async def user(self, prefix: str, level: str, group: str | None, *, log_in: bool = True) -> Account:
        login, password = self.name(prefix), "pw-" + secrets.token_hex(8)
        body = await self.xw.ok(
            "POST",
            "/users",
            token=self.admin,
            json={
                "login": login,
                "password": password,
                "email": f"{login}@example.org",
                "rights": level,
                "group": group,
            },
            expect=201,
        )
        assert body["rights"] == level and body["group_uid"] == group, body
        token = await self.xw.login(login, password) if log_in else ""
        return Account(login, password, str(body["uid"]), token, group)

    async def set_level(self, account: Account, level: str) -> None:
        """SUPER changes the account's level; its tokens are revoked, so it logs in again."""
        body = await self.xw.ok("PATCH", f"/users/{account.uid}", token=self.admin, json={"rights": level})
        assert body["rights"] == level, body
        account.token = await self.xw.login(account.login, account.password)

    # -- objects -----------------------------------------------------------------------------------------
    async def data(self, token: str, rights: str = "0750") -> str:
        content = f"data {secrets.token_hex(8)}\n".encode()
        d = await self.xw.upload(token, content, name=self.name("data"), access_rights=rights)
        assert d["access_rights"] == rights, d
        return str(d["uid"])

    async def app(self, token: str, rights: str, *, ask: str | None = None) -> Target:
        """A new app whose binary is the shared public one; ``ask``: the rights an ADVANCED or
        SUPER user asks for (POST /apps ``access_rights``)."""
        name = self.name("app")
        body: dict[str, Any] = {"name": name, "binaries": [_binary(PLATFORM, self.binary)]}
        if ask is not None:
            body["access_rights"] = ask
        a = await self.xw.ok("POST", "/apps", token=token, json=body)
        assert a["access_rights"] == rights, (
            f"app inserted with {a['access_rights']}, the world wants {rights}"
        )
        return Target(str(a["uid"]), name)

    async def job(self, token: str, app: str, rights: str) -> Target:
        label = self.name("job")
        j = await self.xw.submit(token, app, label=label)
        assert j["access_rights"] == rights and j["status"] == "PENDING", j
        return Target(str(j["uid"]), label)

    async def host(self, token: str) -> Target:
        name = self.name("host")
        uid = await self.xw.register(token, name=name)
        await self.xw.ok("POST", f"/objects/{uid}/chmod", token=self.admin, json={"rights": "0750"})
        return Target(uid, name)

    async def snapshot(self, uid: str) -> Reply:
        """The object as SUPER sees it (404 once it is gone)."""
        return await self.xw.call("GET", f"/objects/{uid}", token=self.admin)


#: actions that leave their object as it was (when allowed too): their cells may share one
READ_ONLY = ("list", "get", "execute")
#: actions that change or remove their object: a fresh one per cell
CHANGING = ("modify", "chmod", "delete")


#: the (kind, action) pairs the table tests
TESTED = {
    (kind, action)
    for kind, rows in EXPECTED.items()
    for action in ACTIONS
    if set(_cells(rows[action])) != {"-"}
}


def _slots(kind: str) -> list[str]:
    """The objects a kind's owner-relation cells need: one shared by the read-only actions,
    one per changing action."""
    slots = ["read"] if any((kind, a) in TESTED for a in READ_ONLY) else []
    return slots + [a for a in CHANGING if (kind, a) in TESTED]


async def build_world(xw: XW) -> World:
    w = World(xw)
    w.g1, w.g2 = await w.group("G1"), await w.group("G2")
    groups = {"same_group": w.g1, "other_group": w.g2, "no_group": None}
    # users are made concurrently: each costs a slow password hash (two with the login)
    w.owner, w.advowner, *actors = await asyncio.gather(
        w.user("owner", "STANDARD", w.g1),
        w.user("advowner", "ADVANCED", w.g1),
        *(w.user(f"{lv.lower()}-{rel}", lv, g) for lv, (rel, g) in itertools.product(LEVELS, groups.items())),
    )
    w.actors = dict(zip(itertools.product(LEVELS, groups), actors, strict=True))
    # a user removed by a cell is that cell's own; one changed (its email, a unique value each
    # time) or chmod-ed (users have no rights: nothing to change) is shared by the relation's cells
    w.selves = dict(
        zip(LEVELS, await asyncio.gather(*(w.user("self", lv, w.g1) for lv in LEVELS)), strict=True)
    )
    keys = [(lv, rel, "delete") for lv, rel in itertools.product(LEVELS, RELATIONS[1:])]
    keys += [("*", rel, "change") for rel in RELATIONS[1:]]
    made = await asyncio.gather(*(w.user("target", "STANDARD", w.g1, log_in=False) for _ in keys))
    w.user_targets = {k: Target(t.uid, t.login) for k, t in zip(keys, made, strict=True)}

    w.binary = await w.data(w.admin, "0755")
    w.public_app = (await w.app(w.advowner.token, "0755")).uid
    w.group_app = (await w.app(w.advowner.token, "0750", ask="0750")).uid
    w.owner_private_app = (await w.app(w.owner.token, "0700")).uid
    w.owner_data = await w.data(w.owner.token)
    await asyncio.gather(*(_build_owner(w, level) for level in LEVELS))
    return w


async def _build_owner(w: World, level: str) -> None:
    """own[level], in G1, owning the objects of its owner-relation cells: each made while the
    account had a level that could make it (SUPER: user groups; ADVANCED: public and group
    apps; STANDARD: the rest), then the account is set to ``level``."""
    me = await w.user(f"own-{level.lower()}", "SUPER", w.g1)
    w.own[level] = me
    for slot in _slots("group"):
        label = w.name("group")
        w.pool[level, "group", slot] = Target(await w.group(label, me.token), label)
    await w.set_level(me, "ADVANCED")
    for slot in _slots("app/public"):
        w.pool[level, "app/public", slot] = await w.app(me.token, "0755")
    for slot in _slots("app/group"):
        w.pool[level, "app/group", slot] = await w.app(me.token, "0750", ask="0750")
    await w.set_level(me, "STANDARD")
    private_app = (await w.app(me.token, "0700")).uid
    w.own_data[level] = await w.data(me.token)
    for slot in _slots("app/private"):
        w.pool[level, "app/private", slot] = await w.app(me.token, "0700")
    for slot in _slots("data"):
        w.pool[level, "data", slot] = Target(await w.data(me.token))
    for kind, app, rights in (
        ("job/private", private_app, "0700"),
        ("job/group", w.group_app, "0750"),
        ("job/public", w.public_app, "0755"),
    ):
        for slot in _slots(kind):
            w.pool[level, kind, slot] = await w.job(me.token, app, rights)
    if level != "STANDARD":
        await w.set_level(me, level)


def _world_on(backend: str) -> Any:
    """A module-scoped fixture: a server on ``backend`` and its world, shared by the backend's cells."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def world(
        tmp_path_factory: pytest.TempPathFactory, db_templates: Templates
    ) -> AsyncIterator[World]:
        folder: Path = tmp_path_factory.mktemp(f"matrix-{backend}")
        async with running_server(folder, backend, {}, db_templates) as xw:
            yield await build_world(xw)

    return world


world_sqlite = _world_on("sqlite")
world_postgresql = _world_on("postgresql")
world_mariadb = _world_on("mariadb")


# -- the cell -------------------------------------------------------------------------------------------------
@dataclass
class Seen:
    """One call of an action and whether its effect is visible (to SUPER) afterwards."""

    what: str
    reply: Reply
    effect: bool
    #: a list may deny by leaving the object out (a 200 without it)
    hidden_ok: bool = False


@dataclass
class Cell:
    world: World
    kind: str
    action: str
    level: str
    relation: str
    actor: Account
    target: Target | None = None

    @property
    def xw(self) -> XW:
        return self.world.xw

    @property
    def token(self) -> str:
        return self.actor.token

    async def call(self, method: str, path: str, **kw: Any) -> Reply:
        return await self.xw.call(method, path, token=self.token, **kw)

    @property
    def uid(self) -> str:
        assert self.target is not None
        return self.target.uid


def _actor(w: World, kind: str, action: str, level: str, relation: str) -> Account:
    if relation != "owner":
        return w.actors[level, relation]
    if kind == "user" and action == "delete":
        # its own user record, removed: an account of its own, so no other cell loses its actor
        return w.selves[level]
    return w.own[level]


async def _target(w: World, cell: Cell) -> Target | None:
    """The object a cell acts on: shared by the read-only cells of a kind and relation (owner or
    not), fresh for a changing one."""
    if cell.action == "insert":
        return None
    if cell.action not in READ_ONLY:
        return await _make_target(w, cell)
    # the owner's object is the actor's own; the others' is one object, but for user groups,
    # where G1 (the same group) is not the other relations' group
    if cell.relation == "owner":
        key = (cell.kind, cell.level, "owner")
    else:
        key = (cell.kind, "-", cell.relation if cell.kind == "group" else "others")
    if key not in w.shared:
        w.shared[key] = await _make_target(w, cell)
    return w.shared[key]


async def _make_target(w: World, cell: Cell) -> Target:
    kind, action, level, relation = cell.kind, cell.action, cell.level, cell.relation
    assert w.owner is not None and w.advowner is not None
    slot = "read" if action in READ_ONLY else action
    if relation == "owner":
        if kind in POOLED:
            return w.pool[level, kind, slot]
        if kind == "host":
            return await w.host(cell.token)
        assert kind == "user"
        return Target(cell.actor.uid, cell.actor.login)
    if kind == "app/private":
        return await w.app(w.owner.token, "0700")
    if kind == "app/public":
        return await w.app(w.advowner.token, "0755")
    if kind == "app/group":
        return await w.app(w.advowner.token, "0750", ask="0750")
    if kind == "data":
        return Target(await w.data(w.owner.token))
    if kind == "job/private":
        return await w.job(w.owner.token, w.owner_private_app, "0700")
    if kind == "job/public":
        return await w.job(w.owner.token, w.public_app, "0755")
    if kind == "job/group":
        return await w.job(w.owner.token, w.group_app, "0750")
    if kind == "host":
        return await w.host(w.owner.token)
    if kind == "user":
        if action == "delete":
            return w.user_targets[level, relation, "delete"]
        if action in CHANGING:
            return w.user_targets["*", relation, "change"]
        return Target(w.owner.uid, w.owner.login)
    assert kind == "group"
    if relation == "same_group":
        return Target(w.g1, "G1")
    label = w.name("group")
    return Target(await w.group(label), label)


# -- the actions, one probe per (kind, action) -------------------------------------------------------------
Probe = Callable[[Cell], Awaitable[list[Seen]]]
PROBES: dict[tuple[str, str], Probe] = {}

LIST_PATHS = {
    "app": ("/apps", "apps"),
    "data": ("/data", "data"),
    "job": ("/jobs", "jobs"),
    "host": ("/hosts", "hosts"),
    "user": ("/users", "users"),
    "group": ("/usergroups", "usergroups"),
}
GET_PATHS = {"app": "/apps", "data": "/data", "job": "/jobs", "user": "/users", "group": "/usergroups"}
OBJECT_KINDS = {
    "app": "app",
    "data": "data",
    "job": "job",
    "host": "host",
    "user": "user",
    "group": "usergroup",
}


def base(kind: str) -> str:
    return kind.split("/")[0]


def probe(*keys: tuple[str, str]) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        for key in keys:
            PROBES[key] = fn
        return fn

    return register


def _uids(reply: Reply, key: str) -> set[str]:
    if reply.status != 200 or not isinstance(reply.body, dict):
        return set()
    return {o.get("uid") for o in reply.body.get(key, [])}


@probe(*((k, "list") for k in EXPECTED))
async def _list(c: Cell) -> list[Seen]:
    path, key = LIST_PATHS[base(c.kind)]
    params = {"label": c.target.name, "limit": 5000} if base(c.kind) == "job" and c.target else None
    r = await c.call("GET", path, params=params)
    return [Seen(f"GET {path}", r, c.uid in _uids(r, key), hidden_ok=True)]


@probe(*((k, "get") for k in EXPECTED))
async def _get(c: Cell) -> list[Seen]:
    seen = []
    kind = base(c.kind)
    if kind in GET_PATHS:
        r = await c.call("GET", f"{GET_PATHS[kind]}/{c.uid}")
        seen.append(Seen(f"GET {GET_PATHS[kind]}/{{uid}}", r, _is(r, c.uid)))
    r = await c.call("GET", f"/objects/{c.uid}")
    got = r.status == 200 and isinstance(r.body, dict) and r.body.get("kind") == OBJECT_KINDS[kind]
    seen.append(Seen("GET /objects/{uid}", r, got and _is(Reply(200, r.body["object"]), c.uid)))
    if kind == "data":
        r = await c.call("GET", f"/data/{c.uid}/content")
        expected = await c.xw.call("GET", f"/data/{c.uid}/content", token=c.world.admin)
        seen.append(Seen("GET /data/{uid}/content", r, r.status == 200 and r.body == expected.body))
    return seen


def _is(r: Reply, uid: str) -> bool:
    return r.status == 200 and isinstance(r.body, dict) and r.body.get("uid") == uid


async def _exists(c: Cell, path: str) -> Reply | None:
    r = await c.xw.call("GET", path, token=c.world.admin)
    return r if r.status == 200 else None


@probe(("app/private", "insert"))
async def _insert_app(c: Cell) -> list[Seen]:
    w = c.world
    binary = w.own_data[c.level] if c.relation == "owner" else w.owner_data
    name = w.name("new-app")
    r = await c.call("POST", "/apps", json={"name": name, "binaries": [_binary(PLATFORM, binary)]})
    made = await _exists(c, f"/apps/{name}")
    if made is not None:
        public = c.level in ("ADVANCED", "SUPER")
        assert made.body["access_rights"] == ("0755" if public else "0700"), (
            f"an app inserted by {c.level} must be {'public' if public else 'private'}: {made.body}"
        )
    return [Seen("POST /apps", r, made is not None)]


def _binary(platform: tuple[str, str], data_uid: str) -> dict[str, str]:
    return {"os": platform[0], "cpu": platform[1], "data_uid": data_uid}


@probe(("data", "insert"))
async def _insert_data(c: Cell) -> list[Seen]:
    content = f"new data {secrets.token_hex(8)}\n".encode()
    name = c.world.name("new-data")
    params = {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    r = await c.call("POST", "/data", data=content, params=params)
    made = await _exists(c, f"/data/{r.body['uid']}") if r.status in (200, 201) else None
    if made is not None:
        assert made.body["access_rights"] == "0755", f"data is public by default: {made.body}"
    listed = await c.xw.ok("GET", "/data", token=c.world.admin)
    return [Seen("POST /data", r, made is not None or any(d["name"] == name for d in listed["data"]))]


@probe(("job/private", "insert"))
async def _insert_job(c: Cell) -> list[Seen]:
    label = c.world.name("new-job")
    r = await c.call("POST", "/jobs", json={"app": c.world.public_app, "label": label})
    return [Seen("POST /jobs", r, bool(await _jobs_labelled(c, label)))]


async def _jobs_labelled(c: Cell, label: str) -> list[dict[str, Any]]:
    body = await c.xw.ok("GET", "/jobs", token=c.world.admin, params={"label": label})
    return list(body["jobs"])


@probe(("host", "insert"))
async def _insert_host(c: Cell) -> list[Seen]:
    body = {
        "name": c.world.name("new-host"),
        "os": "linux",
        "cpu": "x86_64",
        "cores": 1,
        "memory_bytes": 1 << 30,
        "disk_free_bytes": 1 << 30,
        "tags": [],
        "version": "test",
    }
    r = await c.call("POST", "/work/register", json=body)
    made = None
    if r.status == 200 and isinstance(r.body, dict) and "host_uid" in r.body:
        made = await _exists(c, f"/objects/{r.body['host_uid']}")
        if made is not None:
            assert made.body["object"]["owner_uid"] == c.actor.uid, made.body
    return [Seen("POST /work/register", r, made is not None)]


@probe(("user", "insert"))
async def _insert_user(c: Cell) -> list[Seen]:
    login = c.world.name("new-user")
    r = await c.call(
        "POST",
        "/users",
        json={
            "login": login,
            "password": "pw-" + secrets.token_hex(8),
            "email": f"{login}@example.org",
            "rights": "STANDARD",
            "group": c.world.g1,
        },
    )
    return [Seen("POST /users", r, await _exists(c, f"/users/{login}") is not None)]


@probe(("group", "insert"))
async def _insert_group(c: Cell) -> list[Seen]:
    label = c.world.name("new-group")
    r = await c.call("POST", "/usergroups", json={"label": label})
    return [Seen("POST /usergroups", r, await _exists(c, f"/usergroups/{label}") is not None)]


#: the platform a modify adds to an app
ADDED = ("darwin", "aarch64")


@probe(("app/private", "modify"), ("app/group", "modify"), ("app/public", "modify"))
async def _modify_app(c: Cell) -> list[Seen]:
    assert c.target is not None
    binary = _binary(ADDED, c.world.binary)
    r = await c.call("POST", "/apps", json={"name": c.target.name, "binaries": [binary]})
    after = await c.world.snapshot(c.uid)
    platforms = {(b["os"], b["cpu"]) for b in after.body["object"]["binaries"]}
    return [Seen("POST /apps (the app's name, a new binary)", r, ADDED in platforms)]


@probe(("host", "modify"))
async def _modify_host(c: Cell) -> list[Seen]:
    r = await c.call("POST", f"/hosts/{c.uid}/disable")
    after = await c.world.snapshot(c.uid)
    return [Seen("POST /hosts/{uid}/disable", r, after.body["object"]["enabled"] is False)]


@probe(("user", "modify"))
async def _modify_user(c: Cell) -> list[Seen]:
    email = c.world.name("changed") + "@example.org"
    r = await c.call("PATCH", f"/users/{c.uid}", json={"email": email})
    after = await c.world.snapshot(c.uid)
    return [Seen("PATCH /users/{uid}", r, after.body["object"]["email"] == email)]


@probe(*((k, "chmod") for k in EXPECTED))
async def _chmod(c: Cell) -> list[Seen]:
    before = await c.world.snapshot(c.uid)
    current = before.body["object"].get("access_rights")
    wanted = "0700" if current == "0755" else "0755"
    r = await c.call("POST", f"/objects/{c.uid}/chmod", json={"rights": wanted})
    after = await c.world.snapshot(c.uid)
    return [
        Seen(f"POST /objects/{{uid}}/chmod {wanted}", r, after.body["object"].get("access_rights") == wanted)
    ]


@probe(*((k, "delete") for k in EXPECTED if k != "host"))
async def _delete(c: Cell) -> list[Seen]:
    path = GET_PATHS[base(c.kind)]
    r = await c.call("DELETE", f"{path}/{c.uid}")
    return [Seen(f"DELETE {path}/{{uid}}", r, (await c.world.snapshot(c.uid)).status == 404)]


@probe(("app/private", "execute"), ("app/group", "execute"), ("app/public", "execute"))
async def _execute_app(c: Cell) -> list[Seen]:
    label = c.world.name("exec")
    r = await c.call("POST", "/jobs", json={"app": c.uid, "label": label})
    made = await _jobs_labelled(c, label)
    if made:
        app = (await c.world.snapshot(c.uid)).body["object"]
        assert made[0]["app_uid"] == c.uid and made[0]["access_rights"] == app["access_rights"], (
            f"a job's rights are its app's: job {made[0]}, app {app}"
        )
    return [Seen("POST /jobs {app}", r, bool(made))]


@probe(("data", "execute"))
async def _execute_data(c: Cell) -> list[Seen]:
    label = c.world.name("input")
    r = await c.call("POST", "/jobs", json={"app": c.world.public_app, "stdin_uid": c.uid, "label": label})
    made = await _jobs_labelled(c, label)
    return [Seen("POST /jobs {stdin_uid}", r, bool(made) and made[0]["stdin_uid"] == c.uid)]


@probe(("host", "execute"))
async def _execute_host(c: Cell) -> list[Seen]:
    r = await c.call("POST", "/work/request", json={"host_uid": c.uid, "capacity": 1, "wait_s": 0})
    got = r.status == 200 and isinstance(r.body, dict) and isinstance(r.body.get("assignments"), list)
    return [Seen("POST /work/request {host_uid}", r, got)]


# -- the test ----------------------------------------------------------------------------------------------------
DENIED = (403, 404, 409)


def _denied(seen: Seen) -> bool:
    r = seen.reply
    if seen.effect:
        return False
    if seen.hidden_ok and r.status == 200:
        return True
    return r.status in DENIED and isinstance(r.body, dict) and {"error", "message"} <= set(r.body)


def _allowed(seen: Seen) -> bool:
    return 200 <= seen.reply.status < 300 and seen.effect


#: where the status of a refusal tells whether the caller may read the object (api.md, "Access
#: rights": "404 if the caller may not read the object; 403 unless the caller owns it"; removal
#: "404 if not readable, 403 if readable only"): objects governed by their access bits, for the
#: actions that name them by UID. An object one may not read is answered as if it did not exist.
REFUSAL_SHOWS_READABILITY = {
    ("app/private", "chmod"),
    ("app/private", "delete"),
    ("app/private", "execute"),
    ("app/group", "chmod"),
    ("app/group", "delete"),
    ("app/group", "execute"),
    ("app/public", "chmod"),
    ("app/public", "delete"),
    ("data", "chmod"),
    ("data", "delete"),
    ("data", "execute"),
    ("job/private", "chmod"),
    ("job/private", "delete"),
    ("job/group", "chmod"),
    ("job/group", "delete"),
    ("job/public", "chmod"),
    ("job/public", "delete"),
    ("host", "chmod"),
}


def _refusal_statuses(kind: str, action: str, level: str, relation: str) -> tuple[int, ...]:
    """The statuses a refusal of this cell may have: 404 when the table says the actor may not
    read (get) the object, 403 or 409 when it may; WORKER identities are refused at the door (403)."""
    if level == "WORKER" or (kind, action) not in REFUSAL_SHOWS_READABILITY:
        return DENIED
    readable = _cells(EXPECTED[kind]["get"])[LEVELS.index(level) * 4 + RELATIONS.index(relation)] == "Y"
    return (403, 409) if readable else (404,)


@IN_MODULE_LOOP
@pytest.mark.parametrize(CELL, _matrix())
async def test_access_sqlite(
    world_sqlite: World, kind: str, action: str, level: str, relation: str, allowed: bool
) -> None:
    await check_cell(world_sqlite, kind, action, level, relation, allowed)


@IN_MODULE_LOOP
@pytest.mark.postgres
@pytest.mark.parametrize(CELL, _matrix(("list",), (SMOKE_KIND,)))
async def test_access_postgresql(
    world_postgresql: World, kind: str, action: str, level: str, relation: str, allowed: bool
) -> None:
    await check_cell(world_postgresql, kind, action, level, relation, allowed)


@IN_MODULE_LOOP
@pytest.mark.mariadb
@pytest.mark.parametrize(CELL, _matrix(("list",), (SMOKE_KIND,)))
async def test_access_mariadb(
    world_mariadb: World, kind: str, action: str, level: str, relation: str, allowed: bool
) -> None:
    await check_cell(world_mariadb, kind, action, level, relation, allowed)


async def check_cell(world: World, kind: str, action: str, level: str, relation: str, allowed: bool) -> None:
    """Perform one cell's action as its actor on its object; assert the answer and the effect."""
    actor = _actor(world, kind, action, level, relation)
    cell = Cell(world, kind, action, level, relation, actor)
    cell.target = await _target(world, cell)
    before = await world.snapshot(cell.uid) if cell.target and not allowed else None
    records = world.xw.log.records
    logged_before = len(records)

    seen = await PROBES[kind, action](cell)

    case = f"{level} ({relation.replace('_', ' ')}) {action} {kind}"
    report = "; ".join(f"{s.what} -> {s.reply.status} {s.reply.body!r:.200} effect={s.effect}" for s in seen)
    if allowed:
        assert all(_allowed(s) for s in seen), f"{case}: expected allowed, got {report}"
    else:
        assert all(_denied(s) for s in seen), f"{case}: expected denied, got {report}"
        statuses = _refusal_statuses(kind, action, level, relation)
        refusals = [s for s in seen if not (s.hidden_ok and s.reply.status == 200)]
        assert all(s.reply.status in statuses for s in refusals), (
            f"{case}: refused, but not with {statuses}: {report}"
        )
        if before is not None:
            after = await world.snapshot(cell.uid)
            assert (after.status, after.body) == (before.status, before.body), (
                f"{case}: denied ({report}) but the object changed:\n before {before.body}\n after  {after.body}"
            )
    problems = [
        world.xw.log.format(r) for r in records[logged_before:] if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert not problems, f"{case}: the server logged errors:\n" + "\n".join(problems)


def test_the_table_covers_every_combination() -> None:
    """Every kind × action × level × relation has a cell: a test or a '-' the comments explain."""
    kinds = {"app", "data", "job", "host", "user", "group"}
    assert {base(k) for k in EXPECTED} == kinds
    for kind, rows in EXPECTED.items():
        assert tuple(rows) == ACTIONS, kind
        for action, row in rows.items():
            assert len(_cells(row)) == len(LEVELS) * len(RELATIONS), (kind, action)
            assert set(_cells(row)) == {"-"} or (kind, action) in PROBES, (kind, action)
