"""The server's contract over HTTP (the ``xw`` fixture), on SQLite; a smoke set also on
PostgreSQL and MariaDB (exact names, concurrent claims, a late report, inputs checked at claim
time). tests/unit/test_domain_contract.py holds their scenarios on every database through the
server's functions.

Each test talks to a real server over real HTTPS, on a fresh database; the lease reaper is
called directly with an injected clock (``leases.reap(srv, now=...)``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from xwcommon.protocol.work import WorkAnswer
from xwcommon.status import JobStatus, TaskStatus, check_job_transition, check_task_transition
from xwcommon.transport import Transport, pinned_ssl_context
from xwserver import leases

if TYPE_CHECKING:
    from conftest import XW


def _later(xw: XW) -> float:
    """A clock reading at which every lease given now has expired."""
    return time.time() + xw.settings.lease_s + 1


async def _one_running_job(
    xw: XW, app: str = "work", **spec: Any
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Submit a job and have a fresh host claim it: (job, host_uid, assignment)."""
    job = await xw.submit(xw.admin, app, **spec)
    host = await xw.register()
    got = await xw.request_work(host)
    assert [a["job_uid"] for a in got] == [job["uid"]]
    return job, host, got[0]


async def _report(xw: XW, task_uid: str, status: str = "COMPLETED", **extra: Any) -> Any:
    return await xw.call(
        "POST", f"/work/tasks/{task_uid}/report", token=xw.worker, json={"status": status, **extra}
    )


# -- statuses ---------------------------------------------------------------------------------------------
async def test_a_job_lifecycle_only_takes_transitions_the_status_table_allows(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work", max_retry=2)
    seen = [job["status"]]
    host = await xw.register()
    [first] = await xw.request_work(host)
    seen.append((await xw.job(job["uid"]))["status"])
    await leases.reap(xw.srv, now=_later(xw))
    seen.append((await xw.job(job["uid"]))["status"])
    [second] = await xw.request_work(host)
    seen.append((await xw.job(job["uid"]))["status"])
    assert (await _report(xw, second["task_uid"], exit_code=0)).status == 200
    seen.append((await xw.job(job["uid"]))["status"])

    assert seen == ["PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    for old, new in zip(seen, seen[1:], strict=False):
        check_job_transition(JobStatus(old), JobStatus(new))
    tasks = {t["uid"]: t["status"] for t in await xw.tasks(job["uid"])}
    assert tasks == {first["task_uid"]: "LOST", second["task_uid"]: "COMPLETED"}
    for status in tasks.values():
        check_task_transition(TaskStatus.RUNNING, TaskStatus(status))


async def test_a_final_task_is_refused_a_second_final_status(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, _host, a = await _one_running_job(xw)
    assert (await _report(xw, a["task_uid"], "ERROR", exit_code=2, message="boom")).status == 200
    again = await _report(xw, a["task_uid"], "COMPLETED", exit_code=0)
    assert again.status == 409 and again.body["error"] == "task_gone"
    after = await xw.job(job["uid"])
    assert (after["status"], after["exit_code"], after["message"]) == ("ERROR", 2, "boom")


# -- submission --------------------------------------------------------------------------------------------
async def test_a_submitted_job_is_pending_with_what_was_asked(xw: XW) -> None:
    app = await xw.insert_app(xw.admin, "work")
    job = await xw.submit(xw.admin, "work", args="-n 3 'two words'", label="batch-1")
    assert job["status"] == "PENDING"
    assert job["args"] == ["-n", "3", "two words"]
    assert (job["label"], job["app_uid"], job["app_name"]) == ("batch-1", app["uid"], "work")
    assert (job["retry"], job["max_retry"]) == (0, xw.settings.max_retry)
    assert job["uri"] == f"xw://{xw.settings.netloc}/{job['uid']}"
    assert job["access_rights"] == app["access_rights"]
    # shown alone, a PENDING job also says what keeps it from running: here, no worker yet
    assert await xw.job(job["uid"]) == {**job, "pending_reason": "no worker is connected"}
    # a URI in a path is one segment once percent-encoded
    by_uri = await xw.ok("GET", f"/jobs/{quote(job['uri'], safe='')}", token=xw.admin)
    assert by_uri["uid"] == job["uid"]


async def test_a_bulk_submission_keeps_the_order_of_its_jobs(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    specs = [{"app": "work", "args": [str(i)], "label": f"job-{i:03d}"} for i in range(60)]
    body = await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": specs})
    created = body["jobs"]
    assert [j["label"] for j in created] == [s["label"] for s in specs]
    assert [j["args"] for j in created] == [s["args"] for s in specs]
    assert len({j["uid"] for j in created}) == len(specs)
    listed = (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"]
    assert [j["uid"] for j in listed] == [j["uid"] for j in created]


async def test_a_bulk_with_one_bad_job_inserts_nothing(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    good: list[dict[str, Any]] = [{"app": "work", "label": f"ok-{i}"} for i in range(4)]
    for bad, status, words in [
        ({"app": "work", "max_retry": "x"}, 400, ["job #4", "max_retry"]),
        ({"app": "no-such-app"}, 404, ["no-such-app"]),
        ({"app": "work", "args": [1, 2]}, 400, ["job #4", "args"]),
        ({"app": "work", "stdin_uid": str(uuid.uuid4())}, 404, ["no data"]),
    ]:
        r = await xw.call("POST", "/jobs/bulk", token=xw.admin, json={"jobs": [*good, bad]})
        assert r.status == status, r
        for word in words:
            assert word in r.body["message"], r
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []
    host = await xw.register()
    assert await xw.request_work(host, capacity=10) == []


# -- the claim ----------------------------------------------------------------------------------------------
@pytest.mark.every_database
async def test_concurrent_work_requests_get_each_job_exactly_once(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    body = await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": [{"app": "work"}] * 7})
    submitted = {j["uid"] for j in body["jobs"]}
    hosts = [await xw.register(name=f"h{i}") for i in range(12)]

    answers = await asyncio.gather(*(xw.request_work(h, capacity=2) for h in hosts))

    assigned = [a["job_uid"] for got in answers for a in got]
    assert sorted(assigned) == sorted(submitted)  # every job once, none twice
    assert all(len(got) <= 2 for got in answers)
    for uid in submitted:
        job = await xw.job(uid)
        assert job["status"] == "RUNNING"
        assert [t["status"] for t in await xw.tasks(uid)] == ["RUNNING"]
    assert await xw.request_work(hosts[0], capacity=5) == []


async def test_a_work_request_gets_at_most_its_capacity(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": [{"app": "work"}] * 5})
    host = await xw.register()
    assert len(await xw.request_work(host, capacity=3)) == 3
    assert len(await xw.request_work(host, capacity=3)) == 2
    assert await xw.request_work(host, capacity=3) == []


async def test_a_host_only_gets_apps_with_a_binary_for_its_platform(xw: XW) -> None:
    await xw.insert_app(xw.admin, "mac-only", [("darwin", "x86_64")])
    await xw.insert_app(xw.admin, "arm-only", [("linux", "aarch64")])
    await xw.insert_app(xw.admin, "script", [("any", "any")])
    await xw.insert_app(xw.admin, "linux-any-cpu", [("linux", "any")])
    jobs = {name: (await xw.submit(xw.admin, name))["uid"] for name in ("mac-only", "arm-only", "script")}
    jobs["linux-any-cpu"] = (await xw.submit(xw.admin, "linux-any-cpu"))["uid"]

    linux = await xw.register(os_name="LINUX", cpu="AMD64")  # XWHEP's names
    got = await xw.request_work(linux, capacity=10)
    assert {a["app_name"] for a in got} == {"script", "linux-any-cpu"}

    mac = await xw.register(os_name="MACOSX", cpu="x86_64")
    got = await xw.request_work(mac, capacity=10)
    assert [a["job_uid"] for a in got] == [jobs["mac-only"]]

    arm = await xw.register(os_name="linux", cpu="arm64")
    got = await xw.request_work(arm, capacity=10)
    assert [a["job_uid"] for a in got] == [jobs["arm-only"]]


async def test_the_most_specific_binary_is_assigned(xw: XW) -> None:
    app = await xw.insert_app(xw.admin, "multi", [("any", "any"), ("linux", "x86_64")])
    sha = {(b["os"], b["cpu"]): b["sha256"] for b in app["binaries"]}
    await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": [{"app": "multi"}] * 2})
    [on_linux] = await xw.request_work(await xw.register(os_name="linux", cpu="x86_64"))
    [on_windows] = await xw.request_work(await xw.register(os_name="WIN32", cpu="x86_64"))
    assert on_linux["binary"]["sha256"] == sha[("linux", "x86_64")]
    assert on_windows["binary"]["sha256"] == sha[("any", "any")]


async def test_a_waiting_work_request_gets_a_job_submitted_after_it_started(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register()
    # with nothing to do, a request waits its wait_s and answers empty
    started = time.monotonic()
    assert await xw.request_work(host, wait_s=0.3) == []
    assert time.monotonic() - started >= 0.3

    wait_s = 20.0
    started = time.monotonic()
    waiting = asyncio.create_task(xw.request_work(host, wait_s=wait_s))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # nothing to do yet: it waits
    job = await xw.submit(xw.admin, "work")
    got = await asyncio.wait_for(waiting, wait_s)
    assert [a["job_uid"] for a in got] == [job["uid"]]
    assert time.monotonic() - started < wait_s


# -- leases ---------------------------------------------------------------------------------------------------
async def test_a_heartbeat_extends_the_lease_and_names_unknown_tasks_to_cancel(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, host, a = await _one_running_job(xw)
    [before] = await xw.tasks(job["uid"])
    await asyncio.sleep(0.05)
    stranger = str(uuid.uuid4())
    beat = await xw.ok(
        "POST",
        "/work/heartbeat",
        token=xw.worker,
        json={"host_uid": host, "task_uids": [a["task_uid"], stranger]},
    )
    assert beat["cancel"] == [stranger]
    assert beat["lease_s"] == xw.settings.lease_s
    [after] = await xw.tasks(job["uid"])
    assert after["lease_expires_at"] > before["lease_expires_at"]
    # past the first lease's end, the extended one is still live
    first_end = datetime.fromisoformat(before["lease_expires_at"]).timestamp()
    assert await leases.reap(xw.srv, now=first_end + 0.01) == 0
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["RUNNING"]


async def test_a_work_request_naming_its_held_tasks_does_a_heartbeats_work(xw: XW) -> None:
    # a worker waiting for work sends no heartbeat: its request renews, sees and cancels
    await xw.insert_app(xw.admin, "work")
    job, host, a = await _one_running_job(xw)
    [before] = await xw.tasks(job["uid"])

    async def last_seen() -> float:
        hosts = (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]
        [shown] = [h for h in hosts if h["uid"] == host]
        return datetime.fromisoformat(shown["last_seen_at"]).timestamp()

    seen_before = await last_seen()
    await asyncio.sleep(0.05)
    stranger = str(uuid.uuid4())
    answer = WorkAnswer.from_wire(
        await xw.ok(
            "POST",
            "/work/request",
            token=xw.worker,
            json={"host_uid": host, "capacity": 1, "wait_s": 0, "held": [a["task_uid"], stranger]},
        )
    )
    assert answer.cancel == [stranger] and answer.assignments == []
    [after] = await xw.tasks(job["uid"])
    assert after["lease_expires_at"] > before["lease_expires_at"]
    assert await last_seen() > seen_before
    # past the first lease's end, the renewed one is still live
    first_end = datetime.fromisoformat(before["lease_expires_at"]).timestamp()
    assert await leases.reap(xw.srv, now=first_end + 0.01) == 0
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["RUNNING"]


async def test_an_expired_lease_sends_the_job_back_with_one_more_retry(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, _host, a = await _one_running_job(xw, max_retry=2)
    assert await leases.reap(xw.srv, now=time.time()) == 0  # not expired yet
    assert await leases.reap(xw.srv, now=_later(xw)) == 1
    after = await xw.job(job["uid"])
    assert (after["status"], after["retry"]) == ("PENDING", 1)
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["LOST"]
    assert await leases.reap(xw.srv, now=_later(xw)) == 0  # a lost task is reaped once


async def test_a_job_whose_retries_are_spent_ends_in_error(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, host, _a = await _one_running_job(xw, max_retry=1)
    await leases.reap(xw.srv, now=_later(xw))
    assert (await xw.job(job["uid"]))["status"] == "PENDING"
    assert len(await xw.request_work(host)) == 1
    await leases.reap(xw.srv, now=_later(xw))
    after = await xw.job(job["uid"])
    assert (after["status"], after["retry"]) == ("ERROR", 1)
    assert "max_retry" in after["message"]
    assert [t["status"] for t in await xw.tasks(job["uid"])] == ["LOST", "LOST"]
    assert await xw.request_work(host) == []


@pytest.mark.every_database
async def test_a_report_for_a_lost_task_is_refused_and_changes_nothing(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, _lost_host, lost = await _one_running_job(xw)
    await leases.reap(xw.srv, now=_later(xw))
    other = await xw.register(name="other")
    [live] = await xw.request_work(other)
    before = await xw.job(job["uid"])

    late = await _report(xw, lost["task_uid"], exit_code=0)
    assert late.status == 409 and late.body["error"] == "task_gone"
    assert await xw.job(job["uid"]) == before
    assert {t["uid"]: t["status"] for t in await xw.tasks(job["uid"])} == {
        lost["task_uid"]: "LOST",
        live["task_uid"]: "RUNNING",
    }

    # the live task completes exactly once
    assert (await _report(xw, live["task_uid"], exit_code=7)).status == 200
    assert (await _report(xw, live["task_uid"], exit_code=8)).status == 409
    done = await xw.job(job["uid"])
    assert (done["status"], done["exit_code"], done["retry"]) == ("COMPLETED", 7, 1)


async def test_a_released_job_goes_back_to_pending_without_spending_a_retry(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    body = await xw.ok("POST", "/jobs/bulk", token=xw.admin, json={"jobs": [{"app": "work"}] * 2})
    uids = sorted(j["uid"] for j in body["jobs"])
    host = await xw.register()
    got = await xw.request_work(host, capacity=2)
    released = await xw.ok(
        "POST",
        "/work/release",
        token=xw.worker,
        json={"host_uid": host, "task_uids": [a["task_uid"] for a in got] + [str(uuid.uuid4())]},
    )
    assert released == {"released": 2}
    for uid in uids:
        job = await xw.job(uid)
        assert (job["status"], job["retry"]) == ("PENDING", 0)
        assert [t["status"] for t in await xw.tasks(uid)] == ["ABORTED"]
    again = await xw.request_work(await xw.register(name="next"), capacity=2)
    assert sorted(a["job_uid"] for a in again) == uids


async def test_deleting_a_running_job_aborts_its_task(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, host, a = await _one_running_job(xw)
    await xw.ok("DELETE", f"/jobs/{job['uid']}", token=xw.admin)
    assert (await xw.call("GET", f"/jobs/{job['uid']}", token=xw.admin)).status == 404
    beat = await xw.ok(
        "POST", "/work/heartbeat", token=xw.worker, json={"host_uid": host, "task_uids": [a["task_uid"]]}
    )
    assert beat["cancel"] == [a["task_uid"]]
    assert (await _report(xw, a["task_uid"])).status in (404, 409)


async def test_a_completed_job_carries_its_uploaded_result(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    job, _host, a = await _one_running_job(xw)
    archive = os.urandom(5000)
    digest = hashlib.sha256(archive).hexdigest()
    up = await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/result",
        token=xw.worker,
        data=archive,
        params={"sha256": digest, "size": len(archive)},
    )
    assert (await _report(xw, a["task_uid"], exit_code=0, result_uid=up["result_uid"])).status == 200
    done = await xw.job(job["uid"])
    assert (done["status"], done["result_uid"], done["result_sha256"]) == (
        "COMPLETED",
        up["result_uid"],
        digest,
    )
    got = await xw.call("GET", f"/data/{up['result_uid']}/content", token=xw.admin)
    assert got.body == archive
    # the result belongs to the job's owner, not to the worker that made it
    assert (await xw.call("GET", f"/data/{up['result_uid']}/content", token=xw.worker)).status == 404


async def test_a_worker_reads_an_input_only_while_it_holds_the_task(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    shared = await xw.upload(xw.admin, b"public input", name="in.txt")  # data is public by default
    job = await xw.submit(xw.admin, "work", stdin_uid=shared["uid"])
    path = f"/data/{shared['uid']}/content"
    assert (await xw.call("GET", path, token=xw.worker)).status == 404
    host = await xw.register()
    [a] = await xw.request_work(host)
    assert a["stdin"]["data_uid"] == shared["uid"]
    assert (await xw.call("GET", path, token=xw.worker)).body == b"public input"
    assert (await _report(xw, a["task_uid"], exit_code=0)).status == 200
    assert (await xw.call("GET", path, token=xw.worker)).status == 404
    assert (await xw.job(job["uid"]))["status"] == "COMPLETED"


@pytest.mark.every_database
async def test_a_public_worker_is_never_given_a_job_whose_input_it_may_not_read(xw: XW) -> None:
    """Checked at claim time: a worker whose cache holds the same bytes would otherwise run it."""
    await xw.insert_app(xw.admin, "work")
    same = b"the same bytes"
    public = await xw.upload(xw.admin, same, name="in.txt")
    secret = await xw.upload(xw.admin, same, name="in.txt", access_rights="0700")
    first = await xw.submit(xw.admin, "work", stdin_uid=public["uid"])
    hidden = await xw.submit(xw.admin, "work", stdin_uid=secret["uid"])
    host = await xw.register()
    [a] = await xw.request_work(host, capacity=2)
    assert a["job_uid"] == first["uid"] and a["stdin"]["sha256"] == secret["sha256"]
    assert await xw.request_work(host, capacity=2) == []
    shown = await xw.job(hidden["uid"])
    assert shown["status"] == "PENDING"
    assert shown["pending_reason"] == (
        f"no connected worker may read its stdin (data {secret['uid']}, access rights 0700)"
    )
    # the secret was never held: reading it is refused as if it did not exist
    r = await xw.call("GET", f"/data/{secret['uid']}/content", token=xw.worker)
    assert r.status == 404
    # made readable, the next request gets it
    await xw.ok("POST", f"/objects/{secret['uid']}/chmod", token=xw.admin, json={"rights": "0744"})
    [b] = await xw.request_work(host, capacity=2)
    assert b["job_uid"] == hidden["uid"]
    assert "pending_reason" not in await xw.job(hidden["uid"])


async def test_a_pending_job_says_what_keeps_it_from_every_connected_worker(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    await xw.insert_app(xw.admin, "win", [("windows", "amd64")])
    job = await xw.submit(xw.admin, "work")
    assert (await xw.job(job["uid"]))["pending_reason"] == "no worker is connected"
    host = await xw.register()  # linux, 8 GiB, 100 GiB free
    assert "pending_reason" not in await xw.job(job["uid"])  # it waits its turn
    windows = await xw.submit(xw.admin, "win")
    assert (await xw.job(windows["uid"]))["pending_reason"] == (
        "no connected worker's platform has a binary of its application"
    )
    huge = await xw.submit(xw.admin, "work", min_memory_bytes=64 << 30)
    assert (await xw.job(huge["uid"]))["pending_reason"].startswith(
        f"no registered host has ever offered what it needs ({64 << 30} bytes of memory, 0 of disk; "
        f"the most any offered: {8 << 30}"
    )
    await xw.register(name="big")  # a big host, registered once, not connected any more
    async with xw.srv.engine.begin() as conn:
        from sqlalchemy import update

        from xwserver.db.models import Host

        await conn.execute(
            update(Host).where(Host.name == "big").values(memory_bytes=128 << 30, last_seen_at=0)
        )
    assert (await xw.job(huge["uid"]))["pending_reason"].startswith(
        f"it needs {64 << 30} bytes of memory and 0 of disk; the largest connected worker has {8 << 30}"
    )
    bound = await xw.submit(xw.admin, "work", expected_host_uid=host)
    assert "pending_reason" not in await xw.job(bound["uid"])
    await xw.ok("POST", f"/hosts/{host}/disable", token=xw.admin)
    assert (await xw.job(bound["uid"]))["pending_reason"] == (
        "the one host it may run on (expected_host_uid) is not connected"
    )


# -- data ----------------------------------------------------------------------------------------------------
async def test_an_upload_with_a_wrong_sha256_is_refused_and_nothing_is_stored(xw: XW) -> None:
    content = os.urandom(200_000)
    r = await xw.call("POST", "/data", token=xw.admin, data=content, params={"name": "x", "sha256": "0" * 64})
    assert r.status == 422 and r.body["error"] == "integrity"
    r = await xw.call(
        "POST", "/data", token=xw.admin, data=content, params={"name": "x", "size": len(content) + 1}
    )
    assert r.status == 422
    assert (await xw.ok("GET", "/data", token=xw.admin))["data"] == []
    assert xw.store_files() == []


async def test_a_download_streams_the_same_bytes_with_their_sha256(xw: XW) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several stream chunks
    digest = hashlib.sha256(content).hexdigest()
    d = await xw.upload(xw.admin, content, name="big.bin")
    assert (d["size"], d["sha256"], d["status"]) == (len(content), digest, "AVAILABLE")
    r = await xw.call("GET", f"/data/{d['uid']}/content", token=xw.admin)
    assert r.status == 200
    assert r.headers["X-XW-SHA256"] == digest
    assert r.body == content
    # the stored file is named by its digest, and only it is there
    assert [p.name for p in xw.store_files()] == [digest]


async def test_the_transport_uploads_and_downloads_through_the_pinned_ca(xw: XW, tmp_path: Any) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(1_500_000))
    async with Transport(xw.url, xw.ca_file, "admin", xw.admin_password) as t:
        d = await t.upload("/data", src, params={"name": "in.bin"})
        dest = tmp_path / "out.bin"
        digest = await t.download(f"/data/{d['uid']}/content", dest, expected_sha256=d["sha256"])
    assert digest == d["sha256"]
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no part file left


async def test_an_upload_cut_short_leaves_no_file_in_the_store(xw: XW) -> None:
    """A client that goes away mid-body: no file under a real name, the temporary file removed."""
    announced, sent = 4 * 1024 * 1024, 256 * 1024
    ctx: ssl.SSLContext = pinned_ssl_context(xw.ca_file)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", xw.settings.port, ssl=ctx, server_hostname="127.0.0.1"
    )
    head = (
        f"POST /api/v1/data?name=cut HTTP/1.1\r\nHost: 127.0.0.1:{xw.settings.port}\r\n"
        f"Authorization: Bearer {xw.admin}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    )
    writer.write(head.encode() + os.urandom(sent))
    await writer.drain()
    deadline = time.monotonic() + 5
    while not (xw.settings.data_dir / "tmp").exists() or not any((xw.settings.data_dir / "tmp").iterdir()):
        assert time.monotonic() < deadline, "the upload never started"
        await asyncio.sleep(0.01)
    writer.transport.abort()  # gone, without finishing the body
    deadline = time.monotonic() + 10
    while xw.store_files():
        assert time.monotonic() < deadline, f"left in the store: {xw.store_files()}"
        await asyncio.sleep(0.02)
    assert (await xw.ok("GET", "/data", token=xw.admin))["data"] == []
    await xw.assert_healthy()


# -- names ------------------------------------------------------------------------------------------------------
@pytest.mark.every_database
async def test_names_are_exact_on_every_backend(xw: XW) -> None:
    """Application names and logins compare exactly: case and trailing spaces count."""
    lower = await xw.insert_app(xw.admin, "tool")
    upper = await xw.insert_app(xw.admin, "Tool")
    spaced = await xw.insert_app(xw.admin, "tool ")
    assert len({lower["uid"], upper["uid"], spaced["uid"]}) == 3
    assert [len(a["binaries"]) for a in (lower, upper, spaced)] == [1, 1, 1]
    assert (await xw.ok("GET", "/apps/Tool", token=xw.admin))["uid"] == upper["uid"]
    for login in ("ADMIN", "admin "):
        r = await xw.call("POST", "/login", json={"login": login, "password": xw.admin_password})
        assert r.status == 401, f"{login!r} logged in as admin"
