"""JSON endpoints take JSON only (415 otherwise), and ``xw://`` URIs must name this server.

Both were accepted before: a ``text/plain`` body was parsed as JSON, and
``xw://evil:1/<uid>`` was taken for the local object ``<uid>``, the foreign host ignored.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from xwserver.api.routes import ROUTES

if TYPE_CHECKING:
    from conftest import XW

JSON_ROUTES = [r for r in ROUTES if r.body == "json"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_every_json_endpoint_answers_415_to_another_content_type(
    xw: XW, content_type: str | None
) -> None:
    body = json.dumps({"login": "admin", "password": xw.admin_password}).encode()
    for r in JSON_ROUTES:
        path = r.path.replace("{uid}", "0b7c5c2e-4b8f-4a57-9a3f-6f0d8a1c2b3d").replace("{key}", "admin")
        headers = {"Content-Type": content_type} if content_type else {}
        token = None if r.public else xw.admin
        if r.path.startswith("/work/"):
            token = xw.worker
        reply = await xw.call(r.method, path, token=token, data=body, headers=headers)
        where = f"{r.method} {r.path} with {content_type}"
        assert reply.status == 415, f"{where}: {reply}"
        assert reply.body["error"] == "unsupported_media_type", where
        assert "application/json" in reply.body["message"], where
    await xw.assert_healthy()


async def test_json_with_a_charset_or_a_json_suffix_is_taken(xw: XW) -> None:
    body = json.dumps({"name": "s1"}).encode()
    for content_type in ("application/json; charset=utf-8", "application/vnd.xw+json"):
        reply = await xw.call(
            "POST", "/sessions", token=xw.admin, data=body, headers={"Content-Type": content_type}
        )
        assert reply.status == 201, (content_type, reply)


async def test_a_uri_naming_another_server_is_refused_with_its_name(xw: XW) -> None:
    await xw.insert_app(xw.admin, "tool")
    stdin = await xw.upload(xw.admin, b"input", name="in.txt")
    uid = stdin["uid"]
    own = stdin["uri"]
    assert own == f"xw://{xw.settings.netloc}/{uid}"

    # its own URI is the object
    job = await xw.submit(xw.admin, "tool", stdin_uid=own)
    assert job["stdin_uid"] == uid
    assert (await xw.ok("GET", f"/data/{own.replace('/', '%2F')}", token=xw.admin))["uid"] == uid

    for foreign in (f"xw://evil:1/{uid}", f"xw://EVIL.example.org/{uid}", f"xw:///{uid}"):
        reply = await xw.call("POST", "/jobs", token=xw.admin, json={"app": "tool", "stdin_uid": foreign})
        assert reply.status == 400, (foreign, reply)
        server = foreign[len("xw://") :].split("/", 1)[0]
        assert f"names server {server!r}" in reply.body["message"], reply
        assert xw.settings.netloc in reply.body["message"], reply
        reply = await xw.call("POST", "/jobs/delete", token=xw.admin, json={"uids": [foreign]})
        assert reply.status == 400 and "names server" in reply.body["message"], reply
    await xw.assert_healthy()


@pytest.fixture
def server_conf() -> dict[str, str]:
    return {"server.aliases": "xw-b.example.org:4330 other:4331"}


async def test_a_uri_naming_an_alias_of_the_deployment_is_taken(xw: XW) -> None:
    await xw.insert_app(xw.admin, "tool")
    stdin = await xw.upload(xw.admin, b"input", name="in.txt")
    for alias in ("xw-b.example.org:4330", "OTHER:4331"):
        job = await xw.submit(xw.admin, "tool", stdin_uid=f"xw://{alias}/{stdin['uid']}")
        assert job["stdin_uid"] == stdin["uid"]
    reply = await xw.call(
        "POST", "/jobs", token=xw.admin, json={"app": "tool", "stdin_uid": f"xw://other:9/{stdin['uid']}"}
    )
    assert reply.status == 400 and "names server 'other:9'" in reply.body["message"], reply


async def test_a_405_lists_the_documented_methods_of_the_path_in_allow(xw: XW) -> None:
    for method, path, allow in (
        ("OPTIONS", "/jobs/bulk", "POST"),
        ("TRACE", "/users/me", "GET"),
        ("PUT", "/jobs/0b7c5c2e-4b8f-4a57-9a3f-6f0d8a1c2b3d", "DELETE,GET"),
    ):
        reply = await xw.call(method, path, token=xw.admin)
        assert reply.status == 405, reply
        assert reply.headers["Allow"] == allow, (path, reply.headers.get("Allow"))
        assert allow in reply.body["message"]
