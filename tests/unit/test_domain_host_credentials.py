"""Host names on every database, through the server's functions: unique, a clash gets a
suffix, clones registering at once all get names of their own. Each test mirrors one of
tests/unit/test_server_host_credentials.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import asyncio

from helpers import domain as d

from xwserver import hosts
from xwserver.state import Server


async def test_host_names_are_unique_and_a_clash_gets_a_suffix(domain: Server) -> None:
    """Mirrors test_host_names_are_unique_and_a_clash_gets_a_suffix."""
    srv = domain
    a = await d.registered(srv, name="vm")
    b = await d.registered(srv, name="vm")
    assert (a.name, b.name) == ("vm", "vm-2")
    again = await d.registered(srv, name="vm", host_uid=b.host_uid)  # the clone keeps its suffix
    assert again.name == "vm-2"
    renamed = await d.registered(srv, name="db", host_uid=b.host_uid)
    assert renamed.name == "db"
    c = await d.registered(srv, name="vm")
    assert c.name == "vm-2"
    odd = await d.registered(srv, name="50%_off")
    assert (await d.registered(srv, name="50%_off")).name == "50%_off-2" and odd.name == "50%_off"
    names = [h["name"] for h in await hosts.list_hosts(srv, await d.admin(srv))]
    assert sorted(names) == sorted(["vm", "db", "vm-2", "50%_off", "50%_off-2"])


async def test_clones_registering_at_once_all_get_names_of_their_own(domain: Server) -> None:
    """Mirrors test_clones_registering_at_once_all_get_names_of_their_own."""
    srv = domain
    admin = await d.admin(srv)
    many = await asyncio.gather(*(d.registered(srv, admin, name="clone") for _ in range(12)))
    names = [r.name or "" for r in many]
    assert len(set(names)) == 12 and "clone" in names
    assert all(n == "clone" or (n.startswith("clone-") and n[6:].isdigit()) for n in names)
