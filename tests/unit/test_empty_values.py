"""Empty values say nothing, so the server does not guess what they meant.

- A list filter given empty (``GET /jobs?session=``, ``GET /tasks?job=``) is a 400 naming the
  parameter: dropping it in silence lists everything, which ``xwrm`` by selection would then
  remove. ``status=`` (every status) and ``owner=`` (no owner filter) keep their meaning.
- ``POST /data`` with no content: XWHEP's data is a file the client sends (its size and
  digest travel with it); a request whose body is empty and that announced no size lost its
  content on the way, or never had any, so it is a 400 saying what is missing. Empty data is
  still legitimate when declared: ``size=0`` (and, if given, the sha256 of nothing).
- A literal path's other methods are a 405 with ``Allow``, not a UID that is malformed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from xwserver.data import EMPTY_BODY

if TYPE_CHECKING:
    from conftest import XW

NOTHING_SHA = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/jobs", "session"),
        ("/jobs", "group"),
        ("/jobs", "label"),
        ("/jobs", "limit"),
        ("/jobs", "offset"),
        ("/tasks", "job"),
        ("/tasks", "limit"),
    ],
)
async def test_an_empty_list_filter_is_refused_naming_it(xw: XW, path: str, name: str) -> None:
    reply = await xw.call("GET", path, token=xw.admin, params={name: ""})
    assert reply.status == 400, reply
    assert reply.body["message"] == f"query parameter {name} is empty; give a value or leave it out"


async def test_an_empty_filter_is_refused_before_anything_is_listed_or_removed(xw: XW) -> None:
    """The session filter of a user who gave none must not become every job."""
    app = await xw.insert_app(xw.admin, "tool")
    session = await xw.ok("POST", "/sessions", token=xw.admin, json={"name": "s"})
    inside = await xw.submit(xw.admin, app["name"], session_uid=session["uid"])
    outside = await xw.submit(xw.admin, app["name"])
    listed = await xw.ok("GET", "/jobs", token=xw.admin, params={"session": session["uid"]})
    assert [j["uid"] for j in listed["jobs"]] == [inside["uid"]]
    assert (await xw.call("GET", "/jobs", token=xw.admin, params={"session": ""})).status == 400
    tasks = await xw.call("GET", "/tasks", token=xw.admin, params={"job": ""})
    assert tasks.status == 400 and "job" in tasks.body["message"]
    assert (await xw.job(outside["uid"]))["status"] == "PENDING"


async def test_status_and_owner_given_empty_keep_their_meaning(xw: XW) -> None:
    app = await xw.insert_app(xw.admin, "tool")
    job = await xw.submit(xw.admin, app["name"])
    for params in ({"status": ""}, {"owner": ""}, {"status": "", "owner": ""}):
        listed = await xw.ok("GET", "/jobs", token=xw.admin, params=params)
        assert [j["uid"] for j in listed["jobs"]] == [job["uid"]], params
    assert (await xw.ok("GET", "/tasks", token=xw.admin, params={"status": ""}))["tasks"] == []
    assert (await xw.ok("GET", "/data", token=xw.admin, params={"owner": ""}))["data"]


@pytest.mark.parametrize("name", ["name", "access_rights", "sha256"])
async def test_an_upload_with_an_empty_parameter_is_refused_naming_it(xw: XW, name: str) -> None:
    before = xw.store_files()
    reply = await xw.call("POST", "/data", token=xw.admin, data=b"content", params={name: "", "size": 7})
    assert reply.status == 400, reply
    assert name in reply.body["message"]
    assert xw.store_files() == before


async def test_an_upload_with_no_body_and_no_size_is_refused_saying_what_is_missing(xw: XW) -> None:
    before = xw.store_files()
    headers = {"Content-Type": "application/octet-stream"}
    for params in ({}, {"name": "empty"}, {"name": "empty", "sha256": NOTHING_SHA}):
        reply = await xw.call("POST", "/data", token=xw.admin, data=b"", params=params, headers=headers)
        assert reply.status == 400, (params, reply)
        assert reply.body["message"] == EMPTY_BODY
        assert "size=0" in EMPTY_BODY and NOTHING_SHA in EMPTY_BODY
    no_body = await xw.call("POST", "/data", token=xw.admin, params={"name": "none"})
    assert no_body.status == 400 and no_body.body["message"] == EMPTY_BODY
    assert xw.store_files() == before
    assert (await xw.ok("GET", "/data", token=xw.admin))["data"] == []


async def test_a_chunked_upload_that_sends_nothing_is_refused_too(xw: XW) -> None:
    """No Content-Length to judge by: the server waits for the first bytes, and none come."""

    async def nothing() -> AsyncIterator[bytes]:
        for _ in ():
            yield b""

    reply = await xw.call("POST", "/data", token=xw.admin, data=nothing(), params={"name": "chunked"})
    assert reply.status == 400 and reply.body["message"] == EMPTY_BODY, reply
    assert (await xw.ok("GET", "/data", token=xw.admin))["data"] == []

    async def some() -> AsyncIterator[bytes]:
        yield b""
        yield b"late"

    taken = await xw.call("POST", "/data", token=xw.admin, data=some(), params={"name": "late"})
    assert taken.status == 201 and taken.body["size"] == 4, taken


async def test_empty_data_declared_with_size_0_is_stored(xw: XW) -> None:
    for params in ({"name": "empty", "size": 0}, {"name": "empty2", "size": 0, "sha256": NOTHING_SHA}):
        made = await xw.ok("POST", "/data", token=xw.admin, data=b"", params=params, expect=201)
        assert (made["size"], made["sha256"], made["status"]) == (0, NOTHING_SHA, "AVAILABLE")
        content = await xw.call("GET", f"/data/{made['uid']}/content", token=xw.admin)
        assert content.status == 200 and content.body == b""
    wrong = await xw.call("POST", "/data", token=xw.admin, data=b"", params={"size": 0, "sha256": "0" * 64})
    assert wrong.status == 422, wrong
    longer = await xw.call("POST", "/data", token=xw.admin, data=b"x", params={"size": 0})
    assert longer.status == 422, longer
    shorter = await xw.call("POST", "/data", token=xw.admin, data=b"", params={"size": 3})
    assert shorter.status == 422, shorter


async def test_a_result_upload_with_no_body_and_no_size_is_refused_too(xw: XW) -> None:
    app = await xw.insert_app(xw.admin, "tool")
    await xw.submit(xw.admin, app["name"])
    host = await xw.register()
    [task] = await xw.request_work(host)
    path = f"/work/tasks/{task['task_uid']}/result"
    reply = await xw.call("POST", path, token=xw.worker, data=b"")
    assert reply.status == 400 and reply.body["message"] == EMPTY_BODY, reply


@pytest.mark.parametrize(("method", "path"), [("GET", "/jobs/bulk"), ("DELETE", "/jobs/delete")])
async def test_a_literal_path_answers_405_to_other_methods(xw: XW, method: str, path: str) -> None:
    reply = await xw.call(method, path, token=xw.admin)
    assert reply.status == 405, reply
    assert reply.headers["Allow"] == "POST"
    assert reply.body["error"] == "method_not_allowed"
