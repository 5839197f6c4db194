"""Access rights on every database, through the server's functions: who sees and runs which
app, data, job and task, objects by UID, disabled hosts, delegation and worker kinds. Each
test mirrors one of tests/unit/test_server_access.py, whose HTTP versions run on SQLite.

The cast: ``admin`` (SUPER, no group); ``dave`` (ADVANCED, group g1); ``alice`` and ``bob``
(STANDARD, group g1); ``carol`` (STANDARD, no group); the public worker ``worker`` (WORKER,
no group) and a group worker ``gworker`` (WORKER, group g1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from helpers import domain as d
from sqlalchemy import select

from xwcommon.errors import Forbidden, HostDisabled, NotFound
from xwcommon.protocol.work import Release
from xwserver import apps, data, hosts, jobs, leases, objects
from xwserver.access import Caller
from xwserver.db.models import UserGroup
from xwserver.state import Server

UNKNOWN_UID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Cast:
    admin: Caller
    worker: Caller
    dave: Caller
    alice: Caller
    bob: Caller
    carol: Caller
    gworker: Caller


async def cast(srv: Server) -> Cast:
    return Cast(
        admin=await d.admin(srv),
        worker=await d.worker(srv),
        dave=await d.add_user(srv, "dave", "ADVANCED", group="g1"),
        alice=await d.add_user(srv, "alice", group="g1"),
        bob=await d.add_user(srv, "bob", group="g1"),
        carol=await d.add_user(srv, "carol"),
        gworker=await d.add_user(srv, "gworker", "WORKER", group="g1"),
    )


def uids(items: list[dict[str, Any]]) -> set[str]:
    return {i["uid"] for i in items}


async def test_app_rights_are_chosen_by_advanced_users_only_and_decide_who_sees_and_runs(
    domain: Server,
) -> None:
    """Mirrors test_app_rights_are_chosen_by_advanced_users_only_and_decide_who_sees_and_runs."""
    srv = domain
    c = await cast(srv)
    pub = await d.insert_app(srv, c.admin, "pub")
    grp = await d.insert_app(srv, c.dave, "grp", access_rights="0750")
    priv = await d.insert_app(srv, c.alice, "a-priv", access_rights="0755")  # a STANDARD user asks in vain
    assert (pub["access_rights"], grp["access_rights"], priv["access_rights"]) == ("0755", "0750", "0700")

    seen = {
        who.login: {a["name"] for a in await apps.list_apps(srv, who)}
        for who in (c.admin, c.alice, c.bob, c.carol)
    }
    assert seen == {
        "admin": {"pub", "grp", "a-priv"},
        "alice": {"pub", "grp", "a-priv"},
        "bob": {"pub", "grp"},
        "carol": {"pub"},
    }
    with pytest.raises(NotFound):
        await apps.get(srv, c.bob, "a-priv")
    with pytest.raises(NotFound):
        await apps.get(srv, c.carol, grp["uid"])
    # submitting needs the EXEC bit: group members run group apps, others do not even see them
    assert (await d.submit(srv, c.bob, "grp"))["access_rights"] == "0750"
    with pytest.raises(NotFound):
        await d.submit(srv, c.carol, "grp")
    with pytest.raises(NotFound):
        await d.submit(srv, c.bob, "a-priv")
    readable_only = await d.insert_app(srv, c.dave, "look-only", access_rights="0744")
    with pytest.raises(Forbidden, match="may not execute"):
        await d.submit(srv, c.carol, readable_only["uid"])
    # removal needs the write bit: a group member may read grp but not remove it
    with pytest.raises(Forbidden):
        await apps.delete(srv, c.alice, "grp")
    await apps.delete(srv, c.dave, "look-only")
    assert {a["name"] for a in await apps.list_apps(srv, c.admin)} == {"pub", "grp", "a-priv"}
    assert [j["app_uid"] for j in await jobs.list_jobs(srv, c.admin)] == [grp["uid"]]


async def test_data_lists_and_gets_follow_the_read_bits(domain: Server) -> None:
    """Mirrors test_data_lists_and_gets_follow_the_read_bits."""
    srv = domain
    c = await cast(srv)
    public = await d.upload(srv, c.alice, b"p", name="public")
    group = await d.upload(srv, c.alice, b"g", name="group", access_rights="0750")
    private = await d.upload(srv, c.alice, b"s", name="private", access_rights="0700")
    expected = {
        "alice": {public.uid, group.uid, private.uid},
        "bob": {public.uid, group.uid},
        "carol": {public.uid},
        "admin": {public.uid, group.uid, private.uid},
    }
    for who in (c.alice, c.bob, c.carol, c.admin):
        assert uids(await data.list_data(srv, who)) == expected[who.login], who.login
        for one in (public, group, private):
            if one.uid in expected[who.login]:
                assert (await data.get_readable(srv, who, one.uid)).uid == one.uid
                assert (
                    await d.content(srv, who, one.uid)
                    == {"public": b"p", "group": b"g", "private": b"s"}[one.name]
                )
                assert (await objects.get(srv, who, one.uid))["object"]["uid"] == one.uid
                continue
            for readable in (data.get_readable, data.get_content, objects.get):
                with pytest.raises(NotFound):
                    await readable(srv, who, one.uid)
    assert await data.list_data(srv, c.bob, owner="me") == []
    assert uids(await data.list_data(srv, c.bob, owner=c.alice.uid)) == {public.uid, group.uid}


async def test_jobs_and_tasks_are_seen_by_whoever_may_read_their_app(domain: Server) -> None:
    """Mirrors test_jobs_and_tasks_are_seen_by_whoever_may_read_their_app."""
    srv = domain
    c = await cast(srv)
    await d.insert_app(srv, c.admin, "pub")
    await d.insert_app(srv, c.alice, "a-priv")
    public_job = await d.submit(srv, c.alice, "pub")
    private_job = await d.submit(srv, c.alice, "a-priv")
    assert (public_job["access_rights"], private_job["access_rights"]) == ("0755", "0700")
    host = await d.register(srv, c.alice, name="alices-pc")  # a private worker: runs both
    assert len(await d.request_work(srv, host, capacity=5, who=c.alice)) == 2

    for who, count in [(c.alice, 2), (c.bob, 1), (c.carol, 1), (c.admin, 2)]:
        listed = await jobs.list_jobs(srv, who)
        assert len(listed) == count, who.login
        tasks = await jobs.list_tasks(srv, who)
        assert {t["job_uid"] for t in tasks} == uids(listed), who.login
    with pytest.raises(NotFound):
        await jobs.get(srv, c.bob, private_job["uid"])
    assert (await jobs.get(srv, c.bob, public_job["uid"]))["uid"] == public_job["uid"]
    with pytest.raises(Forbidden):  # 0755: no write
        await jobs.delete(srv, c.bob, public_job["uid"])
    with pytest.raises(NotFound):
        await jobs.delete(srv, c.bob, private_job["uid"])
    assert await jobs.list_jobs(srv, c.carol, owner="me") == []
    [private_task] = await jobs.list_tasks(srv, c.alice, job=private_job["uid"])
    with pytest.raises(NotFound):
        await objects.get(srv, c.bob, private_task["uid"])
    got = await objects.get(srv, c.alice, private_task["uid"])
    assert (got["kind"], got["object"]["job_uid"]) == ("task", private_job["uid"])
    await jobs.delete(srv, c.alice, public_job["uid"])
    assert uids(await jobs.list_jobs(srv, c.admin)) == {private_job["uid"]}


async def test_every_kind_of_object_is_found_by_uid_when_readable(domain: Server) -> None:
    """Mirrors test_every_kind_of_object_is_found_by_uid_when_readable (the refusal of a
    malformed UID stays with the HTTP test)."""
    srv = domain
    c = await cast(srv)
    app = await d.insert_app(srv, c.alice, "a-priv")
    job = await d.submit(srv, c.alice, "a-priv")
    host = await d.register(srv, c.alice)
    [a] = await d.request_work(srv, host, who=c.alice)
    async with srv.sessions() as session:
        g1 = (await session.execute(select(UserGroup.uid).where(UserGroup.label == "g1"))).scalar_one()
    found = {
        "app": app["uid"],
        "job": job["uid"],
        "task": a.task_uid,
        "host": host,
        "user": c.alice.uid,
        "usergroup": g1,
    }
    for kind, uid in found.items():
        got = await objects.get(srv, c.alice, uid)
        assert (got["kind"], got["object"]["uid"]) == (kind, uid)
        assert (await objects.get(srv, c.admin, uid))["kind"] == kind
        with pytest.raises(NotFound):
            await objects.get(srv, c.carol, uid)
    group = await objects.get(srv, c.bob, g1)
    assert (group["object"]["label"], group["object"]["members"]) == ("g1", 4)
    assert (await objects.get(srv, c.carol, c.carol.uid))["object"]["login"] == "carol"
    host_json = (await objects.get(srv, c.alice, host))["object"]
    assert (host_json["access_rights"], host_json["enabled"]) == ("0700", True)
    with pytest.raises(NotFound):
        await objects.get(srv, c.admin, UNKNOWN_UID)


async def test_a_disabled_host_hands_its_tasks_back_and_is_refused_until_enabled(domain: Server) -> None:
    """Mirrors test_a_disabled_host_hands_its_tasks_back_and_is_refused_until_enabled."""
    srv = domain
    admin, worker = await d.admin(srv), await d.worker(srv)
    await d.insert_app(srv, admin, "pub")
    job = await d.submit(srv, admin, "pub", max_retry=0)
    host = await d.register(srv, name="bad")
    [a] = await d.request_work(srv, host)
    other = await d.register(srv, name="good")

    await hosts.set_enabled(srv, admin, host, False)
    after = await d.job(srv, job["uid"])
    assert (after["status"], after["retry"]) == ("PENDING", 0)
    assert [t["status"] for t in await jobs.list_tasks(srv, admin, job=job["uid"])] == ["ABORTED"]
    disabled = f"^host {host} is disabled by an administrator$"
    with pytest.raises(HostDisabled, match=disabled):
        await d.request_work(srv, host)
    with pytest.raises(HostDisabled, match=disabled):
        await d.heartbeat(srv, host, [a.task_uid])
    with pytest.raises(HostDisabled, match=disabled):
        await d.report(srv, a.task_uid)
    with pytest.raises(HostDisabled, match=disabled):
        await leases.release(srv, worker, Release(host_uid=host, task_uids=[a.task_uid]))
    with pytest.raises(HostDisabled, match=disabled):
        await d.upload_result(srv, a.task_uid, b"zip")

    [again] = await d.request_work(srv, other)  # the job went elsewhere, no retry spent
    assert again.job_uid == job["uid"]
    assert (await d.job(srv, job["uid"]))["retry"] == 0
    await hosts.set_enabled(srv, admin, host, True)
    await d.submit(srv, admin, "pub")
    assert len(await d.request_work(srv, host)) == 1


async def test_a_worker_reads_only_the_inputs_its_own_identity_may_read(domain: Server) -> None:
    """Mirrors test_a_worker_reads_only_the_inputs_its_own_identity_may_read."""
    srv = domain
    c = await cast(srv)
    await d.insert_app(srv, c.admin, "pub")
    bobs = await d.upload(srv, c.bob, b"bob's input", name="in")  # public by default
    job = await d.submit(srv, c.carol, "pub", stdin_uid=bobs.uid)
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    assert await d.content(srv, c.worker, bobs.uid) == b"bob's input"
    await objects.chmod(srv, c.bob, bobs.uid, {"rights": "0700"})
    with pytest.raises(Forbidden, match=f"{bobs.uid}.*may not read|may not read.*{bobs.uid}"):
        await data.get_content(srv, c.worker, bobs.uid)
    # the app's binary: the worker was given the job to run it
    assert (await d.content(srv, c.worker, a.binary.data_uid)).startswith(b"#!/bin/sh")
    message = f"may not read the stdin (data {bobs.uid})"
    assert await d.report(srv, a.task_uid, status="ERROR", message=message) == "ERROR"
    assert (await d.job(srv, job["uid"], c.carol))["status"] == "ERROR"
    with pytest.raises(NotFound):  # no longer held
        await data.get_content(srv, c.worker, bobs.uid)


async def test_each_worker_kind_runs_exactly_the_jobs_it_may(domain: Server) -> None:
    """Mirrors test_each_worker_kind_runs_exactly_the_jobs_it_may."""
    srv = domain
    c = await cast(srv)
    await d.insert_app(srv, c.admin, "pub")
    await d.insert_app(srv, c.dave, "grp", access_rights="0750")
    await d.insert_app(srv, c.alice, "a-priv")
    await d.insert_app(srv, c.carol, "c-priv")
    specs = {
        "admin public": (c.admin, "pub"),
        "alice public": (c.alice, "pub"),
        "alice group": (c.alice, "grp"),
        "alice private": (c.alice, "a-priv"),
        "carol public": (c.carol, "pub"),
        "carol private": (c.carol, "c-priv"),
    }
    workers = {
        "public": c.worker,  # WORKER, no group: public jobs
        "group g1": c.gworker,  # WORKER in g1: its members' group and public jobs
        "alice's": c.alice,  # a STANDARD identity: its owner's jobs only
        "carol's": c.carol,
    }
    expected = {
        "public": {"admin public", "alice public", "carol public"},
        "group g1": {"alice public", "alice group"},
        "alice's": {"alice public", "alice group", "alice private"},
        "carol's": {"carol public", "carol private"},
    }
    for kind, who in workers.items():
        submitted = {(await d.submit(srv, owner, app))["uid"]: name for name, (owner, app) in specs.items()}
        host = await d.register(srv, who, name=kind.replace("'", ""))
        got = await d.request_work(srv, host, capacity=20, who=who)
        assert {submitted[a.job_uid] for a in got} == expected[kind], kind
        assert len(got) == len(expected[kind])
        for uid in submitted:  # clear the table for the next worker
            await jobs.delete(srv, c.admin, uid)
    assert await jobs.list_jobs(srv, c.admin) == []
