"""Replicated jobs: copies to distinct hosts, quorum by result digests, caps, adaptive trust,
deadlines and aborts; and the queue's order (priority, fair share). The workers here are
the test speaking the worker protocol, so each copy's result is exactly what a test wants:
an honest one or a cheat's. They run on SQLite (two also on PostgreSQL and MariaDB);
tests/unit/test_domain_replication.py holds their scenarios on every database through the
server's functions."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from helpers import domain
from sqlalchemy import select, update

from xwcommon.protocol.work import Gpu, Registered, Registration
from xwserver import leases, validation
from xwserver.db.models import Host, Task

if TYPE_CHECKING:
    from conftest import XW


def result_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def inline(content: bytes) -> dict[str, str]:
    return {"content_b64": base64.b64encode(content).decode(), "sha256": hashlib.sha256(content).hexdigest()}


async def report(
    xw: XW, host: str, task_uid: str, files: dict[str, bytes] | None, *, status: str = "COMPLETED"
) -> Any:
    """A copy's report alone (``POST /work/tasks/{uid}/report``: no new work claimed with it)."""
    rep: dict[str, Any] = {
        "status": status,
        "exit_code": 0 if status == "COMPLETED" else 1,
        "accounting": {"cpu_user_s": 2.0, "cpu_system_s": 0.5, "wall_s": 3.0},
    }
    if files is not None:
        rep["result_inline"] = inline(result_zip(files))
    body = await xw.ok("POST", f"/work/tasks/{task_uid}/report", token=xw.worker, json=rep)
    return body["job_status"]


async def hosts(xw: XW, n: int) -> list[str]:
    return [await xw.register(name=f"volunteer-{i}") for i in range(n)]


async def copies(xw: XW, job_uid: str) -> list[dict[str, Any]]:
    return await domain.copies(xw.srv, job_uid)


GOOD = {"stdout.txt": b"42\n", "out.dat": b"the answer"}
BAD = {"stdout.txt": b"41\n", "out.dat": b"a wrong answer"}


async def test_a_quorum_of_two_completes_when_two_hosts_agree_and_never_sends_both_copies_to_one_host(
    xw: XW,
) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", min_quorum=2)
    assert (job["min_quorum"], job["target_results"], job["status"]) == (2, 2, "PENDING")
    h1, h2 = await hosts(xw, 2)
    [a1] = await xw.request_work(h1, capacity=4)
    assert await xw.request_work(h1, capacity=4) == []  # its second copy is for another host
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    [a2] = await xw.request_work(h2)
    assert a2["job_uid"] == a1["job_uid"] == job["uid"]
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"

    assert await report(xw, h1, a1["task_uid"], GOOD) == "WAITING"
    shown = await xw.job(job["uid"])
    assert (shown["status"], shown["results"], shown["result_uid"]) == ("WAITING", 1, None)
    assert await report(xw, h2, a2["task_uid"], GOOD) == "COMPLETED"
    done = await xw.job(job["uid"])
    assert (done["status"], done["copies_sent"], done["results"]) == ("COMPLETED", 2, 2)
    assert done["message"] == "2 of 2 results agree"
    assert done["result_uid"] is not None
    assert [c["validity"] for c in await copies(xw, job["uid"])] == ["valid", "valid"]
    await xw.assert_healthy()


@pytest.mark.every_database
async def test_results_that_disagree_send_another_copy_and_the_minority_is_invalid(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", min_quorum=2)
    h1, h2, h3 = await hosts(xw, 3)
    [a1] = await xw.request_work(h1)
    [a2] = await xw.request_work(h2)
    assert await report(xw, h1, a1["task_uid"], GOOD) == "WAITING"
    assert await report(xw, h2, a2["task_uid"], BAD) == "PENDING"  # 1 against 1: a third copy
    [a3] = await xw.request_work(h3)
    assert a3["job_uid"] == job["uid"]
    assert await report(xw, h3, a3["task_uid"], GOOD) == "COMPLETED"
    verdicts = [c["validity"] for c in await copies(xw, job["uid"])]
    assert verdicts == ["valid", "invalid", "valid"]
    # the canonical result is an honest copy's: its bytes are GOOD's
    done = await xw.job(job["uid"])
    body = await xw.ok("GET", f"/data/{done['result_uid']}/content", token=xw.admin)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("out.dat") == b"the answer"
    async with xw.srv.engine.connect() as conn:
        streaks = dict((await conn.execute(select(Host.uid, Host.valid_streak))).all())
    assert (streaks[h1], streaks[h2], streaks[h3]) == (1, 0, 1)
    # credit: the CPU seconds of valid results, per host (xwworkers) and per volunteer (xwusers)
    shown = {h["uid"]: h for h in (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]}
    assert [
        (shown[h]["credit_cpu_s"], shown[h]["valid_results"], shown[h]["invalid_results"])
        for h in (h1, h2, h3)
    ] == [
        (2.5, 1, 0),
        (0.0, 0, 1),
        (2.5, 1, 0),
    ]
    users = {u["login"]: u for u in (await xw.ok("GET", "/users", token=xw.admin))["users"]}
    worker = next(u for u in users.values() if u["rights"] == "WORKER")
    assert (worker["credit_cpu_s"], worker["valid_results"], worker["invalid_results"]) == (5.0, 2, 1)


async def test_too_many_failed_copies_end_the_job_in_error_with_the_reason(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", min_quorum=2, max_error_results=1)
    h = await hosts(xw, 4)
    [a1] = await xw.request_work(h[0])
    [a2] = await xw.request_work(h[1])
    assert await report(xw, h[0], a1["task_uid"], None, status="ERROR") == "PENDING"
    [a3] = await xw.request_work(h[2])
    assert await report(xw, h[1], a2["task_uid"], None, status="ERROR") == "ERROR"
    shown = await xw.job(job["uid"])
    assert shown["status"] == "ERROR" and "max_error_results (1)" in shown["message"]
    assert [c["status"] for c in await copies(xw, job["uid"])] == ["ERROR", "ERROR", "ABORTED"]
    # the copy still out is told to stop at its next heartbeat
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": h[2], "task_uids": [a3["task_uid"]]}
    )
    assert beat["cancel"] == [a3["task_uid"]]


async def test_no_quorum_within_max_total_results_is_an_error(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", min_quorum=2, max_total_results=3)
    h = await hosts(xw, 3)
    for i, files in enumerate(({"r": b"1"}, {"r": b"2"}, {"r": b"3"})):
        [a] = await xw.request_work(h[i])
        status = await report(xw, h[i], a["task_uid"], files)
    assert status == "ERROR"
    shown = await xw.job(job["uid"])
    assert "max_total_results (3)" in shown["message"] and shown["copies_sent"] == 3


async def test_volatile_files_are_left_out_of_the_comparison(xw: XW) -> None:
    data = await xw.upload(xw.admin, b"#!/bin/sh\necho 42\n", name="sim")
    await xw.ok(
        "POST",
        "/apps",
        token=xw.admin,
        json={
            "name": "sim",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": data["uid"]}],
            "min_quorum": 2,
            "volatile": ["stderr.txt", "*.log"],
        },
    )
    job = await xw.submit(xw.admin, "sim")
    assert job["min_quorum"] == 2  # the app's
    h1, h2 = await hosts(xw, 2)
    [a1] = await xw.request_work(h1)
    [a2] = await xw.request_work(h2)
    await report(xw, h1, a1["task_uid"], {**GOOD, "stderr.txt": b"took 1.2 s", "run.log": b"t=1"})
    assert await report(xw, h2, a2["task_uid"], {**GOOD, "stderr.txt": b"took 3.4 s", "run.log": b"t=2"}) == (
        "COMPLETED"
    )


async def test_a_lost_copy_is_sent_again_to_another_host(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", min_quorum=2)
    h1, h2, h3 = await hosts(xw, 3)
    [a1] = await xw.request_work(h1)
    [a2] = await xw.request_work(h2)
    async with xw.srv.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.uid == a1["task_uid"]).values(lease_expires_at=0))
    await leases.reap(xw.srv)
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    assert await xw.request_work(h2) == []  # h2 holds a copy already
    [a3] = await xw.request_work(h3)
    assert await report(xw, h2, a2["task_uid"], GOOD) == "WAITING"
    assert await report(xw, h3, a3["task_uid"], GOOD) == "COMPLETED"
    assert [c["status"] for c in await copies(xw, job["uid"])] == ["LOST", "COMPLETED", "COMPLETED"]


def test_a_result_digest_ignores_volatile_files_and_names_order_and_sees_any_other_change(
    tmp_path: Any,
) -> None:
    def digest(files: dict[str, bytes], volatile: tuple[str, ...] = ()) -> str:
        path = tmp_path / "r.zip"
        path.write_bytes(result_zip(files))
        return validation.result_digest(path, volatile)

    base = digest({"a": b"1", "b": b"2"})
    assert digest({"b": b"2", "a": b"1"}) == base
    assert digest({"a": b"1", "b": b"3"}) != base
    assert digest({"a": b"1", "c": b"2"}) != base  # a renamed file is a change
    assert digest({"a": b"1", "b": b"2", "x.log": b"t"}, ("*.log",)) == base
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert validation.result_digest(bad) == validation.UNREADABLE
    assert validation.result_digest(None) == validation.NO_RESULT


def test_unreadable_results_agree_with_nothing() -> None:
    job = validation.JobState(1, "WAITING", 2, 3, 10, 0, 2, False)
    copies = [
        validation.Copy(1, 10, "COMPLETED", validation.UNREADABLE, None, 0),
        validation.Copy(2, 11, "COMPLETED", validation.UNREADABLE, None, 0),
    ]
    decision = validation.decide(job, copies)
    assert decision is not None and decision.status.value == "PENDING" and decision.unsent == 2


async def test_a_trusted_host_runs_replicated_jobs_alone_until_it_returns_an_invalid_result(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    h1, h2, h3 = await hosts(xw, 3)
    async with xw.srv.engine.begin() as conn:  # a record so long that 1 - 1/N is 1 in practice
        await conn.execute(update(Host).where(Host.uid == h1).values(valid_streak=2**31 - 1))
    alone = await xw.submit(xw.admin, "sim", min_quorum=2)
    [a] = await xw.request_work(h1)
    assert await report(xw, h1, a["task_uid"], BAD) == "COMPLETED"
    shown = await xw.job(alone["uid"])
    assert (shown["trusted"], shown["copies_sent"]) == (True, 1)

    # h1 now disagrees with two honest hosts on a replicated job: its record is reset, and
    # the job it ran alone goes back to the queue, for two other hosts
    xw.srv.hosts = type(xw.srv.hosts)()
    checked = await xw.submit(xw.admin, "sim", min_quorum=2)
    async with xw.srv.engine.begin() as conn:
        await conn.execute(update(Host).where(Host.uid == h1).values(valid_streak=0))
    [b1] = await xw.request_work(h2)
    assert b1["job_uid"] == checked["uid"]
    [b2] = await xw.request_work(h1)
    assert b2["job_uid"] == checked["uid"]
    await report(xw, h1, b2["task_uid"], BAD)
    assert await report(xw, h2, b1["task_uid"], GOOD) == "PENDING"
    assert (await xw.job(alone["uid"]))["status"] == "COMPLETED"  # h1 is not known to cheat yet
    [b3] = await xw.request_work(h3)
    assert b3["job_uid"] == checked["uid"]
    assert await report(xw, h3, b3["task_uid"], GOOD) == "COMPLETED"  # now h1's result is invalid
    reopened = await xw.job(alone["uid"])
    assert (reopened["status"], reopened["trusted"], reopened["result_uid"]) == ("PENDING", False, None)
    assert reopened["message"].startswith("sent again")
    assert await xw.request_work(h1) == []  # not back to the host that cheated
    [c2] = await xw.request_work(h2)
    assert c2["job_uid"] == alone["uid"]
    assert await report(xw, h2, c2["task_uid"], GOOD) == "PENDING"  # h1's old BAD against GOOD
    [c3] = await xw.request_work(h3)
    assert await report(xw, h3, c3["task_uid"], GOOD) == "COMPLETED"
    verdicts = {c["host_id"]: c["validity"] for c in await copies(xw, alone["uid"])}
    assert sorted(verdicts.values(), key=str) == ["invalid", "valid", "valid"]


def test_a_host_is_trusted_only_after_its_record_is_long_enough() -> None:
    import random

    rng = random.Random(7)
    assert not any(validation.sends_alone(validation.TRUST_AFTER - 1, rng) for _ in range(1000))
    share = sum(validation.sends_alone(20, rng) for _ in range(20_000)) / 20_000
    assert abs(share - (1 - 1 / 20)) < 0.01


@pytest.mark.every_database
async def test_an_aborted_job_ends_aborted_is_kept_and_its_running_copy_is_cancelled(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    running = await xw.submit(xw.admin, "sim")
    queued = await xw.submit(xw.admin, "sim")
    [host] = await hosts(xw, 1)
    [a] = await xw.request_work(host)
    body = await xw.ok(
        "POST", "/jobs/abort", token=xw.admin, json={"uids": [running["uid"], queued["uid"], running["uid"]]}
    )
    assert sorted(body["aborted"]) == sorted([running["uid"], queued["uid"]]) and body["missing"] == []
    for uid in (running["uid"], queued["uid"]):
        shown = await xw.job(uid)
        assert shown["status"] == "ABORTED" and shown["message"] == "aborted by admin"
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": [a["task_uid"]]}
    )
    assert beat["cancel"] == [a["task_uid"]]
    again = await xw.ok("POST", "/jobs/abort", token=xw.admin, json={"uids": [running["uid"]]})
    assert again["aborted"] == [] and "ABORTED already" in again["missing"][0]["reason"]
    other = await xw.add_user("mallory")
    refused = await xw.ok("POST", "/jobs/abort", token=other, json={"uids": [queued["uid"]]})
    assert refused["aborted"] == [] and refused["missing"][0]["reason"].startswith("not yours to abort")


async def test_a_copy_past_its_delay_bound_gets_a_twin_and_the_first_to_finish_wins(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    job = await xw.submit(xw.admin, "sim", delay_bound_s=60)
    h1, h2 = await hosts(xw, 2)
    [a1] = await xw.request_work(h1)
    async with xw.srv.engine.begin() as conn:
        await conn.execute(
            update(Task).where(Task.uid == a1["task_uid"]).values(started_at=Task.started_at - 61)
        )
    await leases.reap(xw.srv)
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    [a2] = await xw.request_work(h2)
    assert a2["job_uid"] == job["uid"]
    # the slow copy finishes first after all: the job completes, the twin is stopped
    assert await report(xw, h1, a1["task_uid"], GOOD) == "COMPLETED"
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": h2, "task_uids": [a2["task_uid"]]}
    )
    assert beat["cancel"] == [a2["task_uid"]]
    assert (await xw.job(job["uid"]))["copies_sent"] == 2


async def test_higher_priority_runs_first_and_a_level_bounds_the_priority_it_may_ask(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    low = await xw.submit(xw.admin, "sim", priority=-5)
    normal = await xw.submit(xw.admin, "sim")
    urgent = await xw.submit(xw.admin, "sim", priority=50)
    [host] = await hosts(xw, 1)
    got = [a["job_uid"] for a in await xw.request_work(host, capacity=3)]
    assert got == [urgent["uid"], normal["uid"], low["uid"]]
    alice = await xw.add_user("alice")
    r = await xw.call("POST", "/jobs", token=alice, json={"app": "sim", "priority": 1})
    assert r.status == 403 and "STANDARD" in r.body["message"]
    r = await xw.call("POST", "/jobs", token=alice, json={"app": "sim", "priority": "high"})
    assert r.status == 400 and "priority" in r.body["message"]


async def test_fair_share_lets_a_small_owner_run_beside_a_big_one(xw: XW) -> None:
    data = await xw.upload(xw.admin, b"#!/bin/sh\n", name="shared")
    await xw.ok(
        "POST",
        "/apps",
        token=xw.admin,
        json={"name": "shared", "binaries": [{"os": "any", "cpu": "any", "data_uid": data["uid"]}]},
    )
    big = await xw.add_user("big")
    small = await xw.add_user("small")
    await xw.ok("POST", "/jobs/bulk", token=big, json={"jobs": [{"app": "shared"}] * 1000})
    [host] = await hosts(xw, 1)
    first = await xw.request_work(host, capacity=50)  # the big owner's: nobody else's queued
    small_jobs = await xw.ok("POST", "/jobs/bulk", token=small, json={"jobs": [{"app": "shared"}] * 10})
    owners = {j["uid"]: "small" for j in small_jobs["jobs"]}
    got = [a["job_uid"] for a in await xw.request_work(host, capacity=20)]
    assert len(first) == 50
    # the small owner's 10 jobs are among the next 20, interleaved with the big owner's
    assert sum(owners.get(uid) == "small" for uid in got) == 10
    assert owners.get(got[0]) is None or owners.get(got[1]) is None


async def test_jobs_that_cannot_run_say_why_in_listings_and_at_submission(xw: XW) -> None:
    await xw.insert_app(xw.admin, "sim")
    submitted = await xw.submit(xw.admin, "sim", min_quorum=3)
    assert submitted["pending_reason"] == "no worker is connected"  # the submitter hears at once
    h1, h2 = await hosts(xw, 2)
    listed = {j["uid"]: j for j in (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"]}
    assert listed[submitted["uid"]]["pending_reason"] == (
        "its results must agree on 3 distinct hosts and 2 connected worker(s) may run it; it waits for more"
    )
    runnable = await xw.submit(xw.admin, "sim")
    assert "pending_reason" not in runnable
    bound = await xw.submit(xw.admin, "sim", expected_host_uid=h2)
    assert "pending_reason" not in bound
    await xw.ok("DELETE", f"/hosts/{h2}", token=xw.admin)
    assert (await xw.job(bound["uid"]))["pending_reason"] == (
        "the one host it may run on (expected_host_uid) was removed; it can never run"
    )
    listed = {j["uid"]: j for j in (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"]}
    assert "pending_reason" not in listed[runnable["uid"]]
    assert listed[bound["uid"]]["pending_reason"].endswith("it can never run")
    assert h1


COMPARE_SCRIPT = b"""#!/usr/bin/python3
# results agree when their out.txt numbers are within 0.001 of each other
import sys
a, b = (float(open(f"{d}/out.txt").read()) for d in sys.argv[1:3])
sys.exit(0 if abs(a - b) < 0.001 else 1)
"""


async def wait_status(xw: XW, uid: str, wanted: str, timeout_s: float = 30.0) -> dict[str, Any]:
    import asyncio
    import time

    end = time.monotonic() + timeout_s
    while True:
        job = await xw.job(uid)
        if job["status"] == wanted or time.monotonic() > end:
            return job
        await asyncio.sleep(0.1)


async def test_a_comparison_program_judges_fuzzy_results_in_the_sandbox(xw: XW) -> None:
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: the server runs no comparison program without it")
    binary = await xw.upload(xw.admin, b"#!/bin/sh\necho 1\n", name="fuzzy")
    program = await xw.upload(xw.admin, COMPARE_SCRIPT, name="compare.sh")
    app = await xw.ok(
        "POST",
        "/apps",
        token=xw.admin,
        json={
            "name": "fuzzy",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": binary["uid"]}],
            "min_quorum": 2,
            "comparator_uid": program["uid"],
        },
    )
    assert app["comparator_uid"] == program["uid"] and app["min_quorum"] == 2
    close = await xw.submit(xw.admin, "fuzzy")
    apart = await xw.submit(xw.admin, "fuzzy")
    h1, h2, h3 = await hosts(xw, 3)
    a1, b1 = await xw.request_work(h1, capacity=2)
    a2, b2 = await xw.request_work(h2, capacity=2)
    assert {a1["job_uid"], b1["job_uid"]} == {close["uid"], apart["uid"]}
    by_job = {a1["job_uid"]: (a1, a2), b1["job_uid"]: (b1, b2)}
    one, two = by_job[close["uid"]]
    await report(xw, h1, one["task_uid"], {"out.txt": b"1.00001"})
    await report(xw, h2, two["task_uid"], {"out.txt": b"1.00002"})
    done = await wait_status(xw, close["uid"], "COMPLETED")
    assert done["status"] == "COMPLETED" and done["message"] == "2 of 2 results agree"
    one, two = by_job[apart["uid"]]
    await report(xw, h1, one["task_uid"], {"out.txt": b"1.0"})
    await report(xw, h2, two["task_uid"], {"out.txt": b"2.0"})
    waiting = await wait_status(xw, apart["uid"], "PENDING")
    assert waiting["status"] == "PENDING" and waiting["results"] == 2  # a third copy to settle it
    [c3] = await xw.request_work(h3)
    await report(xw, h3, c3["task_uid"], {"out.txt": b"2.0004"})
    settled = await wait_status(xw, apart["uid"], "COMPLETED")
    assert settled["status"] == "COMPLETED"
    verdicts = [c["validity"] for c in await copies(xw, apart["uid"])]
    assert verdicts == ["invalid", "valid", "valid"]
    # a comparison program runs on the server: a STANDARD user may not name one
    alice = await xw.add_user("alice")
    mine = await xw.upload(alice, COMPARE_SCRIPT, name="compare.sh")
    r = await xw.call(
        "POST",
        "/apps",
        token=alice,
        json={
            "name": "alices",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": mine["uid"]}],
            "comparator_uid": mine["uid"],
        },
    )
    assert r.status == 403 and "ADVANCED" in r.body["message"]


async def test_fair_share_weighs_owners_by_the_cpu_their_jobs_used(xw: XW) -> None:
    data = await xw.upload(xw.admin, b"#!/bin/sh\n", name="shared")
    await xw.ok(
        "POST",
        "/apps",
        token=xw.admin,
        json={"name": "shared", "binaries": [{"os": "any", "cpu": "any", "data_uid": data["uid"]}]},
    )
    heavy, light = await xw.add_user("heavy"), await xw.add_user("light")
    [host] = await hosts(xw, 1)
    # a history: the heavy owner's jobs took 10 CPU seconds each, the light one's 1
    for token, cpu in ((heavy, 10.0), (light, 1.0)):
        await xw.ok("POST", "/jobs/bulk", token=token, json={"jobs": [{"app": "shared"}] * 5})
        for a in await xw.request_work(host, capacity=5):
            rep = {"status": "COMPLETED", "exit_code": 0, "accounting": {"cpu_user_s": cpu, "wall_s": cpu}}
            await xw.ok("POST", f"/work/tasks/{a['task_uid']}/report", token=xw.worker, json=rep)
    owners: dict[str, str] = {}
    for token, who in ((heavy, "heavy"), (light, "light")):
        body = await xw.ok("POST", "/jobs/bulk", token=token, json={"jobs": [{"app": "shared"}] * 100})
        owners.update({j["uid"]: who for j in body["jobs"]})
    got = [owners[a["job_uid"]] for a in await xw.request_work(host, capacity=33)]
    # weights 10/5.5 and 1/5.5: the light owner gets about ten jobs for each of the heavy one's
    assert got.count("light") >= 25 and got.count("heavy") >= 1, got


async def test_a_job_goes_only_to_a_host_with_its_tags_cores_and_gpus(xw: XW) -> None:
    data = await xw.upload(xw.admin, b"#!/bin/sh\n", name="render")
    app = await xw.ok(
        "POST",
        "/apps",
        token=xw.admin,
        json={
            "name": "render",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": data["uid"]}],
            "tags": ["gpu"],
        },
    )
    assert app["tags"] == ["gpu"]
    plain_host = await xw.register(name="plain")  # 4 cores, no tag, no GPU
    job = await xw.submit(xw.admin, "render", tags=["site-a"], min_cores=8)
    assert (job["tags"], job["min_cores"]) == (["gpu", "site-a"], 8)  # the app's and its own
    assert job["pending_reason"].startswith("no connected worker offers what it requires: 8 cores")
    assert await xw.request_work(plain_host) == []
    # a host with the tags but too few cores, then one with all it needs
    small = Registration(
        name="small",
        os="linux",
        cpu="x86_64",
        cores=4,
        memory_bytes=8 << 30,
        disk_free_bytes=100 << 30,
        tags=["gpu", "site-a"],
        version="test",
    )
    small_uid = Registered.from_wire(
        await xw.ok("POST", "/work/register", token=xw.worker, json=small.to_wire())
    ).host_uid
    assert await xw.request_work(small_uid) == []
    big = Registration(
        name="big",
        os="linux",
        cpu="x86_64",
        cores=16,
        memory_bytes=8 << 30,
        disk_free_bytes=100 << 30,
        tags=["gpu", "site-a", "bigmem"],
        gpus=[Gpu(name="A100")],
        version="test",
    )
    big_uid = Registered.from_wire(
        await xw.ok("POST", "/work/register", token=xw.worker, json=big.to_wire())
    ).host_uid
    [a] = await xw.request_work(big_uid)
    assert a["job_uid"] == job["uid"]
    gpu_job = await xw.submit(xw.admin, "render", min_gpus=2)
    assert gpu_job["pending_reason"].startswith(
        "no connected worker offers what it requires: 0 cores, 2 GPUs"
    )
    r = await xw.call("POST", "/jobs", token=xw.admin, json={"app": "render", "tags": ["has space"]})
    assert r.status == 400 and "tags" in r.body["message"]


async def test_replication_fields_that_contradict_each_other_answer_422_naming_both_and_store_nothing(
    xw: XW,
) -> None:
    """Each value is valid by the API's document; together they cannot be honoured: 422
    (well-formed, not processable), never a 400 that says the request was malformed."""
    app = await xw.insert_app(xw.admin, "sim")
    binaries = [{"os": "any", "cpu": "any", "data_uid": app["binaries"][0]["data_uid"]}]
    for spec, names in [
        (
            {"target_results": 13, "max_total_results": 2},
            ('"max_total_results" (2)', '"target_results" (13)'),
        ),
        ({"min_quorum": 3, "target_results": 2}, ('"target_results" (2)', '"min_quorum" (3)')),
    ]:
        r = await xw.call(
            "POST", "/apps", token=xw.admin, json={"name": "sim2", "binaries": binaries, **spec}
        )
        assert r.status == 422 and r.body["error"] == "unprocessable", r.body
        assert all(name in r.body["message"] for name in names), r.body
        r = await xw.call("POST", "/jobs", token=xw.admin, json={"app": "sim", **spec})
        assert r.status == 422 and r.body["error"] == "unprocessable", r.body
    apps = await xw.ok("GET", "/apps", token=xw.admin)
    assert [a["name"] for a in apps["apps"]] == ["sim"]
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []
