"""Users and user groups on every database, through the server's functions: who sees whom,
unique logins and labels, members, and what removing a user leaves. Each test mirrors one of
tests/unit/test_server_users.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from helpers import domain as d

from xwcommon.errors import AuthenticationError, BadRequest, Conflict, NotFound
from xwserver import data, groups, hosts, users
from xwserver.state import Server

USER_KEYS = {"uid", "uri", "login", "rights", "group_uid", "email"}
GROUP_KEYS = {"uid", "uri", "label", "created_at", "members"}


async def create(
    srv: Server, login: str, rights: str = "STANDARD", group: str | None = None, email: str = ""
) -> tuple[dict[str, Any], str]:
    """A user made as ``POST /users`` makes one; returns it and its password."""
    password = "pw-" + secrets.token_hex(8)
    body = {"login": login, "password": password, "email": email, "rights": rights, "group": group}
    return await users.add(srv, await d.admin(srv), body), password


async def logins(srv: Server, login: str) -> list[str]:
    """The logins ``GET /users`` lists to ``login``."""
    return [u["login"] for u in await users.list_users(srv, await d.caller(srv, login))]


async def test_a_super_creates_a_user_who_logs_in_and_sees_only_itself(domain: Server) -> None:
    """Mirrors test_a_super_creates_a_user_who_logs_in_and_sees_only_itself."""
    srv = domain
    admin = await d.admin(srv)
    user, password = await create(srv, "alice", "STANDARD_USER", email="alice@example.org")
    assert set(user) == USER_KEYS
    assert user["rights"] == "STANDARD" and user["group_uid"] is None and user["email"] == "alice@example.org"
    assert user["uri"] == f"xw://{srv.settings.netloc}/{user['uid']}"
    alice = await users.resolve_token(srv, await d.login(srv, "alice", password))
    assert alice.uid == user["uid"]
    assert await users.me(srv, alice) == user
    assert await logins(srv, "alice") == ["alice"]
    assert set(await logins(srv, "admin")) >= {"admin", "alice"}
    for key in ("alice", user["uid"], user["uri"]):
        assert await users.get(srv, alice, key) == user
        assert await users.get(srv, admin, key) == user
    bob = await d.add_user(srv, "bob")
    with pytest.raises(NotFound):
        await users.get(srv, bob, "alice")
    with pytest.raises(NotFound):
        await users.get(srv, admin, "nobody")


async def test_logins_are_unique_and_every_field_is_checked(domain: Server) -> None:
    """Mirrors test_logins_are_unique_and_every_field_is_checked."""
    srv = domain
    admin = await d.admin(srv)
    await create(srv, "alice")
    with pytest.raises(Conflict, match="alice.*taken"):
        await users.add(srv, admin, {"login": "alice", "password": "x", "rights": "ADVANCED"})
    good = {"login": "carol", "password": "secret", "email": "", "rights": "STANDARD", "group": None}
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"login": "me"}, BadRequest, "reserved"),
        ({"login": ""}, BadRequest, "login"),
        ({"login": "a b"}, BadRequest, "login"),
        ({"login": "x" * 129}, BadRequest, "login"),
        ({"login": 12}, BadRequest, "login"),
        ({"password": ""}, BadRequest, "password"),
        ({"password": "p" * 1025}, BadRequest, "password"),
        ({"rights": "KING"}, BadRequest, "rights"),
        ({"rights": None}, BadRequest, "rights"),
        ({"email": "not an address"}, BadRequest, "email"),
        ({"group": "no-such-group"}, NotFound, "group"),
        ({"colour": "blue"}, BadRequest, "colour"),
    ]
    for change, error, word in cases:
        with pytest.raises(error, match=word):
            await users.add(srv, admin, {**good, **change})
    assert "carol" not in await logins(srv, "admin")
    for rights, shown in [("worker", "WORKER"), ("ADVANCED_USER", "ADVANCED"), ("SUPER", "SUPER")]:
        user, _ = await create(srv, f"u-{rights.lower()}", rights)
        assert user["rights"] == shown


async def test_groups_are_listed_with_their_members_and_a_member_sees_its_own_only(domain: Server) -> None:
    """Mirrors test_groups_are_listed_with_their_members_and_a_member_sees_its_own_only."""
    srv = domain
    admin = await d.admin(srv)
    physics = await groups.create(srv, admin, {"label": "physics"})
    assert set(physics) == GROUP_KEYS and physics["members"] == 0 and physics["label"] == "physics"
    chemistry = await groups.create(srv, admin, {"label": "chemistry"})
    with pytest.raises(Conflict, match="physics"):
        await groups.create(srv, admin, {"label": "physics"})
    alice, password = await create(srv, "alice", group="physics")
    bob, _ = await create(srv, "bob", group=physics["uid"])
    assert alice["group_uid"] == bob["group_uid"] == physics["uid"]
    member = await users.resolve_token(srv, await d.login(srv, "alice", password))
    assert (await users.me(srv, member))["group_uid"] == physics["uid"]
    everything = await groups.list_groups(srv, admin)
    assert {g["label"]: g["members"] for g in everything} == {"physics": 2, "chemistry": 0}
    assert [g["label"] for g in await groups.list_groups(srv, member)] == ["physics"]
    for key in ("physics", physics["uid"], physics["uri"]):
        assert (await groups.get(srv, member, key))["members"] == 2
    with pytest.raises(NotFound):
        await groups.get(srv, member, chemistry["uid"])
    loner = await d.add_user(srv, "loner")
    assert await groups.list_groups(srv, loner) == []


async def test_a_group_with_members_is_not_removed(domain: Server) -> None:
    """Mirrors test_a_group_with_members_is_not_removed."""
    srv = domain
    admin = await d.admin(srv)
    await groups.create(srv, admin, {"label": "physics"})
    await create(srv, "alice", group="physics")
    with pytest.raises(Conflict, match="1 member"):
        await groups.remove(srv, admin, "physics")
    assert (await groups.get(srv, admin, "physics"))["members"] == 1
    moved = await users.modify(srv, admin, "alice", {"group": None})
    assert moved["group_uid"] is None
    await groups.remove(srv, admin, "physics")
    with pytest.raises(NotFound):
        await groups.get(srv, admin, "physics")
    with pytest.raises(NotFound):
        await groups.remove(srv, admin, "physics")


async def test_a_user_owning_objects_is_not_removed_and_the_answer_says_what_it_owns(domain: Server) -> None:
    """Mirrors test_a_user_owning_objects_is_not_removed_and_the_answer_says_what_it_owns: a
    revoked token and a refused login are what the HTTP test sees as 401."""
    srv = domain
    admin = await d.admin(srv)
    _, password = await create(srv, "alice")
    token = await d.login(srv, "alice", password)
    alice = await users.resolve_token(srv, token)
    owned = await d.upload(srv, alice, b"alice's data")
    with pytest.raises(Conflict, match="1 data"):
        await users.remove(srv, admin, "alice")
    assert await users.resolve_token(srv, token) == alice  # nothing happened
    await data.delete(srv, alice, owned.uid)
    await users.remove(srv, admin, "alice")
    with pytest.raises(AuthenticationError):
        await users.resolve_token(srv, token)
    with pytest.raises(AuthenticationError):
        await d.login(srv, "alice", password)
    assert "alice" not in await logins(srv, "admin")
    with pytest.raises(NotFound):
        await users.remove(srv, admin, "alice")


async def test_removing_a_worker_identity_hands_its_running_task_back_and_removes_its_hosts(
    domain: Server,
) -> None:
    """Mirrors test_removing_a_worker_identity_hands_its_running_task_back_and_removes_its_hosts."""
    srv = domain
    admin = await d.admin(srv)
    _, password = await create(srv, "volunteer", "WORKER")
    token = await d.login(srv, "volunteer", password)
    volunteer = await users.resolve_token(srv, token)
    host = await d.register(srv, volunteer, name="volunteer-pc")
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    [assignment] = await d.request_work(srv, host, who=volunteer)
    assert (await d.job(srv, job["uid"]))["status"] == "RUNNING"
    await users.remove(srv, admin, "volunteer")
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    assert host not in [h["uid"] for h in await hosts.list_hosts(srv, admin)]
    with pytest.raises(AuthenticationError):  # its report could not even be made
        await users.resolve_token(srv, token)
    with pytest.raises(NotFound):
        await d.report(srv, assignment.task_uid, who=volunteer)
    other = await d.register(srv)
    [again] = await d.request_work(srv, other)
    assert again.job_uid == job["uid"] and (await d.job(srv, job["uid"]))["retry"] == 0
