"""Attacks on identity: replayed tokens, a STANDARD user reaching for SUPER's powers, password
guessing, and hostile names. Each is refused with a clear JSON error and changes nothing."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import pytest
from xw_server_harness import BACKENDS, XW

from xwcommon.errors import LOGIN_BUSY, AuthenticationError
from xwcommon.transport import Transport

SQL = ["'; DROP TABLE users; --", "alice' OR '1'='1", 'x"); DELETE FROM usergroups; --']
HOSTILE = ["../../etc/passwd", "..", "bad\0name", "x" * 10_000, *SQL]


async def create(xw: XW, login: str, rights: str = "STANDARD", group: str | None = None) -> str:
    """A user made through the API; returns its password."""
    password = "pw-" + secrets.token_hex(8)
    body = {"login": login, "password": password, "email": "", "rights": rights, "group": group}
    await xw.ok("POST", "/users", token=xw.admin, json=body, expect=201)
    return password


async def snapshot(xw: XW, admin: str | None = None) -> dict[str, Any]:
    """What a successful attack would change, as SUPER sees it."""
    t = admin or xw.admin
    users = (await xw.ok("GET", "/users", token=t))["users"]
    groups = (await xw.ok("GET", "/usergroups", token=t))["usergroups"]
    return {
        "users": sorted((u["login"], u["rights"], u["group_uid"], u["email"]) for u in users),
        "groups": sorted((g["label"], g["members"]) for g in groups),
        "data": sorted(d["uid"] for d in (await xw.ok("GET", "/data", token=t))["data"]),
        "jobs": sorted(j["uid"] for j in (await xw.ok("GET", "/jobs", token=t))["jobs"]),
    }


async def replay(xw: XW, token: str) -> None:
    """Every kind of call with a dead token is a 401 JSON error."""
    for method, path, body in [
        ("GET", "/users/me", None),
        ("GET", "/users", None),
        ("POST", "/users", {"login": "mallory", "password": "x", "rights": "SUPER"}),
        ("PATCH", "/users/admin", {"email": "mallory@example.org"}),
        ("POST", "/users/admin/password", {"password": "owned"}),
        ("POST", "/usergroups", {"label": "mallory"}),
        ("POST", "/jobs", {"app": "work"}),
        ("POST", "/logout", None),
    ]:
        r = await xw.call(method, path, token=token, json=body)
        assert r.status == 401, (method, path, r)
        assert set(r.body) == {"error", "message"} and r.body["error"] == "unauthorized"
    r = await xw.call("POST", "/data", token=token, data=b"x", params={"name": "mallory"})
    assert r.status == 401, r


# -- replayed tokens ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_token_replayed_after_logout_password_change_or_removal_is_refused(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    boss_pw = await create(xw, "boss", "SUPER")
    alice_pw = await create(xw, "alice")
    at_logout = await xw.login("alice", alice_pw)
    boss = await xw.login("boss", boss_pw)
    alice = await xw.login("alice", alice_pw)
    await xw.ok("GET", "/users/me", token=at_logout)  # cached in the server now
    await xw.ok("POST", "/logout", token=at_logout)
    before = await snapshot(xw)
    await replay(xw, at_logout)
    # a SUPER token, reset by another SUPER: its powers go with its password
    await xw.ok("GET", "/users", token=boss)
    await xw.ok("POST", "/users/boss/password", token=xw.admin, json={"password": "new-boss-pw"})
    await replay(xw, boss)
    # the user's own change revokes the very token that made it, and every other one
    await xw.ok("GET", "/users/me", token=alice)
    await xw.ok(
        "POST", "/users/alice/password", token=alice, json={"password": "n", "old_password": alice_pw}
    )
    await replay(xw, alice)
    assert await snapshot(xw) == before
    # removal
    erin = await xw.add_user("erin")
    await xw.ok("GET", "/users/me", token=erin)
    await xw.ok("DELETE", "/users/erin", token=xw.admin)
    after_removal = await snapshot(xw)
    await replay(xw, erin)
    assert await snapshot(xw) == after_removal
    await xw.assert_healthy()


@pytest.mark.parametrize("server_conf", [{"token_ttl_s": "1.5"}])
async def test_a_token_replayed_after_it_expired_is_refused(xw: XW) -> None:
    password = await create(xw, "alice")
    alice = await xw.login("alice", password)
    await xw.ok("GET", "/users/me", token=alice)
    await asyncio.sleep(1.6)
    admin = await xw.login("admin", xw.admin_password)  # the fixture's admin token expired too
    before = await snapshot(xw, admin)
    await replay(xw, alice)
    assert await snapshot(xw, admin) == before
    await xw.ok("GET", "/users/me", token=await xw.login("alice", password))


# -- a STANDARD user reaching for SUPER's powers --------------------------------------------------------------
async def test_a_standard_user_cannot_manage_users_groups_or_others_passwords(xw: XW) -> None:
    await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "physics"})
    alice_pw = await create(xw, "alice", group="physics")
    bob = await xw.login("bob", await create(xw, "bob", "ADVANCED"))
    admin_uid = (await xw.ok("GET", "/users/me", token=xw.admin))["uid"]
    before = await snapshot(xw)
    for method, path, body, status in [
        ("POST", "/users", {"login": "mallory", "password": "x", "rights": "SUPER"}, 403),
        ("POST", "/usergroups", {"label": "mallory"}, 403),
        ("PATCH", "/users/bob", {"rights": "SUPER"}, 403),
        ("PATCH", "/users/bob", {"group": "physics"}, 403),
        ("PATCH", "/users/alice", {"email": "mallory@example.org"}, 403),
        ("DELETE", "/users/alice", None, 403),
        ("DELETE", "/usergroups/physics", None, 403),
        ("POST", "/users/alice/password", {"password": "owned"}, 403),
        ("POST", "/users/admin/password", {"password": "owned", "old_password": "guess"}, 403),
        ("POST", f"/users/{admin_uid}/password", {"password": "owned"}, 403),
        ("GET", "/users/alice", None, 404),
        ("GET", f"/users/{admin_uid}", None, 404),
        ("GET", "/usergroups/physics", None, 404),
    ]:
        r = await xw.call(method, path, token=bob, json=body)
        assert r.status == status, (method, path, body, r)
        assert set(r.body) == {"error", "message"}
    assert [u["login"] for u in (await xw.ok("GET", "/users", token=bob))["users"]] == ["bob"]
    assert (await xw.ok("GET", "/usergroups", token=bob))["usergroups"] == []
    worker = await xw.call("GET", "/users", token=xw.worker)
    assert worker.status == 403
    assert await snapshot(xw) == before
    await xw.login("alice", alice_pw)
    await xw.assert_healthy()


# -- password guessing ------------------------------------------------------------------------------------------
THROTTLE = {"login_failures_allowed": "3", "login_backoff_cap_s": "2"}


async def attempt(xw: XW, login: str, password: str) -> Any:
    return await xw.call("POST", "/login", json={"login": login, "password": password})


def retry_after(r: Any, code: str = "too_many_requests") -> int:
    assert r.status == 429, r
    assert r.body == {"error": code, "message": r.body["message"]}
    assert "try again" in r.body["message"]
    value = int(r.headers["Retry-After"])
    assert value >= 1
    return value


@pytest.mark.parametrize("server_conf", [THROTTLE])
async def test_brute_force_on_one_login_waits_longer_each_time_and_the_user_gets_back_in(xw: XW) -> None:
    password = await create(xw, "alice")
    for guess in range(3):
        assert (await attempt(xw, "alice", f"guess-{guess}")).status == 401
    # blocked: even the right password is not looked at
    wait = retry_after(await attempt(xw, "alice", password))
    assert wait == 1
    await asyncio.sleep(wait + 0.05)
    assert (await attempt(xw, "alice", "guess-4")).status == 401
    wait = retry_after(await attempt(xw, "alice", password))
    assert wait == 2  # twice as long, which is the cap here
    await asyncio.sleep(wait + 0.05)
    token = (await attempt(xw, "alice", password)).body["token"]
    assert (await attempt(xw, "alice", "one-typo")).status == 401  # the success reset the count
    # a stolen token cannot guess the password through the password change either
    for _ in range(2):
        r = await xw.call(
            "POST", "/users/alice/password", token=token, json={"password": "x", "old_password": "guess"}
        )
        assert r.status == 403
    r = await xw.call(
        "POST", "/users/alice/password", token=token, json={"password": "x", "old_password": password}
    )
    retry_after(r)
    await xw.assert_healthy()


@pytest.mark.parametrize("server_conf", [THROTTLE])
async def test_one_address_trying_many_logins_is_throttled_for_every_login(xw: XW) -> None:
    for i in range(12):  # four times the allowance of one login
        assert (await attempt(xw, f"user{i}", "guess")).status == 401
    retry_after(await attempt(xw, "admin", xw.admin_password))
    await asyncio.sleep(1.05)
    await xw.login("admin", xw.admin_password)


@pytest.mark.parametrize("server_conf", [THROTTLE])
async def test_a_burst_of_parallel_guesses_gets_no_more_tries_than_the_allowance(xw: XW) -> None:
    await create(xw, "alice")
    answers = await asyncio.gather(*(attempt(xw, "alice", f"guess-{i}") for i in range(20)))
    statuses = sorted(r.status for r in answers)
    assert statuses.count(401) <= 3 and set(statuses) <= {401, 429}, statuses
    for r in answers:
        if r.status == 429:
            # turned away while others were in flight (come back in a second), or blocked
            assert retry_after(r, r.body["error"]) >= 1
            assert r.body["error"] in {"too_many_requests", LOGIN_BUSY}


@pytest.mark.parametrize("server_conf", [THROTTLE])
async def test_a_crowd_of_hosts_sharing_one_worker_identity_all_log_in(xw: XW) -> None:
    """After a server restart every public host logs in at once with the same identity: the
    server lets a few through at a time and the transport brings the others back."""
    transports = [Transport(xw.url, xw.ca_file, "worker", xw.worker_password) for _ in range(20)]
    try:
        await asyncio.gather(*(t.login() for t in transports))
        me = await asyncio.gather(*(t.request("GET", "/users/me") for t in transports))
    finally:
        await asyncio.gather(*(t.close() for t in transports))
    assert {m["login"] for m in me} == {"worker"}
    # and a wrong password is still refused at once, not retried
    with pytest.raises(AuthenticationError):
        async with Transport(xw.url, xw.ca_file, "worker", "not-the-password") as wrong:
            await wrong.login()


# -- hostile names ------------------------------------------------------------------------------------------------
async def test_hostile_logins_labels_and_emails_are_refused_and_the_tables_stay_intact(xw: XW) -> None:
    await xw.ok("POST", "/usergroups", token=xw.admin, json={"label": "physics"})
    await create(xw, "alice")
    before = await snapshot(xw)
    for value in HOSTILE:
        for path, body in [
            ("/users", {"login": value, "password": "pw", "rights": "STANDARD"}),
            ("/users", {"login": "ok-login", "password": "pw", "email": value, "rights": "STANDARD"}),
            ("/users", {"login": "ok-login", "password": "pw", "email": f"a@b.org{value}"}),
            ("/usergroups", {"label": value}),
        ]:
            r = await xw.call("POST", path, token=xw.admin, json=body)
            assert r.status == 400, (path, body, r)
            assert set(r.body) == {"error", "message"}
        r = await xw.call("PATCH", "/users/alice", token=xw.admin, json={"email": value})
        assert r.status == 400, (value, r)
        for path in ("/users/{}", "/usergroups/{}"):
            r = await xw.call("GET", path.format(quote(value, safe="")), token=xw.admin)
            assert r.status in (400, 404) and set(r.body) == {"error", "message"}, (path, value, r)
        r = await xw.call("DELETE", f"/users/{quote(value, safe='')}", token=xw.admin)
        assert r.status in (400, 404), (value, r)
    for value in HOSTILE[:4]:  # stays below the address's throttle allowance
        assert (await attempt(xw, value, "pw")).status == 401
    assert await snapshot(xw) == before
    await xw.assert_healthy()
