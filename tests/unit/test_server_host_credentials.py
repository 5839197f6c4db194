"""A fleet logs in cheaply and safely: host credentials, remembered passwords, unique host
names and a cap on the hosts of one identity, on a real server over HTTPS. On SQLite (clones
registering at once also on PostgreSQL and MariaDB); tests/unit/test_domain_host_credentials.py
holds the host-name scenarios on every database through the server's functions."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from xwcommon.protocol.work import Registered, Registration
from xwserver import users
from xwserver.db.models import Host

if TYPE_CHECKING:
    from conftest import XW


def _registration(name: str = "vm", host_uid: str | None = None) -> dict[str, Any]:
    return Registration(name=name, os="linux", cpu="x86_64", cores=2, host_uid=host_uid).to_wire()


async def _register(xw: XW, token: str, name: str = "vm", host_uid: str | None = None) -> Registered:
    body = await xw.ok("POST", "/work/register", token=token, json=_registration(name, host_uid))
    return Registered.from_wire(body)


async def _host_login(xw: XW, host_uid: str, key: str, login: str = "worker") -> Any:
    return await xw.call("POST", "/login/host", json={"login": login, "host_uid": host_uid, "host_key": key})


async def test_a_registered_host_logs_in_with_its_key_and_acts_only_as_itself(xw: XW) -> None:
    first = await _register(xw, xw.worker, "vm-a")
    other = await _register(xw, xw.worker, "vm-b")
    assert first.host_key and other.host_key and first.host_key != other.host_key
    async with xw.srv.sessions() as session:
        stored = (await session.execute(select(Host.key_hash).where(Host.uid == first.host_uid))).scalar_one()
    assert stored == hashlib.sha256(first.host_key.encode()).hexdigest()  # hashed, never in clear

    r = await _host_login(xw, first.host_uid, first.host_key)
    assert r.status == 200, r
    assert r.body["host_uid"] == first.host_uid and r.body["user"]["login"] == "worker"
    token = r.body["token"]
    beat = {"host_uid": first.host_uid, "task_uids": []}
    await xw.ok("POST", "/work/heartbeat", token=token, json=beat)
    resumed = await _register(xw, token, "vm-a", first.host_uid)
    assert resumed.host_uid == first.host_uid and resumed.host_key is None  # no rotation due

    # least privilege: another host of the same identity, a new host, anything but /work
    r = await xw.call(
        "POST", "/work/heartbeat", token=token, json={"host_uid": other.host_uid, "task_uids": []}
    )
    assert r.status == 403 and "acts only as host" in r.body["message"]
    r = await xw.call("POST", "/work/register", token=token, json=_registration("vm-c"))
    assert r.status == 401 and "log in with the password" in r.body["message"]
    r = await xw.call("GET", "/hosts", token=token)
    assert r.status == 403
    # another host's key, a wrong key, another login: all 401
    for uid, key, login in (
        (first.host_uid, other.host_key, "worker"),
        (first.host_uid, "x" * 43, "worker"),
        (first.host_uid, first.host_key, "admin"),
    ):
        r = await _host_login(xw, uid, key, login)
        assert r.status == 401, r
    await xw.assert_healthy()


async def test_a_host_key_is_void_once_the_host_is_disabled_or_the_password_changes(xw: XW) -> None:
    reg = await _register(xw, xw.worker)
    assert reg.host_key
    await xw.ok("POST", f"/hosts/{reg.host_uid}/disable", token=xw.admin)
    r = await _host_login(xw, reg.host_uid, reg.host_key)
    assert (r.status, r.body["error"]) == (403, "host_disabled")
    await xw.ok("POST", f"/hosts/{reg.host_uid}/enable", token=xw.admin)
    r = await _host_login(xw, reg.host_uid, reg.host_key)
    assert r.status == 200
    bound = r.body["token"]

    await xw.ok("POST", "/users/worker/password", token=xw.admin, json={"password": "a new one"})
    r = await _host_login(xw, reg.host_uid, reg.host_key)
    assert r.status == 401
    r = await xw.call(
        "POST", "/work/heartbeat", token=bound, json={"host_uid": reg.host_uid, "task_uids": []}
    )
    assert r.status == 401  # its tokens went with it
    # the password, naming the host, gives it a new key (and a token bound to it)
    r = await xw.call(
        "POST", "/login", json={"login": "worker", "password": "a new one", "host_uid": reg.host_uid}
    )
    assert r.status == 200 and r.body["host_uid"] == reg.host_uid and r.body["host_key"]
    assert (await _host_login(xw, reg.host_uid, r.body["host_key"])).status == 200


class TestRotationAndCap:
    @pytest.fixture
    def server_conf(self) -> dict[str, str]:
        return {"host_key_rotate_s": "0", "max_hosts_per_identity": "3"}

    async def test_an_old_host_key_is_replaced_at_its_next_use(self, xw: XW) -> None:
        reg = await _register(xw, xw.worker)
        assert reg.host_key
        r = await _host_login(xw, reg.host_uid, reg.host_key)
        assert r.status == 200
        fresh = r.body["host_key"]
        assert fresh and fresh != reg.host_key
        assert (await _host_login(xw, reg.host_uid, reg.host_key)).status == 401  # the old one is void
        assert (await _host_login(xw, reg.host_uid, fresh)).status == 200

    async def test_an_identity_registers_no_more_hosts_than_the_cap(self, xw: XW) -> None:
        kept = [await _register(xw, xw.worker, f"n{i}") for i in range(3)]
        r = await xw.call("POST", "/work/register", token=xw.worker, json=_registration("n3"))
        assert r.status == 403
        assert "max_hosts_per_identity = 3" in r.body["message"] and "worker" in r.body["message"]
        again = await _register(xw, xw.worker, "n0", kept[0].host_uid)  # resuming is no new host
        assert again.host_uid == kept[0].host_uid
        await xw.ok("DELETE", f"/hosts/{kept[1].host_uid}", token=xw.admin)
        await _register(xw, xw.worker, "n3")


async def test_host_names_are_unique_and_a_clash_gets_a_suffix(xw: XW) -> None:
    a = await _register(xw, xw.worker, "vm")
    b = await _register(xw, xw.worker, "vm")
    assert (a.name, b.name) == ("vm", "vm-2")
    again = await _register(xw, xw.worker, "vm", b.host_uid)  # the clone keeps its suffix
    assert again.name == "vm-2"
    renamed = await _register(xw, xw.worker, "db", b.host_uid)
    assert renamed.name == "db"
    c = await _register(xw, xw.worker, "vm")
    assert c.name == "vm-2"
    odd = await _register(xw, xw.worker, "50%_off")
    assert (await _register(xw, xw.worker, "50%_off")).name == "50%_off-2" and odd.name == "50%_off"
    names = [h["name"] for h in (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]]
    assert sorted(names) == sorted(["vm", "db", "vm-2", "50%_off", "50%_off-2"])


@pytest.mark.every_database
async def test_clones_registering_at_once_all_get_names_of_their_own(xw: XW) -> None:
    admin = xw.admin
    many = await asyncio.gather(*(_register(xw, admin, "clone") for _ in range(12)))
    names = [r.name or "" for r in many]
    assert len(set(names)) == 12 and "clone" in names
    assert all(n == "clone" or (n.startswith("clone-") and n[6:].isdigit()) for n in names)


async def test_a_correct_password_pays_the_slow_hash_once_and_a_wrong_one_every_time(
    xw: XW, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    verify = users.verify_password

    def counting(password: str, stored: str) -> bool:
        hashed.append(password)
        return verify(password, stored)

    monkeypatch.setattr(users, "verify_password", counting)  # the server runs in this process
    good = {"login": "worker", "password": xw.worker_password}
    answers = await asyncio.gather(*(xw.call("POST", "/login", json=good) for _ in range(40)))
    statuses = [r.status for r in answers]
    # a first few pay the hash at once; the others are told to come back (login_busy) or
    # are recognised without it; no attempt is counted as failed
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 5
    first_wave = len(hashed)
    assert first_wave <= 5
    for _ in range(30):
        assert (await xw.call("POST", "/login", json=good)).status == 200
    assert len(hashed) == first_wave  # remembered: no more slow hashes

    # wrong passwords still pay it, and the throttle still blocks the login after its allowance
    allowed = xw.settings.login_failures_allowed
    for i in range(allowed):
        r = await xw.call("POST", "/login", json={"login": "worker", "password": f"guess {i}"})
        assert r.status == 401
    assert len(hashed) == first_wave + allowed
    r = await xw.call("POST", "/login", json={"login": "worker", "password": "one more guess"})
    assert r.status == 429 and len(hashed) == first_wave + allowed  # refused before any hash
    r = await xw.call("POST", "/login", json=good)
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1  # blocked: even the right one waits
