"""Replicated jobs on every database, through the server's functions: copies to distinct
hosts, quorum by result digests, caps, adaptive trust, deadlines and aborts, and the
queue's order (priority, fair share). Each test mirrors one of
tests/unit/test_server_replication.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import io
import zipfile

import pytest
from helpers import domain as d
from sqlalchemy import select, update

from xwcommon.errors import BadRequest, Forbidden
from xwserver import hosts, jobs, leases, users
from xwserver.db.models import Host, Task
from xwserver.state import Server

GOOD = {"stdout.txt": b"42\n", "out.dat": b"the answer"}
BAD = {"stdout.txt": b"41\n", "out.dat": b"a wrong answer"}


async def test_a_quorum_of_two_completes_when_two_hosts_agree_and_never_sends_both_copies_to_one_host(
    domain: Server,
) -> None:
    """Mirrors test_a_quorum_of_two_completes_when_two_hosts_agree_and_never_sends_both_copies_to_one_host."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", min_quorum=2)
    assert (job["min_quorum"], job["target_results"], job["status"]) == (2, 2, "PENDING")
    h1, h2 = await d.volunteers(srv, 2)
    [a1] = await d.request_work(srv, h1, capacity=4)
    assert await d.request_work(srv, h1, capacity=4) == []  # its second copy is for another host
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    [a2] = await d.request_work(srv, h2)
    assert a2.job_uid == a1.job_uid == job["uid"]
    assert (await d.job(srv, job["uid"]))["status"] == "RUNNING"

    assert await d.report(srv, a1.task_uid, GOOD) == "WAITING"
    shown = await d.job(srv, job["uid"])
    assert (shown["status"], shown["results"], shown["result_uid"]) == ("WAITING", 1, None)
    assert await d.report(srv, a2.task_uid, GOOD) == "COMPLETED"
    done = await d.job(srv, job["uid"])
    assert (done["status"], done["copies_sent"], done["results"]) == ("COMPLETED", 2, 2)
    assert done["message"] == "2 of 2 results agree"
    assert done["result_uid"] is not None
    assert [c["validity"] for c in await d.copies(srv, job["uid"])] == ["valid", "valid"]


async def test_results_that_disagree_send_another_copy_and_the_minority_is_invalid(domain: Server) -> None:
    """Mirrors test_results_that_disagree_send_another_copy_and_the_minority_is_invalid: the
    verdicts, the canonical result's bytes, the hosts' records and their credit."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", min_quorum=2)
    h1, h2, h3 = await d.volunteers(srv, 3)
    [a1] = await d.request_work(srv, h1)
    [a2] = await d.request_work(srv, h2)
    assert await d.report(srv, a1.task_uid, GOOD) == "WAITING"
    assert await d.report(srv, a2.task_uid, BAD) == "PENDING"  # 1 against 1: a third copy
    [a3] = await d.request_work(srv, h3)
    assert a3.job_uid == job["uid"]
    assert await d.report(srv, a3.task_uid, GOOD) == "COMPLETED"
    verdicts = [c["validity"] for c in await d.copies(srv, job["uid"])]
    assert verdicts == ["valid", "invalid", "valid"]
    # the canonical result is an honest copy's: its bytes are GOOD's
    done = await d.job(srv, job["uid"])
    with zipfile.ZipFile(io.BytesIO(await d.content(srv, admin, done["result_uid"]))) as archive:
        assert archive.read("out.dat") == b"the answer"
    async with srv.engine.connect() as conn:
        streaks = dict((await conn.execute(select(Host.uid, Host.valid_streak))).all())
    assert (streaks[h1], streaks[h2], streaks[h3]) == (1, 0, 1)
    # credit: the CPU seconds of valid results, per host (xwworkers) and per volunteer (xwusers)
    shown = {h["uid"]: h for h in await hosts.list_hosts(srv, admin)}
    assert [
        (shown[h]["credit_cpu_s"], shown[h]["valid_results"], shown[h]["invalid_results"])
        for h in (h1, h2, h3)
    ] == [(2.5, 1, 0), (0.0, 0, 1), (2.5, 1, 0)]
    listed = {u["login"]: u for u in await users.list_users(srv, admin)}
    worker = next(u for u in listed.values() if u["rights"] == "WORKER")
    assert (worker["credit_cpu_s"], worker["valid_results"], worker["invalid_results"]) == (5.0, 2, 1)


async def test_too_many_failed_copies_end_the_job_in_error_with_the_reason(domain: Server) -> None:
    """Mirrors test_too_many_failed_copies_end_the_job_in_error_with_the_reason."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", min_quorum=2, max_error_results=1)
    h = await d.volunteers(srv, 4)
    [a1] = await d.request_work(srv, h[0])
    [a2] = await d.request_work(srv, h[1])
    assert await d.report(srv, a1.task_uid, None, status="ERROR") == "PENDING"
    [a3] = await d.request_work(srv, h[2])
    assert await d.report(srv, a2.task_uid, None, status="ERROR") == "ERROR"
    shown = await d.job(srv, job["uid"])
    assert shown["status"] == "ERROR" and "max_error_results (1)" in shown["message"]
    assert [c["status"] for c in await d.copies(srv, job["uid"])] == ["ERROR", "ERROR", "ABORTED"]
    # the copy still out is told to stop at its next heartbeat
    assert (await d.heartbeat(srv, h[2], [a3.task_uid])).cancel == [a3.task_uid]


async def test_no_quorum_within_max_total_results_is_an_error(domain: Server) -> None:
    """Mirrors test_no_quorum_within_max_total_results_is_an_error."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", min_quorum=2, max_total_results=3)
    h = await d.volunteers(srv, 3)
    for i, files in enumerate(({"r": b"1"}, {"r": b"2"}, {"r": b"3"})):
        [a] = await d.request_work(srv, h[i])
        status = await d.report(srv, a.task_uid, files)
    assert status == "ERROR"
    shown = await d.job(srv, job["uid"])
    assert shown["status"] == "ERROR"
    assert "max_total_results (3)" in shown["message"] and shown["copies_sent"] == 3


async def test_volatile_files_are_left_out_of_the_comparison(domain: Server) -> None:
    """Mirrors test_volatile_files_are_left_out_of_the_comparison."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim", min_quorum=2, volatile=["stderr.txt", "*.log"])
    job = await d.submit(srv, admin, "sim")
    assert job["min_quorum"] == 2  # the app's
    h1, h2 = await d.volunteers(srv, 2)
    [a1] = await d.request_work(srv, h1)
    [a2] = await d.request_work(srv, h2)
    assert (
        await d.report(srv, a1.task_uid, {**GOOD, "stderr.txt": b"took 1.2 s", "run.log": b"t=1"})
        == "WAITING"
    )
    second = {**GOOD, "stderr.txt": b"took 3.4 s", "run.log": b"t=2"}
    assert await d.report(srv, a2.task_uid, second) == "COMPLETED"


async def test_a_lost_copy_is_sent_again_to_another_host(domain: Server) -> None:
    """Mirrors test_a_lost_copy_is_sent_again_to_another_host."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", min_quorum=2)
    h1, h2, h3 = await d.volunteers(srv, 3)
    [a1] = await d.request_work(srv, h1)
    [a2] = await d.request_work(srv, h2)
    async with srv.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.uid == a1.task_uid).values(lease_expires_at=0))
    await leases.reap(srv)
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    assert await d.request_work(srv, h2) == []  # h2 holds a copy already
    [a3] = await d.request_work(srv, h3)
    assert await d.report(srv, a2.task_uid, GOOD) == "WAITING"
    assert await d.report(srv, a3.task_uid, GOOD) == "COMPLETED"
    assert [c["status"] for c in await d.copies(srv, job["uid"])] == ["LOST", "COMPLETED", "COMPLETED"]


async def _set_streak(srv: Server, host_uid: str, streak: int) -> None:
    """A host's record of valid results in a row, as if it had earned it."""
    async with srv.engine.begin() as conn:
        await conn.execute(update(Host).where(Host.uid == host_uid).values(valid_streak=streak))
    srv.hosts.drop(host_uid)  # the record is cached with the host


async def test_a_trusted_host_runs_replicated_jobs_alone_until_it_returns_an_invalid_result(
    domain: Server,
) -> None:
    """Mirrors test_a_trusted_host_runs_replicated_jobs_alone_until_it_returns_an_invalid_result."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    h1, h2, h3 = await d.volunteers(srv, 3)
    await _set_streak(srv, h1, 2**31 - 1)  # a record so long that 1 - 1/N is 1 in practice
    alone = await d.submit(srv, admin, "sim", min_quorum=2)
    [a] = await d.request_work(srv, h1)
    assert await d.report(srv, a.task_uid, BAD) == "COMPLETED"
    shown = await d.job(srv, alone["uid"])
    assert (shown["trusted"], shown["copies_sent"]) == (True, 1)

    # h1 now disagrees with two honest hosts on a replicated job: its record is reset, and
    # the job it ran alone goes back to the queue, for two other hosts
    checked = await d.submit(srv, admin, "sim", min_quorum=2)
    await _set_streak(srv, h1, 0)
    [b1] = await d.request_work(srv, h2)
    assert b1.job_uid == checked["uid"]
    [b2] = await d.request_work(srv, h1)
    assert b2.job_uid == checked["uid"]
    await d.report(srv, b2.task_uid, BAD)
    assert await d.report(srv, b1.task_uid, GOOD) == "PENDING"
    assert (await d.job(srv, alone["uid"]))["status"] == "COMPLETED"  # h1 is not known to cheat yet
    [b3] = await d.request_work(srv, h3)
    assert b3.job_uid == checked["uid"]
    assert await d.report(srv, b3.task_uid, GOOD) == "COMPLETED"  # now h1's result is invalid
    reopened = await d.job(srv, alone["uid"])
    assert (reopened["status"], reopened["trusted"], reopened["result_uid"]) == ("PENDING", False, None)
    assert reopened["message"].startswith("sent again")
    assert await d.request_work(srv, h1) == []  # not back to the host that cheated
    [c2] = await d.request_work(srv, h2)
    assert c2.job_uid == alone["uid"]
    assert await d.report(srv, c2.task_uid, GOOD) == "PENDING"  # h1's old BAD against GOOD
    [c3] = await d.request_work(srv, h3)
    assert await d.report(srv, c3.task_uid, GOOD) == "COMPLETED"
    verdicts = {c["host_id"]: c["validity"] for c in await d.copies(srv, alone["uid"])}
    assert sorted(verdicts.values(), key=str) == ["invalid", "valid", "valid"]


async def test_an_aborted_job_ends_aborted_is_kept_and_its_running_copy_is_cancelled(domain: Server) -> None:
    """Mirrors test_an_aborted_job_ends_aborted_is_kept_and_its_running_copy_is_cancelled."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    running = await d.submit(srv, admin, "sim")
    queued = await d.submit(srv, admin, "sim")
    [host] = await d.volunteers(srv, 1)
    [a] = await d.request_work(srv, host)
    body = await jobs.abort_many(srv, admin, {"uids": [running["uid"], queued["uid"], running["uid"]]})
    assert sorted(body["aborted"]) == sorted([running["uid"], queued["uid"]]) and body["missing"] == []
    for uid in (running["uid"], queued["uid"]):
        shown = await d.job(srv, uid)
        assert shown["status"] == "ABORTED" and shown["message"] == "aborted by admin"
    assert (await d.heartbeat(srv, host, [a.task_uid])).cancel == [a.task_uid]
    again = await jobs.abort_many(srv, admin, {"uids": [running["uid"]]})
    assert again["aborted"] == [] and "ABORTED already" in again["missing"][0]["reason"]
    mallory = await d.add_user(srv, "mallory")
    refused = await jobs.abort_many(srv, mallory, {"uids": [queued["uid"]]})
    assert refused["aborted"] == [] and refused["missing"][0]["reason"].startswith("not yours to abort")


async def test_a_copy_past_its_delay_bound_gets_a_twin_and_the_first_to_finish_wins(domain: Server) -> None:
    """Mirrors test_a_copy_past_its_delay_bound_gets_a_twin_and_the_first_to_finish_wins."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", delay_bound_s=60)
    h1, h2 = await d.volunteers(srv, 2)
    [a1] = await d.request_work(srv, h1)
    async with srv.engine.begin() as conn:
        await conn.execute(
            update(Task).where(Task.uid == a1.task_uid).values(started_at=Task.started_at - 61)
        )
    await leases.reap(srv)
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    [a2] = await d.request_work(srv, h2)
    assert a2.job_uid == job["uid"]
    # the slow copy finishes first after all: the job completes, the twin is stopped
    assert await d.report(srv, a1.task_uid, GOOD) == "COMPLETED"
    assert (await d.heartbeat(srv, h2, [a2.task_uid])).cancel == [a2.task_uid]
    assert (await d.job(srv, job["uid"]))["copies_sent"] == 2


async def test_higher_priority_runs_first_and_a_level_bounds_the_priority_it_may_ask(domain: Server) -> None:
    """Mirrors test_higher_priority_runs_first_and_a_level_bounds_the_priority_it_may_ask."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    low = await d.submit(srv, admin, "sim", priority=-5)
    normal = await d.submit(srv, admin, "sim")
    urgent = await d.submit(srv, admin, "sim", priority=50)
    [host] = await d.volunteers(srv, 1)
    got = [a.job_uid for a in await d.request_work(srv, host, capacity=3)]
    assert got == [urgent["uid"], normal["uid"], low["uid"]]
    alice = await d.add_user(srv, "alice")
    with pytest.raises(Forbidden, match="STANDARD"):
        await d.submit(srv, alice, "sim", priority=1)
    with pytest.raises(BadRequest, match="priority"):
        await d.submit(srv, alice, "sim", priority="high")
    assert len(await jobs.list_jobs(srv, admin)) == 3


async def test_fair_share_lets_a_small_owner_run_beside_a_big_one(domain: Server) -> None:
    """Mirrors test_fair_share_lets_a_small_owner_run_beside_a_big_one."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "shared")
    big = await d.add_user(srv, "big")
    small = await d.add_user(srv, "small")
    await d.submit_many(srv, big, [{"app": "shared"}] * 1000)
    [host] = await d.volunteers(srv, 1)
    first = await d.request_work(srv, host, capacity=50)  # the big owner's: nobody else's queued
    small_jobs = await d.submit_many(srv, small, [{"app": "shared"}] * 10)
    owners = {j["uid"]: "small" for j in small_jobs}
    got = [a.job_uid for a in await d.request_work(srv, host, capacity=20)]
    assert len(first) == 50
    # the small owner's 10 jobs are among the next 20, interleaved with the big owner's
    assert sum(owners.get(uid) == "small" for uid in got) == 10
    assert owners.get(got[0]) is None or owners.get(got[1]) is None


async def test_jobs_that_cannot_run_say_why_in_listings_and_at_submission(domain: Server) -> None:
    """Mirrors test_jobs_that_cannot_run_say_why_in_listings_and_at_submission."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    submitted = await d.submit(srv, admin, "sim", min_quorum=3)
    assert submitted["pending_reason"] == "no worker is connected"  # the submitter hears at once
    h1, h2 = await d.volunteers(srv, 2)
    listed = await d.job_list(srv, admin)
    assert listed[submitted["uid"]]["pending_reason"] == (
        "its results must agree on 3 distinct hosts and 2 connected worker(s) may run it; it waits for more"
    )
    runnable = await d.submit(srv, admin, "sim")
    assert "pending_reason" not in runnable
    bound = await d.submit(srv, admin, "sim", expected_host_uid=h2)
    assert "pending_reason" not in bound
    await hosts.remove(srv, admin, h2)
    assert (await d.job(srv, bound["uid"]))["pending_reason"] == (
        "the one host it may run on (expected_host_uid) was removed; it can never run"
    )
    listed = await d.job_list(srv, admin)
    assert "pending_reason" not in listed[runnable["uid"]]
    assert listed[bound["uid"]]["pending_reason"].endswith("it can never run")
    assert h1


async def test_a_job_goes_only_to_a_host_with_its_tags_cores_and_gpus(domain: Server) -> None:
    """Mirrors test_a_job_goes_only_to_a_host_with_its_tags_cores_and_gpus (the refusal of a
    malformed tag stays with the HTTP test)."""
    srv = domain
    admin = await d.admin(srv)
    app = await d.insert_app(srv, admin, "render", tags=["gpu"])
    assert app["tags"] == ["gpu"]
    plain_host = await d.register(srv, name="plain")  # 4 cores, no tag, no GPU
    job = await d.submit(srv, admin, "render", tags=["site-a"], min_cores=8)
    assert (job["tags"], job["min_cores"]) == (["gpu", "site-a"], 8)  # the app's and its own
    assert job["pending_reason"].startswith("no connected worker offers what it requires: 8 cores")
    assert await d.request_work(srv, plain_host) == []
    # a host with the tags but too few cores, then one with all it needs
    small = await d.register(srv, name="small", cores=4, tags=["gpu", "site-a"])
    assert await d.request_work(srv, small) == []
    big = await d.register(srv, name="big", cores=16, tags=["gpu", "site-a", "bigmem"], gpus=["A100"])
    [a] = await d.request_work(srv, big)
    assert a.job_uid == job["uid"]
    gpu_job = await d.submit(srv, admin, "render", min_gpus=2)
    assert gpu_job["pending_reason"].startswith(
        "no connected worker offers what it requires: 0 cores, 2 GPUs"
    )
