"""The users and user groups contract (docs/api.md) against a real server, on SQLite (two also on
PostgreSQL and MariaDB); tests/unit/test_domain_users.py holds their scenarios on every database
through the server's functions."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import pytest
from conftest import XW

USER_KEYS = {"uid", "uri", "login", "rights", "group_uid", "email"}
GROUP_KEYS = {"uid", "uri", "label", "created_at", "members"}


async def create(
    xw: XW, login: str, rights: str = "STANDARD", group: str | None = None, email: str = ""
) -> tuple[dict[str, Any], str]:
    """A user made through the API; returns it and its password."""
    password = "pw-" + secrets.token_hex(8)
    body = {"login": login, "password": password, "email": email, "rights": rights, "group": group}
    user = await xw.ok("POST", "/users", token=xw.admin, json=body, expect=201)
    return dict(user), password


async def logins(xw: XW, token: str) -> list[str]:
    return [u["login"] for u in (await xw.ok("GET", "/users", token=token))["users"]]


async def test_a_super_creates_a_user_who_logs_in_and_sees_only_itself(xw: XW) -> None:
    user, password = await create(xw, "alice", "STANDARD_USER", email="alice@example.org")
    assert set(user) == USER_KEYS
    assert user["rights"] == "STANDARD" and user["group_uid"] is None and user["email"] == "alice@example.org"
    assert user["uri"] == f"xw://{xw.settings.netloc}/{user['uid']}"
    session = await xw.ok("POST", "/login", json={"login": "alice", "password": password})
    assert session["user"] == user and session["expires_at"].endswith("Z")
    alice = session["token"]
    assert await xw.ok("GET", "/users/me", token=alice) == user
    assert await logins(xw, alice) == ["alice"]
    assert set(await logins(xw, xw.admin)) >= {"admin", "alice"}
    for key in ("alice", user["uid"], user["uri"]):
        assert await xw.ok("GET", f"/users/{quote(key, safe='')}", token=alice) == user
        assert await xw.ok("GET", f"/users/{quote(key, safe='')}", token=xw.admin) == user
    bob = await xw.add_user("bob")
    refused = await xw.call("GET", "/users/alice", token=bob)
    assert refused.status == 404 and refused.body["error"] == "not_found"
    assert (await xw.call("GET", "/users/nobody", token=xw.admin)).status == 404
    await xw.assert_healthy()


@pytest.mark.every_database
async def test_logins_are_unique_and_every_field_is_checked(xw: XW) -> None:
    await create(xw, "alice")
    taken = await xw.call(
        "POST", "/users", token=xw.admin, json={"login": "alice", "password": "x", "rights": "ADVANCED"}
    )
    assert taken.status == 409 and "alice" in taken.body["message"] and "taken" in taken.body["message"]
    good = {"login": "carol", "password": "secret", "email": "", "rights": "STANDARD", "group": None}
    for change, status, word in [
        ({"login": "me"}, 400, "reserved"),
        ({"login": ""}, 400, "login"),
        ({"login": "a b"}, 400, "login"),
        ({"login": "x" * 129}, 400, "login"),
        ({"login": 12}, 400, "login"),
        ({"password": ""}, 400, "password"),
        ({"password": "p" * 1025}, 400, "password"),
        ({"rights": "KING"}, 400, "rights"),
        ({"rights": None}, 400, "rights"),
        ({"email": "not an address"}, 400, "email"),
        ({"group": "no-such-group"}, 404, "group"),
        ({"colour": "blue"}, 400, "colour"),
    ]:
        r = await xw.call("POST", "/users", token=xw.admin, json={**good, **change})
        assert r.status == status and word in r.body["message"], (change, r)
    assert "carol" not in await logins(xw, xw.admin)
    for rights, shown in [("worker", "WORKER"), ("ADVANCED_USER", "ADVANCED"), ("SUPER", "SUPER")]:
        user, _ = await create(xw, f"u-{rights.lower()}", rights)
        assert user["rights"] == shown
    await xw.assert_healthy()


async def test_groups_are_listed_with_their_members_and_a_member_sees_its_own_only(xw: XW) -> None:
    physics = await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "physics"}, expect=201)
    assert set(physics) == GROUP_KEYS and physics["members"] == 0 and physics["label"] == "physics"
    chemistry = await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "chemistry"})
    again = await xw.call("POST", "/usergroups", token=xw.admin, json={"label": "physics"})
    assert again.status == 409 and "physics" in again.body["message"]
    alice, password = await create(xw, "alice", group="physics")
    bob, _ = await create(xw, "bob", group=physics["uid"])
    assert alice["group_uid"] == bob["group_uid"] == physics["uid"]
    token = (await xw.ok("POST", "/login", json={"login": "alice", "password": password}))["token"]
    assert (await xw.ok("GET", "/users/me", token=token))["group_uid"] == physics["uid"]
    everything = (await xw.ok("GET", "/usergroups", token=xw.admin))["usergroups"]
    assert {g["label"]: g["members"] for g in everything} == {"physics": 2, "chemistry": 0}
    assert [g["label"] for g in (await xw.ok("GET", "/usergroups", token=token))["usergroups"]] == ["physics"]
    for key in ("physics", physics["uid"], physics["uri"]):
        assert (await xw.ok("GET", f"/usergroups/{quote(key, safe='')}", token=token))["members"] == 2
    assert (await xw.call("GET", f"/usergroups/{chemistry['uid']}", token=token)).status == 404
    loner = await xw.add_user("loner")
    assert (await xw.ok("GET", "/usergroups", token=loner))["usergroups"] == []
    await xw.assert_healthy()


async def test_a_group_with_members_is_not_removed(xw: XW) -> None:
    await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "physics"})
    await create(xw, "alice", group="physics")
    busy = await xw.call("DELETE", "/usergroups/physics", token=xw.admin)
    assert busy.status == 409 and "1 member" in busy.body["message"]
    moved = await xw.ok("PATCH", "/users/alice", token=xw.admin, json={"group": None})
    assert moved["group_uid"] is None
    await xw.ok("DELETE", "/usergroups/physics", token=xw.admin)
    assert (await xw.call("GET", "/usergroups/physics", token=xw.admin)).status == 404
    assert (await xw.call("DELETE", "/usergroups/physics", token=xw.admin)).status == 404
    await xw.assert_healthy()


async def test_changing_rights_or_group_revokes_the_users_tokens_but_an_email_does_not(xw: XW) -> None:
    await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "physics"})
    _, password = await create(xw, "alice")
    token = await xw.login("alice", password)
    changed = await xw.ok("PATCH", "/users/alice", token=xw.admin, json={"email": "a@example.org"})
    assert changed["email"] == "a@example.org"
    assert (await xw.call("GET", "/users/me", token=token)).status == 200
    for change in ({"rights": "ADVANCED"}, {"group": "physics"}):
        await xw.ok("PATCH", "/users/alice", token=xw.admin, json=change)
        assert (await xw.call("GET", "/users/me", token=token)).status == 401, change
        token = await xw.login("alice", password)
    me = await xw.ok("GET", "/users/me", token=token)
    assert me["rights"] == "ADVANCED" and me["group_uid"] is not None
    for body, status in [({}, 400), ({"login": "x"}, 400), ({"rights": "KING"}, 400), ({"email": "@"}, 400)]:
        assert (await xw.call("PATCH", "/users/alice", token=xw.admin, json=body)).status == status, body
    assert (await xw.call("PATCH", "/users/nobody", token=xw.admin, json={"email": ""})).status == 404
    await xw.assert_healthy()


async def test_a_super_neither_lowers_its_own_rights_nor_removes_itself(xw: XW) -> None:
    lower = await xw.call("PATCH", "/users/admin", token=xw.admin, json={"rights": "STANDARD"})
    assert lower.status == 403 and "another SUPER" in lower.body["message"]
    gone = await xw.call("DELETE", "/users/admin", token=xw.admin)
    assert gone.status == 403 and "itself" in gone.body["message"]
    assert (await xw.ok("GET", "/users/me", token=xw.admin))["rights"] == "SUPER"
    await xw.assert_healthy()


async def test_a_user_owning_objects_is_not_removed_and_the_answer_says_what_it_owns(xw: XW) -> None:
    _, password = await create(xw, "alice")
    alice = await xw.login("alice", password)
    d = await xw.upload(alice, b"alice's data")
    busy = await xw.call("DELETE", "/users/alice", token=xw.admin)
    assert busy.status == 409 and "1 data" in busy.body["message"], busy
    assert (await xw.call("GET", "/users/me", token=alice)).status == 200  # nothing happened
    await xw.ok("DELETE", f"/data/{d['uid']}", token=alice)
    await xw.ok("DELETE", "/users/alice", token=xw.admin)
    assert (await xw.call("GET", "/users/me", token=alice)).status == 401
    assert (await xw.call("POST", "/login", json={"login": "alice", "password": password})).status == 401
    assert "alice" not in await logins(xw, xw.admin)
    assert (await xw.call("DELETE", "/users/alice", token=xw.admin)).status == 404
    await xw.assert_healthy()


@pytest.mark.every_database
async def test_removing_a_worker_identity_hands_its_running_task_back_and_removes_its_hosts(xw: XW) -> None:
    volunteer = await xw.add_user("volunteer", "WORKER")
    host = await xw.register(volunteer, name="volunteer-pc")
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    [assignment] = await xw.request_work(host, token=volunteer)
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"
    await xw.ok("DELETE", "/users/volunteer", token=xw.admin)
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    hosts = (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]
    assert host not in [h["uid"] for h in hosts]
    gone = await xw.call(
        "POST", f"/work/tasks/{assignment['task_uid']}/report", token=volunteer, json={"status": "COMPLETED"}
    )
    assert gone.status == 401
    other = await xw.register()
    [again] = await xw.request_work(other)
    assert again["job_uid"] == job["uid"] and (await xw.job(job["uid"]))["retry"] == 0
    await xw.assert_healthy()


async def test_a_password_change_needs_the_old_one_and_revokes_every_token(xw: XW) -> None:
    _, password = await create(xw, "alice")
    first, second = await xw.login("alice", password), await xw.login("alice", password)
    missing = await xw.call("POST", "/users/alice/password", token=first, json={"password": "new-one"})
    assert missing.status == 400 and "old_password" in missing.body["message"]
    wrong = await xw.call(
        "POST", "/users/alice/password", token=first, json={"password": "new-one", "old_password": "guess"}
    )
    assert wrong.status == 403 and "old_password" in wrong.body["message"]
    assert (await xw.call("GET", "/users/me", token=first)).status == 200
    # "me" names the caller in every /users/{key} path
    await xw.ok(
        "POST", "/users/me/password", token=first, json={"password": "new-one", "old_password": password}
    )
    for token in (first, second):
        assert (await xw.call("GET", "/users/me", token=token)).status == 401
    assert (await xw.call("POST", "/login", json={"login": "alice", "password": password})).status == 401
    token = await xw.login("alice", "new-one")
    # a SUPER resets anyone's password without the old one
    await xw.ok("POST", "/users/alice/password", token=xw.admin, json={"password": "reset-by-admin"})
    assert (await xw.call("GET", "/users/me", token=token)).status == 401
    await xw.login("alice", "reset-by-admin")
    for body in ({}, {"password": ""}, {"password": "x", "colour": "blue"}, [1]):
        assert (await xw.call("POST", "/users/alice/password", token=xw.admin, json=body)).status == 400
    assert (
        await xw.call("POST", "/users/nobody/password", token=xw.admin, json={"password": "x"})
    ).status == 404
    await xw.assert_healthy()
