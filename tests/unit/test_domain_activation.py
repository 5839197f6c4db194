"""Host activation (what a worker's policy says) and GPUs on every database, through the
server's functions: stored at registration, moved by heartbeats only when the state changes,
leases still extended. Each test mirrors one of tests/unit/test_server_activation.py, whose
HTTP versions run on SQLite."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from helpers import domain as d

from xwcommon.protocol.work import Activation, Gpu
from xwserver import hosts, objects
from xwserver.state import Server

GPUS = [Gpu(name="NVIDIA A100", memory_bytes=40 << 30), Gpu(name="Intel UHD 770", memory_bytes=0)]


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


async def _host(srv: Server, uid: str) -> dict[str, Any]:
    """The host as ``GET /hosts`` shows it to admin."""
    [host] = [h for h in await hosts.list_hosts(srv, await d.admin(srv)) if h["uid"] == uid]
    return host


async def test_registration_stores_the_activation_and_the_gpus(domain: Server) -> None:
    """Mirrors test_registration_stores_the_activation_and_the_gpus."""
    srv = domain
    suspended = Activation(state="suspended", detail="cpu busy (load 3.2 > 1.0)")
    host = await d.register(srv, gpus=list(GPUS), activation=suspended)
    shown = await _host(srv, host)
    assert shown["gpus"] == [
        {"name": "NVIDIA A100", "memory_bytes": 40 << 30},
        {"name": "Intel UHD 770", "memory_bytes": 0},
    ]
    activation = shown["activation"]
    assert activation["state"] == "suspended"
    assert activation["detail"] == "cpu busy (load 3.2 > 1.0)"
    assert activation["since"].endswith("Z")
    assert (await objects.get(srv, await d.admin(srv), host))["object"]["activation"] == activation
    # registering again without them: the GPUs are described anew (none), the activation kept
    assert await d.register(srv, host_uid=host) == host
    shown = await _host(srv, host)
    assert shown["gpus"] == []
    assert shown["activation"] == activation


async def test_a_heartbeat_moves_since_only_when_the_state_changes(domain: Server) -> None:
    """Mirrors test_a_heartbeat_moves_since_only_when_the_state_changes."""
    srv = domain
    host = await d.register(srv)
    await d.heartbeat(srv, host, [], activation=Activation(state="active", detail="always"))
    first = (await _host(srv, host))["activation"]
    assert first["state"] == "active" and first["detail"] == "always"
    await d.heartbeat(srv, host, [], activation=Activation(state="active", detail="idle for 300 s"))
    same = (await _host(srv, host))["activation"]
    assert same == {"state": "active", "detail": "idle for 300 s", "since": first["since"]}
    await d.heartbeat(srv, host, [], activation=Activation(state="suspended"))
    changed = (await _host(srv, host))["activation"]
    assert changed["state"] == "suspended" and changed["detail"] == ""
    assert _time(changed["since"]) > _time(first["since"])
    await d.heartbeat(srv, host, [])  # no activation: kept as it was
    assert (await _host(srv, host))["activation"] == changed


async def test_a_heartbeat_with_activation_still_extends_the_leases(domain: Server) -> None:
    """Mirrors test_a_heartbeat_with_activation_still_extends_the_leases."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    [before] = await d.tasks(srv, job["uid"])
    answer = await d.heartbeat(srv, host, [a.task_uid], activation=Activation(state="active"))
    assert answer.cancel == []
    [after] = await d.tasks(srv, job["uid"])
    assert after["lease_expires_at"] >= before["lease_expires_at"]
