"""Hostile input against sessions and groups of jobs, bulk job removal, declared needs,
accounting and activation: each refusal is a JSON 4xx naming what was wrong, nothing is
logged as an error, and nobody reaches what is not theirs."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest
from xw_server_harness import BACKENDS, XW

SETS = {"/sessions": "session", "/groups": "group"}
SQL = "'; DROP TABLE jobs; --"
NUL = "bad\0name"
LONG = "x" * 10_000
TRAVERSAL = "../../../etc/passwd"


async def expect_refused(
    xw: XW, method: str, path: str, status: int, field: str | None = None, **kw: Any
) -> None:
    """Refused with ``status`` as JSON naming ``field``; nothing logged as an error."""
    r = await xw.call(method, path, **kw)
    assert r.status == status, (method, path, r)
    assert isinstance(r.body, dict) and set(r.body) == {"error", "message"}, (method, path, r)
    assert field is None or field.lower() in r.body["message"].lower(), (method, path, field, r)
    assert not xw.log.problems(), xw.log.problems()


async def test_unknown_uids_are_404_and_non_uids_400_in_the_new_paths(xw: XW) -> None:
    unknown, t = str(uuid.uuid4()), xw.admin
    for path, kind in SETS.items():
        for method in ("GET", "DELETE"):
            await expect_refused(xw, method, f"{path}/{unknown}", 404, unknown, token=t)
            for bad in ("not-a-uid", TRAVERSAL, NUL, "%00", LONG[:300]):
                r = await xw.call(method, f"{path}/{quote(bad, safe='')}", token=t)
                assert r.status in (400, 404), (method, path, bad[:40], r)
        await expect_refused(xw, "GET", "/jobs", 400, kind, token=t, params={kind: NUL})
    await xw.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_hostile_set_names_are_stored_literally_or_refused(xw: XW) -> None:
    for path in SETS:
        for name in (SQL, "%s {0} $1 ?"):
            created = await xw.ok("POST", path, token=xw.admin, json={"name": name}, expect=201)
            assert (await xw.ok("GET", f"{path}/{created['uid']}", token=xw.admin))["name"] == name
        # a name may end up in a file name (a results folder): no path separator
        await expect_refused(
            xw, "POST", path, 400, "path separator", token=xw.admin, json={"name": TRAVERSAL}
        )
        for name in (NUL, LONG, "", " "):
            await expect_refused(xw, "POST", path, 400, "name", token=xw.admin, json={"name": name})
        bodies: list[Any] = [[], "x", None, 3]
        for body in bodies:
            await expect_refused(xw, "POST", path, 400, None, token=xw.admin, json=body)
        key = path.strip("/")
        assert len((await xw.ok("GET", path, token=xw.admin))[key]) == 2
    assert (await xw.ok("GET", "/users/me", token=xw.admin))["login"] == "admin"
    await xw.assert_healthy()


async def test_a_worker_identity_may_not_touch_sets_or_remove_jobs(xw: XW) -> None:
    session = await xw.ok("POST", "/sessions", token=xw.admin, json={"name": "s"}, expect=201)
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/sessions", {"json": {"name": "w"}}),
        ("GET", "/sessions", {}),
        ("GET", f"/sessions/{session['uid']}", {}),
        ("DELETE", f"/sessions/{session['uid']}", {}),
        ("POST", "/groups", {"json": {"name": "w"}}),
        ("GET", "/groups", {}),
        ("POST", "/jobs/delete", {"json": {"uids": []}}),
    ]
    for method, path, kw in calls:
        await expect_refused(xw, method, path, 403, "WORKER", token=xw.worker, **kw)
    assert (await xw.ok("GET", f"/sessions/{session['uid']}", token=xw.admin))["uid"] == session["uid"]
    await xw.assert_healthy()


async def test_nobody_removes_or_fills_anothers_private_set_or_jobs(xw: XW) -> None:
    alice, mallory = await xw.add_user("alice"), await xw.add_user("mallory")
    await xw.insert_app(alice, "alices")
    session = await xw.ok("POST", "/sessions", token=alice, json={"name": "private"}, expect=201)
    job = await xw.submit(alice, "alices", session_uid=session["uid"])
    await xw.insert_app(mallory, "mallorys")
    await expect_refused(xw, "DELETE", f"/sessions/{session['uid']}", 404, token=mallory)
    await expect_refused(
        xw,
        "POST",
        "/jobs",
        404,
        "session_uid",
        token=mallory,
        json={"app": "mallorys", "session_uid": session["uid"]},
    )
    await expect_refused(
        xw, "POST", f"/objects/{session['uid']}/chmod", 404, token=mallory, json={"rights": "0777"}
    )
    listed = await xw.ok("GET", "/jobs", token=mallory, params={"session": session["uid"]})
    assert listed["jobs"] == []
    answer = await xw.ok("POST", "/jobs/delete", token=mallory, json={"uids": [job["uid"]]})
    assert answer == {"deleted": [], "missing": [{"uid": job["uid"], "reason": "no such job"}]}
    assert (await xw.job(job["uid"], token=alice))["session_uid"] == session["uid"]
    assert (await xw.ok("GET", f"/sessions/{session['uid']}", token=alice))["job_counts"] == {"PENDING": 1}
    await xw.assert_healthy()


async def test_huge_and_hostile_numbers_in_needs_are_a_400(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    host = await xw.register()
    bad_numbers: list[Any] = [2**64, -(2**63), float("inf"), "1e3"]
    for bad in bad_numbers:
        for key in ("min_memory_bytes", "min_disk_bytes"):
            r = await xw.call("POST", "/jobs", token=xw.admin, json={"app": "work", key: bad})
            assert r.status == 400 and key in r.body["message"], (key, bad, r)
        for key in ("free_memory_bytes", "free_disk_bytes"):
            r = await xw.call(
                "POST", "/work/request", token=xw.worker, json={"host_uid": host, "wait_s": 0, key: bad}
            )
            assert r.status == 400 and key in r.body["message"], (key, bad, r)
    r = await xw.call("POST", "/jobs/delete", token=xw.admin, json={"uids": [NUL]})
    assert r.status == 400 and "uids[0]" in r.body["message"], r
    r = await xw.call(
        "POST",
        "/work/heartbeat",
        token=xw.worker,
        json={"host_uid": host, "task_uids": [], "activation": {"state": "active", "detail": NUL}},
    )
    assert r.status == 400 and "activation.detail" in r.body["message"], r
    await xw.assert_healthy()
