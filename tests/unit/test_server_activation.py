"""Host activation (what a worker's policy says) and GPUs over HTTP. On SQLite (when a heartbeat
moves ``since`` also on PostgreSQL and MariaDB); tests/unit/test_domain_activation.py holds their
scenarios on every database through the server's functions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import XW

HOST = {
    "name": "host",
    "os": "linux",
    "cpu": "x86_64",
    "cores": 4,
    "memory_bytes": 8 << 30,
    "disk_free_bytes": 100 << 30,
    "tags": [],
    "version": "test",
}
GPUS = [{"name": "NVIDIA A100", "memory_bytes": 40 << 30}, {"name": "Intel UHD 770", "memory_bytes": 0}]


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


async def _host(xw: XW, uid: str) -> dict[str, Any]:
    hosts = (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]
    [host] = [h for h in hosts if h["uid"] == uid]
    return dict(host)


async def _heartbeat(xw: XW, host: str, **extra: Any) -> Any:
    return await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": [], **extra}
    )


async def test_a_host_shows_no_activation_and_no_gpus_before_it_reports_any(xw: XW) -> None:
    host = await xw.register()
    shown = await _host(xw, host)
    assert shown["activation"] is None
    assert shown["gpus"] == []
    await _heartbeat(xw, host)  # a heartbeat without activation changes nothing of it
    assert (await _host(xw, host))["activation"] is None


async def test_registration_stores_the_activation_and_the_gpus(xw: XW) -> None:
    body = {**HOST, "gpus": GPUS, "activation": {"state": "suspended", "detail": "cpu busy (load 3.2 > 1.0)"}}
    host = (await xw.ok("POST", "/work/register", token=xw.worker, json=body))["host_uid"]
    shown = await _host(xw, host)
    assert shown["gpus"] == GPUS
    activation = shown["activation"]
    assert activation["state"] == "suspended"
    assert activation["detail"] == "cpu busy (load 3.2 > 1.0)"
    assert activation["since"].endswith("Z")
    assert (await xw.ok("GET", f"/objects/{host}", token=xw.admin))["object"]["activation"] == activation
    # registering again without them: the GPUs are described anew (none), the activation kept
    again = await xw.ok("POST", "/work/register", token=xw.worker, json={**HOST, "host_uid": host})
    assert again["host_uid"] == host
    shown = await _host(xw, host)
    assert shown["gpus"] == []
    assert shown["activation"] == activation


@pytest.mark.every_database
async def test_a_heartbeat_moves_since_only_when_the_state_changes(xw: XW) -> None:
    host = await xw.register()
    await _heartbeat(xw, host, activation={"state": "active", "detail": "always"})
    first = (await _host(xw, host))["activation"]
    assert first["state"] == "active" and first["detail"] == "always"
    await _heartbeat(xw, host, activation={"state": "active", "detail": "idle for 300 s"})
    same = (await _host(xw, host))["activation"]
    assert same == {"state": "active", "detail": "idle for 300 s", "since": first["since"]}
    await _heartbeat(xw, host, activation={"state": "suspended"})
    changed = (await _host(xw, host))["activation"]
    assert changed["state"] == "suspended" and changed["detail"] == ""
    assert _time(changed["since"]) > _time(first["since"])
    await _heartbeat(xw, host)  # no activation: kept as it was
    assert (await _host(xw, host))["activation"] == changed


async def test_a_heartbeat_with_activation_still_extends_the_leases(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    [before] = await xw.tasks(job["uid"])
    answer = await _heartbeat(xw, host, task_uids=[a["task_uid"]], activation={"state": "active"})
    assert answer["cancel"] == []
    [after] = await xw.tasks(job["uid"])
    assert after["lease_expires_at"] >= before["lease_expires_at"]


BAD_ACTIVATIONS = [
    ("active", "activation"),
    ({"state": "sleeping"}, "activation.state"),
    ({"detail": "no state"}, "activation.state"),
    ({"state": "active", "detail": 3}, "activation.detail"),
    ({"state": "active", "detail": "line\nbreak"}, "activation.detail"),
    ({"state": "active", "detail": "x" * 201}, "activation.detail"),
    ({"state": "active", "why": "x"}, "why"),
]


async def test_a_bad_activation_is_a_400_naming_the_field(xw: XW) -> None:
    host = await xw.register()
    for activation, field in BAD_ACTIVATIONS:
        r = await xw.call(
            "POST",
            "/work/heartbeat",
            token=xw.worker,
            json={"host_uid": host, "task_uids": [], "activation": activation},
        )
        assert r.status == 400 and field in r.body["message"], (activation, r)
        body = {**HOST, "activation": activation}
        r = await xw.call("POST", "/work/register", token=xw.worker, json=body)
        assert r.status == 400 and field in r.body["message"], (activation, r)
    assert (await _host(xw, host))["activation"] is None
    assert len((await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]) == 1
    await xw.assert_healthy()


BAD_GPUS = [
    ("A100", "gpus"),
    ([{"name": "g", "memory_bytes": 1}] * 17, "gpus"),
    (["A100"], "gpus[0]"),
    ([{"memory_bytes": 1}], "gpus[0].name"),
    ([{"name": "", "memory_bytes": 1}], "gpus[0].name"),
    ([{"name": "g" * 129, "memory_bytes": 1}], "gpus[0].name"),
    ([{"name": "g", "memory_bytes": 1}, {"name": "g", "memory_bytes": -1}], "gpus[1].memory_bytes"),
    ([{"name": "g", "memory_bytes": "1"}], "gpus[0].memory_bytes"),
    ([{"name": "g", "memory_bytes": True}], "gpus[0].memory_bytes"),
    ([{"name": "g", "memory_bytes": 1, "vendor": "x"}], "vendor"),
]


async def test_bad_gpus_are_a_400_naming_the_field(xw: XW) -> None:
    for gpus, field in BAD_GPUS:
        r = await xw.call("POST", "/work/register", token=xw.worker, json={**HOST, "gpus": gpus})
        assert r.status == 400 and field in r.body["message"], (gpus, r)
    assert (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"] == []
    await xw.assert_healthy()
