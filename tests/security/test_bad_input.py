"""Hostile and malformed input against the real HTTPS server.

Every refusal is a JSON ``{"error", "message"}`` with a 4xx status whose message names
what was wrong; the server keeps serving afterwards and logs no error or traceback.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from xw_server_harness import BACKENDS, XW

from xwserver.api.openapi import document
from xwserver.api.routes import ROUTES
from xwserver.app import create_app

SQL = "'; DROP TABLE jobs; --"
NUL = "bad\0name"
LONG = "x" * 10_000
TRAVERSAL = "../../../etc/passwd"


def _mentions(message: str, field: str) -> bool:
    m = message.lower()
    return field.lower() in m or field.replace("_", " ").lower() in m


async def expect_refused(
    xw: XW, method: str, path: str, status: int, field: str | None = None, **kw: Any
) -> dict[str, Any]:
    """The call is refused with ``status`` as JSON naming ``field``; nothing was logged as an error."""
    r = await xw.call(method, path, **kw)
    case = f"{method} {path} {kw.get('json', kw.get('params', ''))!r:.200}"
    assert r.status == status, f"{case}: expected {status}, got {r.status} {r.body!r:.300}"
    assert isinstance(r.body, dict) and set(r.body) == {"error", "message"}, f"{case}: {r.body!r:.300}"
    if field is not None:
        assert _mentions(r.body["message"], field), f"{case}: message does not name {field!r}: {r.body}"
    problems = xw.log.problems()
    assert not problems, f"{case}: the server logged errors:\n" + "\n".join(problems)
    assert (await xw.call("GET", "/users/me", token=xw.admin)).status == 200, (
        f"{case}: the server stopped serving"
    )
    return dict(r.body)


async def _running_task(xw: XW) -> tuple[str, dict[str, Any]]:
    await xw.insert_app(xw.admin, "work")
    await xw.submit(xw.admin, "work")
    host = await xw.register()
    [a] = await xw.request_work(host)
    return host, a


# -- authentication ------------------------------------------------------------------------------------------
async def test_a_wrong_password_is_a_401_json_error(xw: XW) -> None:
    wrong = await expect_refused(
        xw, "POST", "/login", 401, json={"login": "admin", "password": "not the password"}
    )
    unknown = await expect_refused(xw, "POST", "/login", 401, json={"login": "nobody", "password": "x"})
    assert wrong == unknown == {"error": "unauthorized", "message": "wrong login or password"}
    token = await xw.login("admin", xw.admin_password)
    assert (await xw.ok("GET", "/users/me", token=token))["rights"] == "SUPER"
    await xw.ok("POST", "/logout", token=token)
    await expect_refused(xw, "GET", "/users/me", 401, "log in again", token=token)
    await xw.assert_healthy()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer " + "A" * 5000,
        "Basic YWRtaW46YWRtaW4=",
        "bearer\tgarbage",
        "Token abc",
    ],
)
async def test_a_missing_or_garbage_token_is_a_401(xw: XW, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", "/users/me"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("POST", "/work/request"),
        ("GET", f"/data/{uuid.uuid4()}/content"),
        ("POST", "/logout"),
        ("GET", "/no/such/route"),
    ]:
        body = await expect_refused(xw, method, path, 401, headers=headers, json={})
        assert body["error"] == "unauthorized"
    await xw.assert_healthy()


async def test_public_routes_need_no_token(xw: XW) -> None:
    assert (await xw.ok("GET", "/version"))["api"] == "v1"
    assert (await xw.ok("GET", "/openapi.json"))["openapi"].startswith("3.")


# -- paths -----------------------------------------------------------------------------------------------------
async def test_unknown_uids_are_404_and_non_uids_400_in_every_path(xw: XW) -> None:
    unknown, t = str(uuid.uuid4()), xw.admin
    for method, path in [
        ("GET", "/jobs/{}"),
        ("DELETE", "/jobs/{}"),
        ("GET", "/data/{}"),
        ("GET", "/data/{}/content"),
        ("DELETE", "/data/{}"),
    ]:
        await expect_refused(xw, method, path.format(unknown), 404, unknown, token=t)
        await expect_refused(xw, method, path.format("not-a-uid"), 400, "not-a-uid", token=t)
    await expect_refused(xw, "GET", f"/apps/{unknown}", 404, token=t)
    await expect_refused(xw, "DELETE", f"/apps/{unknown}", 404, token=t)
    await expect_refused(
        xw, "DELETE", "/apps/no-such-app", 404, "no-such-app", token=t
    )  # apps go by name too
    await expect_refused(xw, "GET", "/apps/no-such-app", 404, "no-such-app", token=t)
    report = {"status": "COMPLETED", "exit_code": 0}
    await expect_refused(
        xw, "POST", f"/work/tasks/{unknown}/report", 404, unknown, token=xw.worker, json=report
    )
    await expect_refused(xw, "POST", "/work/tasks/nope/report", 400, "nope", token=xw.worker, json=report)
    await expect_refused(xw, "POST", f"/work/tasks/{unknown}/result", 404, token=xw.worker, data=b"zip")
    await expect_refused(xw, "POST", "/work/tasks/nope/result", 400, token=xw.worker, data=b"zip")
    await expect_refused(xw, "GET", "/tasks", 400, "job", token=t, params={"job": "nope"})
    await expect_refused(xw, "GET", "/no/such/route", 404, token=t)
    await expect_refused(xw, "PUT", "/jobs", 405, token=t)
    await xw.assert_healthy()


# -- bodies ------------------------------------------------------------------------------------------------------
JSON_ROUTES = [
    "/login",
    "/apps",
    "/jobs",
    "/jobs/bulk",
    "/work/register",
    "/work/request",
    "/work/heartbeat",
    "/work/release",
    f"/work/tasks/{uuid.uuid4()}/report",
]


async def test_malformed_json_is_a_400(xw: XW) -> None:
    for path in JSON_ROUTES:
        token = xw.worker if path.startswith("/work") else xw.admin
        for raw in (b"{not json", b'{"a": 1', b"\xff\xfe\x00", b"", b"{}{}"):
            await expect_refused(
                xw,
                "POST",
                path,
                400,
                token=token,
                data=raw,
                headers={"Content-Type": "application/json"},
            )
    await xw.assert_healthy()


async def test_json_that_is_not_an_object_is_a_400(xw: XW) -> None:
    for raw in (b"[]", b'"text"', b"42", b"null", b"true", b'[{"app": "work"}]'):
        for path in JSON_ROUTES:
            token = xw.worker if path.startswith("/work") else xw.admin
            field = "jobs" if path == "/jobs/bulk" else None
            headers = {"Content-Type": "application/json"}
            await expect_refused(xw, "POST", path, 400, field, token=token, data=raw, headers=headers)
    await xw.assert_healthy()


async def test_a_json_body_over_the_limit_is_a_413(xw: XW) -> None:
    limit = xw.settings.max_json_bytes
    big = {"jobs": [{"app": "work", "label": "x" * 200}] * (limit // 200 + 10)}
    assert len(json.dumps(big)) > limit
    await expect_refused(xw, "POST", "/jobs/bulk", 413, "max_json_bytes", token=xw.admin, json=big)
    await expect_refused(xw, "POST", "/login", 413, json={"login": "admin", "password": "p" * (limit + 1)})
    await expect_refused(
        xw, "POST", "/work/heartbeat", 413, token=xw.worker, json={"task_uids": ["x" * (limit + 1)]}
    )
    await xw.assert_healthy()
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []


async def test_a_data_body_over_the_limit_is_a_413_and_nothing_is_stored(xw: XW) -> None:
    limit = xw.settings.max_body_bytes
    content = b"z" * (limit + 1)
    digest = hashlib.sha256(content).hexdigest()
    params = {"name": "big", "sha256": digest, "size": len(content)}
    await expect_refused(xw, "POST", "/data", 413, "limit", token=xw.admin, data=content, params=params)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is checked while streaming
        for _ in range(4):
            yield b"z" * (limit // 3)

    await expect_refused(
        xw, "POST", "/data", 413, "limit", token=xw.admin, data=chunked(), params={"name": "big"}
    )
    _host, a = await _running_task(xw)
    await expect_refused(
        xw, "POST", f"/work/tasks/{a['task_uid']}/result", 413, "limit", token=xw.worker, data=content
    )
    assert [d["name"] for d in (await xw.ok("GET", "/data", token=xw.admin))["data"]] == ["work"]
    assert [p.name for p in xw.store_files()] == [
        (await xw.ok("GET", "/apps/work", token=xw.admin))["binaries"][0]["sha256"]
    ]
    await xw.assert_healthy()


# -- wrong types and values, field by field --------------------------------------------------------------------
async def test_a_job_spec_with_a_wrong_field_is_a_400_naming_it(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"app": 5}, "app"),
        ({"app": ""}, "app"),
        ({"app": ["work"]}, "app"),
        ({"args": [1, 2]}, "args"),
        ({"args": {"a": 1}}, "args"),
        ({"args": 7}, "args"),
        ({"args": "unbalanced 'quote"}, "args"),
        ({"args": ["a\0b"]}, "args"),
        ({"args": ["x" * 70_000]}, "args"),
        ({"stdin_uid": 5}, "stdin_uid"),
        ({"stdin_uid": "garbage"}, "stdin_uid"),
        ({"env_uid": ["x"]}, "env_uid"),
        ({"env_uid": "garbage"}, "env_uid"),
        ({"label": 5}, "label"),
        ({"label": ""}, "label"),
        ({"label": LONG}, "label"),
        ({"label": NUL}, "label"),
        ({"max_retry": "3"}, "max_retry"),
        ({"max_retry": -1}, "max_retry"),
        ({"max_retry": 1.5}, "max_retry"),
        ({"max_retry": True}, "max_retry"),
        ({"max_retry": 2**63}, "max_retry"),
        ({"colour": "red"}, "colour"),
    ]
    for override, field in cases:
        spec = {"app": "work", **override}
        await expect_refused(xw, "POST", "/jobs", 400, field, token=xw.admin, json=spec)
        await expect_refused(
            xw, "POST", "/jobs/bulk", 400, field, token=xw.admin, json={"jobs": [{"app": "work"}, spec]}
        )
    await expect_refused(xw, "POST", "/jobs/bulk", 400, "jobs", token=xw.admin, json={"jobs": "x"})
    await expect_refused(
        xw, "POST", "/jobs/bulk", 400, "5000", token=xw.admin, json={"jobs": [{"app": "w"}] * 5001}
    )
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []
    await xw.submit(xw.admin, "work")  # a valid one still goes through
    await xw.assert_healthy()


async def test_a_registration_with_a_wrong_field_is_a_400_naming_it(xw: XW) -> None:
    valid: dict[str, Any] = {
        "name": "h",
        "os": "linux",
        "cpu": "x86_64",
        "cores": 4,
        "memory_bytes": 1 << 33,
        "disk_free_bytes": 1 << 35,
        "tags": ["gpu"],
        "version": "1.0",
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": LONG}, "name"),
        ({"name": NUL}, "name"),
        ({"os": 5}, "os"),
        ({"os": "beos"}, "os"),
        ({"cpu": "z80"}, "cpu"),
        ({"cpu": None}, "cpu"),
        ({"cores": "x"}, "cores"),
        ({"cores": -1}, "cores"),
        ({"cores": 1.5}, "cores"),
        ({"cores": True}, "cores"),
        ({"memory_bytes": "8G"}, "memory_bytes"),
        ({"disk_free_bytes": -5}, "disk_free_bytes"),
        ({"tags": "gpu"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": ["x" * 200]}, "tags"),
        ({"version": 5}, "version"),
        ({"version": LONG}, "version"),
    ]
    for override, field in cases:
        await expect_refused(
            xw, "POST", "/work/register", 400, field, token=xw.worker, json={**valid, **override}
        )
    assert (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"] == []
    await xw.ok("POST", "/work/register", token=xw.worker, json=valid)
    await xw.assert_healthy()


async def test_a_work_request_heartbeat_or_release_with_a_wrong_field_is_a_400(xw: XW) -> None:
    host = await xw.register()
    request_cases: list[tuple[dict[str, Any], str]] = [
        ({"capacity": "x"}, "capacity"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 10**6}, "capacity"),
        ({"wait_s": -1}, "wait_s"),
        ({"wait_s": "1"}, "wait_s"),
        ({"wait_s": None}, "wait_s"),
        ({"wait_s": 10**9}, "wait_s"),
        ({"wait_s": float("nan")}, "wait_s"),
        ({"wait_s": float("inf")}, "wait_s"),
        ({"host_uid": 5}, "host_uid"),
        ({"host_uid": None}, "host_uid"),
    ]
    for override, field in request_cases:
        body = {"host_uid": host, "capacity": 1, "wait_s": 0, **override}
        await expect_refused(xw, "POST", "/work/request", 400, field, token=xw.worker, json=body)
    uid_cases: list[tuple[dict[str, Any], str]] = [
        ({"task_uids": "x"}, "task_uids"),
        ({"task_uids": [1]}, "task_uids"),
        ({"task_uids": None}, "task_uids"),
        ({"task_uids": [str(uuid.uuid4())] * 1025}, "task_uids"),
        ({"host_uid": 5}, "host_uid"),
    ]
    for path in ("/work/heartbeat", "/work/release"):
        for override, field in uid_cases:
            body = {"host_uid": host, "task_uids": [], **override}
            await expect_refused(xw, "POST", path, 400, field, token=xw.worker, json=body)
    # someone else's host is not found, whoever asks
    other = await xw.add_user("alice", "STANDARD")
    await expect_refused(
        xw,
        "POST",
        "/work/request",
        404,
        host,
        token=other,
        json={"host_uid": host, "capacity": 1, "wait_s": 0},
    )
    assert await xw.request_work(host) == []
    await xw.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_report_with_a_wrong_field_is_a_400_and_the_task_stays_live(xw: XW) -> None:
    _host, a = await _running_task(xw)
    path = f"/work/tasks/{a['task_uid']}/report"
    bob = await xw.add_user("bob", "STANDARD")
    someone_elses = await xw.upload(bob, b"not a result", name="other")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"status": "DONE"}, "status"),
        ({"status": 5}, "status"),
        ({"status": None}, "status"),
        ({"status": "RUNNING"}, "status"),
        ({"status": "LOST"}, "status"),
        ({"exit_code": "3"}, "exit_code"),
        ({"exit_code": 1.5}, "exit_code"),
        ({"exit_code": True}, "exit_code"),
        ({"exit_code": 2**31}, "exit_code"),
        ({"exit_code": -(2**63) - 1}, "exit_code"),
        ({"message": 5}, "message"),
        ({"message": ["x"]}, "message"),
        ({"result_uid": 5}, "result_uid"),
        ({"result_uid": str(uuid.uuid4())}, "result_uid"),
        ({"result_uid": someone_elses["uid"]}, "result_uid"),  # bob's data is no result of admin's job
    ]
    for override, field in cases:
        body = {"status": "COMPLETED", "exit_code": 0, **override}
        await expect_refused(xw, "POST", path, 400, field, token=xw.worker, json=body)
    [task] = await xw.tasks(a["job_uid"])
    assert task["status"] == "RUNNING"
    done = await xw.ok(
        "POST", path, token=xw.worker, json={"status": "ERROR", "exit_code": 255, "message": LONG}
    )
    assert done == {"job_status": "ERROR"}
    job = await xw.job(a["job_uid"])
    assert (job["exit_code"], len(job["message"])) == (255, 4096)  # long messages are cut, not refused
    await xw.assert_healthy()


async def test_app_and_data_fields_with_wrong_values_are_a_400_naming_them(xw: XW) -> None:
    d = await xw.upload(xw.admin, b"#!/bin/sh\n", name="bin")
    binary = {"os": "linux", "cpu": "x86_64", "data_uid": d["uid"]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": LONG}, "name"),
        ({"name": NUL}, "name"),
        ({"name": str(uuid.uuid4())}, "name"),
        ({"binaries": "x"}, "binaries"),
        ({"binaries": []}, "binaries"),
        ({"binaries": [5]}, "binary"),
        ({"binaries": [{"os": "linux", "cpu": "x86_64"}]}, "data_uid"),
        ({"binaries": [{**binary, "os": 5}]}, "os"),
        ({"binaries": [{**binary, "os": "beos"}]}, "os"),
        ({"binaries": [{**binary, "cpu": "z80"}]}, "cpu"),
        ({"binaries": [{**binary, "data_uid": "garbage"}]}, "data_uid"),
    ]
    for override, field in cases:
        body = {"name": "app", "binaries": [binary], **override}
        await expect_refused(xw, "POST", "/apps", 400, field, token=xw.admin, json=body)
    data_cases: list[tuple[dict[str, Any], str]] = [
        ({"sha256": "zz"}, "sha256"),
        ({"sha256": "0" * 63}, "sha256"),
        ({"size": "x"}, "size"),
        ({"size": -1}, "size"),
        ({"access_rights": "999"}, "access_rights"),
        ({"access_rights": "rwx"}, "access_rights"),
        ({"name": ""}, "name"),
        ({"name": NUL}, "name"),
        ({"name": "x" * 300}, "name"),
    ]
    for params, field in data_cases:
        await expect_refused(xw, "POST", "/data", 400, field, token=xw.admin, data=b"abc", params=params)
    query_cases: list[tuple[str, dict[str, Any], str]] = [
        ("/jobs", {"status": "DONE"}, "status"),
        ("/jobs", {"limit": "x"}, "limit"),
        ("/jobs", {"limit": 0}, "limit"),
        ("/jobs", {"limit": 10**6}, "limit"),
        ("/jobs", {"offset": -1}, "offset"),
        ("/tasks", {"status": "DONE"}, "status"),
        ("/tasks", {"limit": "x"}, "limit"),
    ]
    for path, params, field in query_cases:
        await expect_refused(xw, "GET", path, 400, field, token=xw.admin, params=params)
    assert [x["name"] for x in (await xw.ok("GET", "/data", token=xw.admin))["data"]] == ["bin"]
    assert (await xw.ok("GET", "/apps", token=xw.admin))["apps"] == []
    await xw.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_huge_numbers_in_queries_are_a_400_not_a_500(xw: XW) -> None:
    for path, params, field in [
        ("/jobs", {"offset": 10**30}, "offset"),
        ("/tasks", {"offset": 10**30}, "offset"),
        ("/data", {"size": 10**30}, None),
    ]:
        method = "POST" if path == "/data" else "GET"
        r = await xw.call(
            method, path, token=xw.admin, params=params, data=b"abc" if method == "POST" else None
        )
        assert r.status in (400, 422), f"{path} {params}: {r}"
        if field:
            assert _mentions(r.body["message"], field)
    await xw.assert_healthy()


# -- known bugs: each a failing case, marked until its fix lands (strict: a fix makes them fail) ------------


async def test_a_malformed_host_task_or_result_uid_is_a_400_naming_its_field(xw: XW) -> None:
    host, a = await _running_task(xw)
    work = {"host_uid": "garbage", "capacity": 1, "wait_s": 0, "task_uids": []}
    for path in ("/work/request", "/work/heartbeat", "/work/release"):
        await expect_refused(xw, "POST", path, 400, "host_uid", token=xw.worker, json=work)
    for path in ("/work/heartbeat", "/work/release"):
        body = {"host_uid": host, "task_uids": ["garbage"]}
        await expect_refused(xw, "POST", path, 400, "task_uids", token=xw.worker, json=body)
    await expect_refused(
        xw,
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        400,
        "result_uid",
        token=xw.worker,
        json={"status": "COMPLETED", "result_uid": "garbage"},
    )
    for bad in ("garbage", 5):
        register = {"name": "h", "os": "linux", "cpu": "x86_64", "host_uid": bad}
        await expect_refused(xw, "POST", "/work/register", 400, "host_uid", token=xw.worker, json=register)


async def test_a_worker_cannot_report_the_owners_input_as_its_result(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    # readable by the worker (else no worker is given the job), but the owner's
    secret = await xw.upload(xw.admin, b"the owner's precious input", name="in.dat", access_rights="0744")
    job = await xw.submit(xw.admin, "work", stdin_uid=secret["uid"])
    [a] = await xw.request_work(await xw.register())
    assert a["stdin"]["data_uid"] == secret["uid"]  # the worker is told this UID
    r = await xw.call(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": secret["uid"]},
    )
    if r.status == 200:  # the harm: removing the job removes the owner's input with it
        await xw.ok("DELETE", f"/jobs/{job['uid']}", token=xw.admin)
        still = await xw.call("GET", f"/data/{secret['uid']}", token=xw.admin)
        assert still.status == 200, f"the job's input was deleted with the job: {still}"
    assert r.status == 400 and _mentions(r.body["message"], "result_uid"), r


@pytest.mark.parametrize("backend", BACKENDS)
async def test_host_sizes_past_their_columns_are_a_400(xw: XW) -> None:
    valid = {"name": "h", "os": "linux", "cpu": "x86_64", "cores": 4}
    for field, value in (("cores", 2**40), ("memory_bytes", 2**64), ("disk_free_bytes", 2**70)):
        body = {**valid, field: value}
        await expect_refused(xw, "POST", "/work/register", 400, field, token=xw.worker, json=body)
    assert (await xw.ok("GET", "/hosts", token=xw.admin))["hosts"] == []


async def test_a_request_line_past_the_limit_is_a_json_400_without_a_traceback(xw: XW) -> None:
    await expect_refused(xw, "POST", "/data", 400, None, token=xw.admin, data=b"x", params={"name": LONG})


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
async def test_a_nul_in_free_text_is_refused_or_stored_on_every_backend(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    await xw.submit(xw.admin, "work")
    r = await xw.call(
        "POST",
        "/work/register",
        token=xw.worker,
        json={"name": "h", "os": "linux", "cpu": "x86_64", "version": NUL, "tags": [NUL]},
    )
    assert r.status in (200, 400), r
    host = r.body["host_uid"] if r.status == 200 else await xw.register()
    [a] = await xw.request_work(host)
    r = await xw.call(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "ERROR", "message": NUL},
    )
    assert r.status in (200, 400), r
    await xw.assert_healthy()


# -- rights ------------------------------------------------------------------------------------------------------
async def test_a_worker_identity_may_not_act_as_a_user(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    d = await xw.upload(xw.admin, b"#!/bin/sh\n")
    for method, path, kw in [
        ("POST", "/jobs", {"json": {"app": "work"}}),
        ("POST", "/jobs/bulk", {"json": {"jobs": [{"app": "work"}]}}),
        (
            "POST",
            "/apps",
            {"json": {"name": "mine", "binaries": [{"os": "any", "cpu": "any", "data_uid": d["uid"]}]}},
        ),
        ("POST", "/data", {"data": b"x", "params": {"name": "x"}}),
    ]:
        body = await expect_refused(xw, method, path, 403, "WORKER", token=xw.worker, **kw)
        assert body["error"] == "forbidden"
    for method, path, kw in [("DELETE", "/apps/work", {}), ("DELETE", f"/data/{d['uid']}", {})]:
        body = await expect_refused(xw, method, path, 403, "needs STANDARD", token=xw.worker, **kw)
        assert body["error"] == "forbidden"
    assert (await xw.ok("GET", "/jobs", token=xw.admin))["jobs"] == []
    assert [a["name"] for a in (await xw.ok("GET", "/apps", token=xw.admin))["apps"]] == ["work"]
    await xw.assert_healthy()


async def test_a_user_sees_and_changes_only_what_is_theirs(xw: XW) -> None:
    await xw.insert_app(xw.admin, "work")
    admins = await xw.submit(xw.admin, "work")
    alice = await xw.add_user("alice", "STANDARD")
    bob = await xw.add_user("bob", "STANDARD")
    await xw.insert_app(alice, "alices-app")
    mine = await xw.submit(alice, "alices-app")
    assert mine["access_rights"] == "0700"  # a STANDARD user's app is private
    # a public job (its app's rights, 0755) is seen by all, changed by its owner only
    assert (await xw.ok("GET", f"/jobs/{admins['uid']}", token=alice))["access_rights"] == "0755"
    await expect_refused(xw, "DELETE", f"/jobs/{admins['uid']}", 403, "not yours", token=alice)
    await expect_refused(xw, "GET", f"/jobs/{mine['uid']}", 404, token=bob)
    await expect_refused(xw, "POST", "/jobs", 404, "alices-app", token=bob, json={"app": "alices-app"})
    await expect_refused(xw, "DELETE", "/apps/work", 403, token=alice)
    assert [j["uid"] for j in (await xw.ok("GET", "/jobs", token=alice))["jobs"]] == [
        admins["uid"],
        mine["uid"],
    ]
    assert [j["uid"] for j in (await xw.ok("GET", "/jobs", token=bob))["jobs"]] == [admins["uid"]]
    mine_only = await xw.ok("GET", "/jobs", token=alice, params={"owner": "me"})
    assert [j["uid"] for j in mine_only["jobs"]] == [mine["uid"]]
    # a private job goes to no public worker
    host = await xw.register()
    assert [a["job_uid"] for a in await xw.request_work(host, capacity=5)] == [admins["uid"]]
    await xw.assert_healthy()


# -- hostile names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
async def test_hostile_names_are_refused_or_stored_literally(xw: XW) -> None:
    # SQL fragments are just names: stored as given, harmless
    for name in (SQL, "robert'); DELETE FROM users; --", "%s %d {0} $1 ?", "..."):
        d = await xw.upload(xw.admin, name.encode(), name=name)
        assert (await xw.ok("GET", f"/data/{d['uid']}", token=xw.admin))["name"] == name
    app = await xw.insert_app(xw.admin, SQL)
    assert app["name"] == SQL
    assert (await xw.ok("GET", f"/apps/{quote(SQL, safe='')}", token=xw.admin))["uid"] == app["uid"]
    job = await xw.submit(xw.admin, SQL, label=SQL, args=[SQL, TRAVERSAL])
    assert (job["label"], job["args"]) == (SQL, [SQL, TRAVERSAL])
    found = (await xw.ok("GET", "/jobs", token=xw.admin, params={"label": SQL}))["jobs"]
    assert [j["uid"] for j in found] == [job["uid"]]
    host = await xw.register(name=SQL)
    [a] = await xw.request_work(host)
    assert a["app_name"] == SQL

    # what is not a name is refused clearly
    await expect_refused(xw, "POST", "/jobs", 400, "label", token=xw.admin, json={"app": SQL, "label": NUL})
    await expect_refused(xw, "POST", "/jobs", 400, "label", token=xw.admin, json={"app": SQL, "label": LONG})
    await expect_refused(xw, "POST", "/data", 400, "name", token=xw.admin, data=b"x", params={"name": NUL})
    await expect_refused(
        xw, "POST", "/data", 400, "name", token=xw.admin, data=b"x", params={"name": "x" * 300}
    )
    # names end up in file names and on terminals: no path separator, no control or
    # bidirectional character (U+202E shows "invoice\u202etxt.exe" as "invoiceexe.txt")
    for bad in (
        TRAVERSAL,
        "..",
        "a\\b",
        "invoice\u202etxt.exe",
        "x\u2066y",
        "bell\x07",
        "del\x7f",
        "c1\x9b[2J",
    ):
        await expect_refused(
            xw, "POST", "/data", 400, "name", token=xw.admin, data=b"x", params={"name": bad}
        )
        await expect_refused(
            xw, "POST", "/jobs", 400, "label", token=xw.admin, json={"app": SQL, "label": bad}
        )
        await expect_refused(xw, "POST", "/sessions", 400, "name", token=xw.admin, json={"name": bad})
        await expect_refused(xw, "POST", "/groups", 400, "name", token=xw.admin, json={"name": bad})
        binary = {"os": "any", "cpu": "any", "data_uid": app["binaries"][0]["data_uid"]}
        await expect_refused(
            xw, "POST", "/apps", 400, "name", token=xw.admin, json={"name": bad, "binaries": [binary]}
        )
        await expect_refused(xw, "POST", "/usergroups", 400, "label", token=xw.admin, json={"label": bad})

    # hostile logins and lookups are unknown, never an error of the server
    for login in (SQL, "admin' OR '1'='1", "admin'--", NUL, "admin\0", LONG, TRAVERSAL):
        await expect_refused(xw, "POST", "/login", 401, json={"login": login, "password": "x"})
    for label in (NUL, "x" * 300):
        r = await xw.call("GET", "/jobs", token=xw.admin, params={"label": label})
        assert r.status in (200, 400) and (r.status == 400 or r.body["jobs"] == []), r
    for ref in (NUL, "x" * 300, TRAVERSAL, "%00"):
        r = await xw.call("GET", f"/apps/{quote(ref, safe='')}", token=xw.admin)
        assert r.status in (400, 404), f"{ref!r:.40}: {r}"

    # nothing was dropped or deleted: every table still answers and holds what it held
    assert len((await xw.ok("GET", "/jobs", token=xw.admin))["jobs"]) == 1
    assert len((await xw.ok("GET", "/data", token=xw.admin))["data"]) == 5
    assert len((await xw.ok("GET", "/sessions", token=xw.admin))["sessions"]) == 0
    assert len((await xw.ok("GET", "/hosts", token=xw.admin))["hosts"]) == 1
    assert await xw.login("admin", xw.admin_password)
    assert xw.settings.data_dir.resolve() in {p.resolve().parent.parent for p in xw.store_files()}
    await xw.assert_healthy()


# -- the OpenAPI document ------------------------------------------------------------------------------------------
async def test_the_openapi_document_lists_exactly_the_routes_of_the_router(xw: XW) -> None:
    doc = await xw.ok("GET", "/openapi.json")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    app = create_app(xw.srv)  # the application the server runs, built the same way
    every = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    routed = {(m, path) for m, path in every if path.startswith("/api/v1/")}
    assert documented == routed
    # beyond the API: /metrics and the dashboard's pages, which check access their own way
    beyond = {path for m, path in every - routed}
    assert beyond == {
        "/metrics", "/", "/login", "/logout", "/jobs", "/jobs/{uid}", "/jobs/{uid}/result", "/submit",
        "/workers", "/users", "/groups", "/static/style.css",
    }  # fmt: skip
    assert doc == document(ROUTES, xw.srv)
    assert doc["servers"] == [{"url": xw.url}]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["operationId"], (method, path)
            public = path.endswith(("/login", "/login/host", "/version", "/openapi.json"))
            assert (op.get("security") == []) is public, (method, path)
