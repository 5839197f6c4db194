"""The server's contract on every database, through the server's functions: a job's statuses,
submissions alone and in bulk, the claim (each job once, capacity, platforms, binaries, a
waiting request woken), leases (heartbeats, held tasks, expiry, retries, late reports, release),
results and inputs as a worker may read them, what keeps a job pending, and exact names. Each
test mirrors one of tests/unit/test_server_contract.py, whose HTTP versions run on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from helpers import domain as d
from sqlalchemy import update

from xwcommon.errors import AuthenticationError, NotFound, TaskGone, XWError
from xwcommon.protocol.work import Assignment
from xwcommon.status import JobStatus, TaskStatus, check_job_transition, check_task_transition
from xwserver import apps, hosts, jobs, leases, objects, users
from xwserver.db.models import Host
from xwserver.state import Server


async def _one_running_job(
    srv: Server, app: str = "work", **spec: Any
) -> tuple[dict[str, Any], str, Assignment]:
    """Submit a job (as admin) and have a fresh host claim it: (job, host_uid, assignment)."""
    job = await d.submit(srv, await d.admin(srv), app, **spec)
    host = await d.register(srv)
    got = await d.request_work(srv, host)
    assert [a.job_uid for a in got] == [job["uid"]]
    return job, host, got[0]


def _end(task: dict[str, Any]) -> float:
    """When a task's lease ends, as a clock reading."""
    return datetime.fromisoformat(task["lease_expires_at"]).timestamp()


# -- statuses ---------------------------------------------------------------------------------------------
async def test_a_job_lifecycle_only_takes_transitions_the_status_table_allows(domain: Server) -> None:
    """Mirrors test_a_job_lifecycle_only_takes_transitions_the_status_table_allows."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work", max_retry=2)
    seen = [job["status"]]
    host = await d.register(srv)
    [first] = await d.request_work(srv, host)
    seen.append((await d.job(srv, job["uid"]))["status"])
    await leases.reap(srv, now=d.later(srv))
    seen.append((await d.job(srv, job["uid"]))["status"])
    [second] = await d.request_work(srv, host)
    seen.append((await d.job(srv, job["uid"]))["status"])
    await d.report(srv, second.task_uid, exit_code=0)
    seen.append((await d.job(srv, job["uid"]))["status"])

    assert seen == ["PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    for old, new in zip(seen, seen[1:], strict=False):
        check_job_transition(JobStatus(old), JobStatus(new))
    tasks = {t["uid"]: t["status"] for t in await d.tasks(srv, job["uid"])}
    assert tasks == {first.task_uid: "LOST", second.task_uid: "COMPLETED"}
    for status in tasks.values():
        check_task_transition(TaskStatus.RUNNING, TaskStatus(status))


async def test_a_final_task_is_refused_a_second_final_status(domain: Server) -> None:
    """Mirrors test_a_final_task_is_refused_a_second_final_status."""
    srv = domain
    await d.insert_app(srv, await d.admin(srv), "work")
    job, _host, a = await _one_running_job(srv)
    await d.report(srv, a.task_uid, status="ERROR", exit_code=2, message="boom")
    with pytest.raises(TaskGone):
        await d.report(srv, a.task_uid, status="COMPLETED", exit_code=0)
    after = await d.job(srv, job["uid"])
    assert (after["status"], after["exit_code"], after["message"]) == ("ERROR", 2, "boom")


# -- submission --------------------------------------------------------------------------------------------
async def test_a_submitted_job_is_pending_with_what_was_asked(domain: Server) -> None:
    """Mirrors test_a_submitted_job_is_pending_with_what_was_asked (the URI in a path is the
    HTTP test's: here a job is found by its URI as the handler gets it, decoded)."""
    srv = domain
    admin = await d.admin(srv)
    app = await d.insert_app(srv, admin, "work")
    job = await d.submit(srv, admin, "work", args="-n 3 'two words'", label="batch-1")
    assert job["status"] == "PENDING"
    assert job["args"] == ["-n", "3", "two words"]
    assert (job["label"], job["app_uid"], job["app_name"]) == ("batch-1", app["uid"], "work")
    assert (job["retry"], job["max_retry"]) == (0, srv.settings.max_retry)
    assert job["uri"] == f"xw://{srv.settings.netloc}/{job['uid']}"
    assert job["access_rights"] == app["access_rights"]
    # shown alone, a PENDING job also says what keeps it from running: here, no worker yet
    assert await d.job(srv, job["uid"]) == {**job, "pending_reason": "no worker is connected"}
    assert (await d.job(srv, job["uri"]))["uid"] == job["uid"]


async def test_a_bulk_submission_keeps_the_order_of_its_jobs(domain: Server) -> None:
    """Mirrors test_a_bulk_submission_keeps_the_order_of_its_jobs."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    specs: list[dict[str, Any]] = [
        {"app": "work", "args": [str(i)], "label": f"job-{i:03d}"} for i in range(60)
    ]
    created = await d.submit_many(srv, admin, specs)
    assert [j["label"] for j in created] == [s["label"] for s in specs]
    assert [j["args"] for j in created] == [s["args"] for s in specs]
    assert len({j["uid"] for j in created}) == len(specs)
    listed = await jobs.list_jobs(srv, admin)
    assert [j["uid"] for j in listed] == [j["uid"] for j in created]


async def test_a_bulk_with_one_bad_job_inserts_nothing(domain: Server) -> None:
    """Mirrors test_a_bulk_with_one_bad_job_inserts_nothing (the HTTP status each error maps to)."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    good: list[dict[str, Any]] = [{"app": "work", "label": f"ok-{i}"} for i in range(4)]
    for bad, status, words in [
        ({"app": "work", "max_retry": "x"}, 400, ["job #4", "max_retry"]),
        ({"app": "no-such-app"}, 404, ["no-such-app"]),
        ({"app": "work", "args": [1, 2]}, 400, ["job #4", "args"]),
        ({"app": "work", "stdin_uid": str(uuid.uuid4())}, 404, ["no data"]),
    ]:
        with pytest.raises(XWError) as refused:
            await d.submit_many(srv, admin, [*good, bad])
        assert refused.value.http_status == status, refused.value
        for word in words:
            assert word in str(refused.value), refused.value
    assert await jobs.list_jobs(srv, admin) == []
    host = await d.register(srv)
    assert await d.request_work(srv, host, capacity=10) == []


# -- the claim ----------------------------------------------------------------------------------------------
async def test_concurrent_work_requests_get_each_job_exactly_once(domain: Server) -> None:
    """Mirrors test_concurrent_work_requests_get_each_job_exactly_once."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    submitted = {j["uid"] for j in await d.submit_many(srv, admin, [{"app": "work"}] * 7)}
    hosts_ = [await d.register(srv, name=f"h{i}") for i in range(12)]

    answers = await asyncio.gather(*(d.request_work(srv, h, capacity=2) for h in hosts_))

    assigned = [a.job_uid for got in answers for a in got]
    assert sorted(assigned) == sorted(submitted)  # every job once, none twice
    assert all(len(got) <= 2 for got in answers)
    for uid in submitted:
        assert (await d.job(srv, uid))["status"] == "RUNNING"
        assert [t["status"] for t in await d.tasks(srv, uid)] == ["RUNNING"]
    assert await d.request_work(srv, hosts_[0], capacity=5) == []


async def test_a_work_request_gets_at_most_its_capacity(domain: Server) -> None:
    """Mirrors test_a_work_request_gets_at_most_its_capacity."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    await d.submit_many(srv, admin, [{"app": "work"}] * 5)
    host = await d.register(srv)
    assert len(await d.request_work(srv, host, capacity=3)) == 3
    assert len(await d.request_work(srv, host, capacity=3)) == 2
    assert await d.request_work(srv, host, capacity=3) == []


async def test_a_host_only_gets_apps_with_a_binary_for_its_platform(domain: Server) -> None:
    """Mirrors test_a_host_only_gets_apps_with_a_binary_for_its_platform."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "mac-only", [("darwin", "x86_64")])
    await d.insert_app(srv, admin, "arm-only", [("linux", "aarch64")])
    await d.insert_app(srv, admin, "script", [("any", "any")])
    await d.insert_app(srv, admin, "linux-any-cpu", [("linux", "any")])
    submitted = {
        name: (await d.submit(srv, admin, name))["uid"] for name in ("mac-only", "arm-only", "script")
    }
    submitted["linux-any-cpu"] = (await d.submit(srv, admin, "linux-any-cpu"))["uid"]

    linux = await d.register(srv, os_name="LINUX", cpu="AMD64")  # XWHEP's names
    got = await d.request_work(srv, linux, capacity=10)
    assert {a.app_name for a in got} == {"script", "linux-any-cpu"}

    mac = await d.register(srv, os_name="MACOSX", cpu="x86_64")
    got = await d.request_work(srv, mac, capacity=10)
    assert [a.job_uid for a in got] == [submitted["mac-only"]]

    arm = await d.register(srv, os_name="linux", cpu="arm64")
    got = await d.request_work(srv, arm, capacity=10)
    assert [a.job_uid for a in got] == [submitted["arm-only"]]


async def test_the_most_specific_binary_is_assigned(domain: Server) -> None:
    """Mirrors test_the_most_specific_binary_is_assigned."""
    srv = domain
    admin = await d.admin(srv)
    app = await d.insert_app(srv, admin, "multi", [("any", "any"), ("linux", "x86_64")])
    sha = {(b["os"], b["cpu"]): b["sha256"] for b in app["binaries"]}
    await d.submit_many(srv, admin, [{"app": "multi"}] * 2)
    [on_linux] = await d.request_work(srv, await d.register(srv, os_name="linux", cpu="x86_64"))
    [on_windows] = await d.request_work(srv, await d.register(srv, os_name="WIN32", cpu="x86_64"))
    assert on_linux.binary.sha256 == sha[("linux", "x86_64")]
    assert on_windows.binary.sha256 == sha[("any", "any")]


async def test_a_waiting_work_request_gets_a_job_submitted_after_it_started(domain: Server) -> None:
    """Mirrors test_a_waiting_work_request_gets_a_job_submitted_after_it_started."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    host = await d.register(srv)
    # with nothing to do, a request waits its wait_s and answers empty
    started = time.monotonic()
    assert await d.request_work(srv, host, wait_s=0.3) == []
    assert time.monotonic() - started >= 0.3

    wait_s = 20.0
    started = time.monotonic()
    waiting = asyncio.create_task(d.request_work(srv, host, wait_s=wait_s))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # nothing to do yet: it waits
    job = await d.submit(srv, admin, "work")
    got = await asyncio.wait_for(waiting, wait_s)
    assert [a.job_uid for a in got] == [job["uid"]]
    assert time.monotonic() - started < wait_s


# -- leases ---------------------------------------------------------------------------------------------------
async def test_a_heartbeat_extends_the_lease_and_names_unknown_tasks_to_cancel(domain: Server) -> None:
    """Mirrors test_a_heartbeat_extends_the_lease_and_names_unknown_tasks_to_cancel."""
    srv = domain
    await d.insert_app(srv, await d.admin(srv), "work")
    job, host, a = await _one_running_job(srv)
    [before] = await d.tasks(srv, job["uid"])
    await asyncio.sleep(0.05)
    stranger = str(uuid.uuid4())
    beat = await d.heartbeat(srv, host, [a.task_uid, stranger])
    assert beat.cancel == [stranger]
    assert beat.lease_s == srv.settings.lease_s
    [after] = await d.tasks(srv, job["uid"])
    assert after["lease_expires_at"] > before["lease_expires_at"]
    # past the first lease's end, the extended one is still live
    assert await leases.reap(srv, now=_end(before) + 0.01) == 0
    assert [t["status"] for t in await d.tasks(srv, job["uid"])] == ["RUNNING"]


async def test_a_work_request_naming_its_held_tasks_does_a_heartbeats_work(domain: Server) -> None:
    """Mirrors test_a_work_request_naming_its_held_tasks_does_a_heartbeats_work."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job, host, a = await _one_running_job(srv)
    [before] = await d.tasks(srv, job["uid"])

    async def last_seen() -> float:
        [shown] = [h for h in await hosts.list_hosts(srv, admin) if h["uid"] == host]
        return datetime.fromisoformat(shown["last_seen_at"]).timestamp()

    seen_before = await last_seen()
    await asyncio.sleep(0.05)
    stranger = str(uuid.uuid4())
    answer = await d.work_request(srv, host, held=[a.task_uid, stranger])
    assert answer.cancel == [stranger] and answer.assignments == []
    [after] = await d.tasks(srv, job["uid"])
    assert after["lease_expires_at"] > before["lease_expires_at"]
    assert await last_seen() > seen_before
    # past the first lease's end, the renewed one is still live
    assert await leases.reap(srv, now=_end(before) + 0.01) == 0
    assert [t["status"] for t in await d.tasks(srv, job["uid"])] == ["RUNNING"]


async def test_an_expired_lease_sends_the_job_back_with_one_more_retry(domain: Server) -> None:
    """Mirrors test_an_expired_lease_sends_the_job_back_with_one_more_retry."""
    srv = domain
    await d.insert_app(srv, await d.admin(srv), "work")
    job, _host, _a = await _one_running_job(srv, max_retry=2)
    assert await leases.reap(srv, now=time.time()) == 0  # not expired yet
    assert await leases.reap(srv, now=d.later(srv)) == 1
    after = await d.job(srv, job["uid"])
    assert (after["status"], after["retry"]) == ("PENDING", 1)
    assert [t["status"] for t in await d.tasks(srv, job["uid"])] == ["LOST"]
    assert await leases.reap(srv, now=d.later(srv)) == 0  # a lost task is reaped once


async def test_a_job_whose_retries_are_spent_ends_in_error(domain: Server) -> None:
    """Mirrors test_a_job_whose_retries_are_spent_ends_in_error."""
    srv = domain
    await d.insert_app(srv, await d.admin(srv), "work")
    job, host, _a = await _one_running_job(srv, max_retry=1)
    await leases.reap(srv, now=d.later(srv))
    assert (await d.job(srv, job["uid"]))["status"] == "PENDING"
    assert len(await d.request_work(srv, host)) == 1
    await leases.reap(srv, now=d.later(srv))
    after = await d.job(srv, job["uid"])
    assert (after["status"], after["retry"]) == ("ERROR", 1)
    assert "max_retry" in after["message"]
    assert [t["status"] for t in await d.tasks(srv, job["uid"])] == ["LOST", "LOST"]
    assert await d.request_work(srv, host) == []


async def test_a_report_for_a_lost_task_is_refused_and_changes_nothing(domain: Server) -> None:
    """Mirrors test_a_report_for_a_lost_task_is_refused_and_changes_nothing."""
    srv = domain
    await d.insert_app(srv, await d.admin(srv), "work")
    job, _lost_host, lost = await _one_running_job(srv)
    await leases.reap(srv, now=d.later(srv))
    other = await d.register(srv, name="other")
    [live] = await d.request_work(srv, other)
    before = await d.job(srv, job["uid"])

    with pytest.raises(TaskGone):
        await d.report(srv, lost.task_uid, exit_code=0)
    assert await d.job(srv, job["uid"]) == before
    assert {t["uid"]: t["status"] for t in await d.tasks(srv, job["uid"])} == {
        lost.task_uid: "LOST",
        live.task_uid: "RUNNING",
    }

    # the live task completes exactly once
    await d.report(srv, live.task_uid, exit_code=7)
    with pytest.raises(TaskGone):
        await d.report(srv, live.task_uid, exit_code=8)
    done = await d.job(srv, job["uid"])
    assert (done["status"], done["exit_code"], done["retry"]) == ("COMPLETED", 7, 1)


async def test_a_released_job_goes_back_to_pending_without_spending_a_retry(domain: Server) -> None:
    """Mirrors test_a_released_job_goes_back_to_pending_without_spending_a_retry."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    uids = sorted(j["uid"] for j in await d.submit_many(srv, admin, [{"app": "work"}] * 2))
    host = await d.register(srv)
    got = await d.request_work(srv, host, capacity=2)
    assert await d.release(srv, host, [a.task_uid for a in got] + [str(uuid.uuid4())]) == 2
    for uid in uids:
        job = await d.job(srv, uid)
        assert (job["status"], job["retry"]) == ("PENDING", 0)
        assert [t["status"] for t in await d.tasks(srv, uid)] == ["ABORTED"]
    again = await d.request_work(srv, await d.register(srv, name="next"), capacity=2)
    assert sorted(a.job_uid for a in again) == uids


async def test_deleting_a_running_job_aborts_its_task(domain: Server) -> None:
    """Mirrors test_deleting_a_running_job_aborts_its_task."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job, host, a = await _one_running_job(srv)
    with d.acting(admin):
        await jobs.delete(srv, admin, job["uid"])
    with pytest.raises(NotFound):
        await d.job(srv, job["uid"])
    assert (await d.heartbeat(srv, host, [a.task_uid])).cancel == [a.task_uid]
    with pytest.raises((NotFound, TaskGone)):
        await d.report(srv, a.task_uid)


async def test_a_completed_job_carries_its_uploaded_result(domain: Server) -> None:
    """Mirrors test_a_completed_job_carries_its_uploaded_result."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    job, _host, a = await _one_running_job(srv)
    archive = os.urandom(5000)
    digest = hashlib.sha256(archive).hexdigest()
    result_uid = await d.upload_result(srv, a.task_uid, archive)
    await d.report(srv, a.task_uid, exit_code=0, result_uid=result_uid)
    done = await d.job(srv, job["uid"])
    assert (done["status"], done["result_uid"], done["result_sha256"]) == ("COMPLETED", result_uid, digest)
    assert await d.content(srv, admin, result_uid) == archive
    # the result belongs to the job's owner, not to the worker that made it
    with pytest.raises(NotFound):
        await d.content(srv, await d.worker(srv), result_uid)


async def test_a_worker_reads_an_input_only_while_it_holds_the_task(domain: Server) -> None:
    """Mirrors test_a_worker_reads_an_input_only_while_it_holds_the_task."""
    srv = domain
    admin, worker = await d.admin(srv), await d.worker(srv)
    await d.insert_app(srv, admin, "work")
    shared = await d.upload(srv, admin, b"public input", name="in.txt")  # data is public by default
    job = await d.submit(srv, admin, "work", stdin_uid=shared.uid)
    with pytest.raises(NotFound):
        await d.content(srv, worker, shared.uid)
    host = await d.register(srv)
    [a] = await d.request_work(srv, host)
    assert a.stdin is not None and a.stdin.data_uid == shared.uid
    assert await d.content(srv, worker, shared.uid) == b"public input"
    await d.report(srv, a.task_uid, exit_code=0)
    with pytest.raises(NotFound):
        await d.content(srv, worker, shared.uid)
    assert (await d.job(srv, job["uid"]))["status"] == "COMPLETED"


async def test_a_public_worker_is_never_given_a_job_whose_input_it_may_not_read(domain: Server) -> None:
    """Mirrors test_a_public_worker_is_never_given_a_job_whose_input_it_may_not_read: checked
    at claim time (a worker whose cache holds the same bytes would otherwise run it)."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    same = b"the same bytes"
    public = await d.upload(srv, admin, same, name="in.txt")
    secret = await d.upload(srv, admin, same, name="in.txt", access_rights="0700")
    first = await d.submit(srv, admin, "work", stdin_uid=public.uid)
    hidden = await d.submit(srv, admin, "work", stdin_uid=secret.uid)
    host = await d.register(srv)
    [a] = await d.request_work(srv, host, capacity=2)
    assert a.job_uid == first["uid"] and a.stdin is not None and a.stdin.sha256 == secret.sha256
    assert await d.request_work(srv, host, capacity=2) == []
    shown = await d.job(srv, hidden["uid"])
    assert shown["status"] == "PENDING"
    assert shown["pending_reason"] == (
        f"no connected worker may read its stdin (data {secret.uid}, access rights 0700)"
    )
    # the secret was never held: reading it is refused as if it did not exist
    with pytest.raises(NotFound):
        await d.content(srv, await d.worker(srv), secret.uid)
    # made readable, the next request gets it
    with d.acting(admin):
        await objects.chmod(srv, admin, secret.uid, {"rights": "0744"})
    [b] = await d.request_work(srv, host, capacity=2)
    assert b.job_uid == hidden["uid"]
    assert "pending_reason" not in await d.job(srv, hidden["uid"])


async def test_a_pending_job_says_what_keeps_it_from_every_connected_worker(domain: Server) -> None:
    """Mirrors test_a_pending_job_says_what_keeps_it_from_every_connected_worker."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "work")
    await d.insert_app(srv, admin, "win", [("windows", "amd64")])
    job = await d.submit(srv, admin, "work")
    assert (await d.job(srv, job["uid"]))["pending_reason"] == "no worker is connected"
    host = await d.register(srv)  # linux, 8 GiB, 100 GiB free
    assert "pending_reason" not in await d.job(srv, job["uid"])  # it waits its turn
    windows = await d.submit(srv, admin, "win")
    assert (await d.job(srv, windows["uid"]))["pending_reason"] == (
        "no connected worker's platform has a binary of its application"
    )
    huge = await d.submit(srv, admin, "work", min_memory_bytes=64 << 30)
    assert (await d.job(srv, huge["uid"]))["pending_reason"].startswith(
        f"no registered host has ever offered what it needs ({64 << 30} bytes of memory, 0 of disk; "
        f"the most any offered: {8 << 30}"
    )
    await d.register(srv, name="big")  # a big host, registered once, not connected any more
    async with srv.engine.begin() as conn:
        await conn.execute(
            update(Host).where(Host.name == "big").values(memory_bytes=128 << 30, last_seen_at=0)
        )
    assert (await d.job(srv, huge["uid"]))["pending_reason"].startswith(
        f"it needs {64 << 30} bytes of memory and 0 of disk; the largest connected worker has {8 << 30}"
    )
    bound = await d.submit(srv, admin, "work", expected_host_uid=host)
    assert "pending_reason" not in await d.job(srv, bound["uid"])
    with d.acting(admin):
        await hosts.set_enabled(srv, admin, host, False)
    assert (await d.job(srv, bound["uid"]))["pending_reason"] == (
        "the one host it may run on (expected_host_uid) is not connected"
    )


# -- names ------------------------------------------------------------------------------------------------------
async def test_names_are_exact_on_every_backend(domain: Server) -> None:
    """Mirrors test_names_are_exact_on_every_backend: application names and logins compare
    exactly, case and trailing spaces count (a user of a known password stands for admin)."""
    srv = domain
    admin = await d.admin(srv)
    lower = await d.insert_app(srv, admin, "tool")
    upper = await d.insert_app(srv, admin, "Tool")
    spaced = await d.insert_app(srv, admin, "tool ")
    assert len({lower["uid"], upper["uid"], spaced["uid"]}) == 3
    assert [len(a["binaries"]) for a in (lower, upper, spaced)] == [1, 1, 1]
    assert (await apps.get(srv, admin, "Tool"))["uid"] == upper["uid"]
    await d.add_user(srv, "alice", password="alice-password")
    assert await d.login(srv, "alice", "alice-password")
    for login in ("ALICE", "alice "):
        with pytest.raises(AuthenticationError):
            await users.login(srv, login, "alice-password", "127.0.0.1")
