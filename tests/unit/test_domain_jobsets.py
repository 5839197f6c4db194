"""Sessions and groups of jobs, and jobs bound to one host, on every database, through the
server's functions. Each test mirrors one of tests/unit/test_server_jobsets.py, whose HTTP
versions run on SQLite."""

from __future__ import annotations

import pytest
from helpers import domain as d

from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwserver import collector, data, groups, jobs, jobsets, objects, users
from xwserver.jobsets import JobSetKind
from xwserver.state import Server

#: (kind, the job spec field)
KINDS = [(jobsets.SESSIONS, "session_uid"), (jobsets.GROUPS, "group_uid")]
KIND_IDS = ["session", "group"]
UNKNOWN_UID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(("kind", "field"), KINDS, ids=KIND_IDS)
async def test_a_set_is_created_shown_listed_and_counts_its_jobs(
    domain: Server, kind: JobSetKind, field: str
) -> None:
    """Mirrors test_a_set_is_created_shown_listed_and_counts_its_jobs."""
    srv = domain
    alice = await d.add_user(srv, "alice")
    created = await jobsets.create(srv, alice, kind, {"name": "nightly run"})
    assert created["name"] == "nightly run" and created["owner_uid"] == alice.uid
    assert created["access_rights"] == "0700" and created["job_counts"] == {}
    assert created["uri"].endswith("/" + created["uid"])
    await d.insert_app(srv, alice, "work")
    in_set = [await d.submit(srv, alice, "work", **{field: created["uid"]}) for _ in range(3)]
    assert all(j[field] == created["uid"] for j in in_set)
    outside = await d.submit(srv, alice, "work")
    assert outside["session_uid"] is None and outside["group_uid"] is None
    # one of them runs on alice's own (private) worker
    host = await d.register(srv, alice)
    await d.request_work(srv, host, who=alice)
    shown = await jobsets.get(srv, alice, kind, created["uid"])
    assert shown["job_counts"] == {"PENDING": 2, "RUNNING": 1}
    assert await objects.get(srv, alice, created["uid"]) == {"kind": kind.name, "object": shown}
    assert [s["uid"] for s in await jobsets.list_sets(srv, alice, kind)] == [created["uid"]]
    # listed jobs by set, alone or with a status
    listed = await d.job_list(srv, alice, **{kind.name: created["uid"]})
    assert sorted(listed) == sorted(j["uid"] for j in in_set)
    running = await d.job_list(srv, alice, **{kind.name: created["uid"], "status": "RUNNING"})
    assert len(running) == 1
    assert await d.job_list(srv, alice, **{kind.name: created["uri"]}) == listed
    with pytest.raises(BadRequest, match=kind.name):
        await jobs.list_jobs(srv, alice, **{kind.name: "nope"})


async def test_sessions_and_groups_of_jobs_are_not_user_groups(domain: Server) -> None:
    """Mirrors test_sessions_and_groups_of_jobs_are_not_user_groups."""
    srv = domain
    admin = await d.admin(srv)
    session = await jobsets.create(srv, admin, jobsets.SESSIONS, {"name": "run 1"})
    group = await jobsets.create(srv, admin, jobsets.GROUPS, {"name": "run 1"})
    assert await groups.list_groups(srv, admin) == []
    assert [s["uid"] for s in await jobsets.list_sets(srv, admin, jobsets.SESSIONS)] == [session["uid"]]
    assert [g["uid"] for g in await jobsets.list_sets(srv, admin, jobsets.GROUPS)] == [group["uid"]]
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work", session_uid=session["uri"], group_uid=group["uid"])
    assert (job["session_uid"], job["group_uid"]) == (session["uid"], group["uid"])
    both = await d.job_list(srv, admin, session=session["uid"], group=group["uid"])
    assert list(both) == [job["uid"]]
    assert (await d.job(srv, job["uid"]))["session_uid"] == session["uid"]


@pytest.mark.parametrize(("kind", "field"), KINDS, ids=KIND_IDS)
async def test_others_see_only_what_the_access_bits_allow(
    domain: Server, kind: JobSetKind, field: str
) -> None:
    """Mirrors test_others_see_only_what_the_access_bits_allow."""
    srv = domain
    admin = await d.admin(srv)
    alice, bob = await d.add_user(srv, "alice"), await d.add_user(srv, "bob")
    private = await jobsets.create(srv, alice, kind, {"name": "private"})
    shared = await jobsets.create(srv, alice, kind, {"name": "shared", "access_rights": "0755"})
    open_ = await jobsets.create(srv, alice, kind, {"name": "open", "access_rights": "0777"})
    assert shared["access_rights"] == "0755"
    assert {s["uid"] for s in await jobsets.list_sets(srv, bob, kind)} == {shared["uid"], open_["uid"]}
    assert len(await jobsets.list_sets(srv, admin, kind)) == 3  # SUPER sees all
    with pytest.raises(NotFound):
        await jobsets.get(srv, bob, kind, private["uid"])
    with pytest.raises(NotFound):
        await objects.get(srv, bob, private["uid"])
    await d.insert_app(srv, bob, "bobs")
    with pytest.raises(NotFound, match=field):
        await d.submit(srv, bob, "bobs", **{field: private["uid"]})
    with pytest.raises(Forbidden, match=f"{field}.*0755|0755.*{field}"):
        await d.submit(srv, bob, "bobs", **{field: shared["uid"]})
    for bad in ("not-a-uid", 7):
        with pytest.raises(BadRequest, match=field):
            await d.submit(srv, bob, "bobs", **{field: bad})
    with pytest.raises(NotFound, match=field):
        await d.submit_many(
            srv, bob, [{"app": "bobs", field: open_["uid"]}, {"app": "bobs", field: private["uid"]}]
        )
    assert await jobs.list_jobs(srv, bob) == []  # all or nothing
    job = await d.submit(srv, bob, "bobs", **{field: open_["uid"]})  # writable by others
    assert job[field] == open_["uid"]
    # only the owner or SUPER removes it
    with pytest.raises(Forbidden):
        await jobsets.delete(srv, bob, kind, shared["uid"])
    with pytest.raises(NotFound):
        await jobsets.delete(srv, bob, kind, private["uid"])
    await jobsets.delete(srv, admin, kind, private["uid"])
    assert {s["uid"] for s in await jobsets.list_sets(srv, admin, kind)} == {shared["uid"], open_["uid"]}
    # chmod as for data and hosts
    changed = await objects.chmod(srv, alice, shared["uid"], {"rights": "o-rx"})
    assert changed["object"]["access_rights"] == "0750"
    assert {s["uid"] for s in await jobsets.list_sets(srv, bob, kind)} == {open_["uid"]}


@pytest.mark.parametrize(("kind", "field"), KINDS, ids=KIND_IDS)
async def test_removing_a_set_removes_its_jobs_in_one_go(
    domain: Server, kind: JobSetKind, field: str
) -> None:
    """Mirrors test_removing_a_set_removes_its_jobs_in_one_go."""
    srv = domain
    admin = await d.admin(srv)
    target = await jobsets.create(srv, admin, kind, {"name": "run 1"})
    await d.insert_app(srv, admin, "work")
    inside = [await d.submit(srv, admin, "work", **{field: target["uid"]}) for _ in range(3)]
    outside = await d.submit(srv, admin, "work")
    host = await d.register(srv)
    by_job = {a.job_uid: a.task_uid for a in await d.request_work(srv, host, capacity=2)}
    # one finishes with a result, one is still running
    done, running = inside[0]["uid"], inside[1]["uid"]
    result_uid = await d.upload_result(srv, by_job[done], d.EMPTY_ZIP)
    assert await d.report(srv, by_job[done], result_uid=result_uid) == "COMPLETED"
    # removed by its URI, as the client's xwrm names it
    assert await jobsets.delete(srv, admin, kind, target["uri"]) == 3
    for job in inside:
        with pytest.raises(NotFound):
            await d.job(srv, job["uid"])
    with pytest.raises(NotFound):
        await data.get_readable(srv, admin, result_uid)
    with pytest.raises(NotFound):
        await jobsets.get(srv, admin, kind, target["uid"])
    with pytest.raises(NotFound):
        await objects.get(srv, admin, target["uid"])
    assert (await d.job(srv, outside["uid"]))["status"] == "PENDING"
    # the running one's worker is told to stop
    assert (await d.heartbeat(srv, host, [by_job[running]])).cancel == [by_job[running]]
    # the result's file is left to the collector
    assert any(p.read_bytes() == d.EMPTY_ZIP for p in d.store_files(srv))
    await collector.collect_garbage(srv, now=2**40)
    assert not any(p.read_bytes() == d.EMPTY_ZIP for p in d.store_files(srv))


async def test_a_user_owning_a_set_cannot_be_removed(domain: Server) -> None:
    """Mirrors test_a_user_owning_a_set_cannot_be_removed."""
    srv = domain
    admin = await d.admin(srv)
    alice = await d.add_user(srv, "alice")
    session = await jobsets.create(srv, alice, jobsets.SESSIONS, {"name": "run 1"})
    with pytest.raises(Conflict, match="sessions"):
        await users.remove(srv, admin, "alice")
    await jobsets.delete(srv, alice, jobsets.SESSIONS, session["uid"])
    await jobsets.create(srv, alice, jobsets.GROUPS, {"name": "run 1"})
    with pytest.raises(Conflict, match="groups"):
        await users.remove(srv, admin, "alice")
    assert (await users.get(srv, admin, "alice"))["login"] == "alice"


async def test_a_job_bound_to_a_host_goes_to_that_host_only(domain: Server) -> None:
    """Mirrors test_a_job_bound_to_a_host_goes_to_that_host_only."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    chosen, other = await d.register(srv, name="chosen"), await d.register(srv, name="other")
    bound = await d.submit(srv, admin, "work", expected_host_uid=chosen)
    assert bound["expected_host_uid"] == chosen
    assert (await d.job(srv, bound["uid"]))["expected_host_uid"] == chosen
    assert await d.request_work(srv, other, capacity=5) == []
    free = await d.submit(srv, admin, "work")
    assert [a.job_uid for a in await d.request_work(srv, other, capacity=5)] == [free["uid"]]
    assert [a.job_uid for a in await d.request_work(srv, chosen, capacity=5)] == [bound["uid"]]


async def test_a_job_may_only_be_bound_to_a_host_its_submitter_may_read(domain: Server) -> None:
    """Mirrors test_a_job_may_only_be_bound_to_a_host_its_submitter_may_read."""
    srv = domain
    alice, bob = await d.add_user(srv, "alice"), await d.add_user(srv, "bob")
    public_host = await d.register(srv)  # a public worker's host: 0755, readable by all
    alices_host = await d.register(srv, alice)  # a private worker's: 0700
    await d.insert_app(srv, bob, "bobs")
    job = await d.submit(srv, bob, "bobs", expected_host_uid=public_host)
    assert job["expected_host_uid"] == public_host
    for hidden in (alices_host, UNKNOWN_UID):
        with pytest.raises(NotFound, match="expected_host_uid"):
            await d.submit(srv, bob, "bobs", expected_host_uid=hidden)
    for bad in ("nope", 5, ["x"]):
        with pytest.raises(BadRequest, match="expected_host_uid"):
            await d.submit(srv, bob, "bobs", expected_host_uid=bad)
    assert [j["uid"] for j in await jobs.list_jobs(srv, bob)] == [job["uid"]]
