"""The worker's routes (``/work/*``) take exactly what their document says, no more, no less.

Each body below is posted to a real server as the deployment's public worker, and checked
against the request schema of the server's own OpenAPI document (JSON Schema 2020-12, as
schemathesis reads it). The server refusing a body is a 400; any other answer (404 for a
task nobody holds, 422 for an inline result that does not match its sha256) means the body
was taken as valid. The two verdicts and the expected one must be the same.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import TYPE_CHECKING, Any

import jsonschema
import msgspec
import pytest

from xwcommon import defaults
from xwcommon.protocol import work as w

if TYPE_CHECKING:
    from conftest import XW

UID = str(uuid.uuid4())
#: the host registered for the test; filled in by the test
HOST = "{host}"
ZERO_SHA = "0" * 64
MAX_INLINE = w.INLINE_RESULT_MAX_BYTES


@pytest.fixture
def backend() -> str:
    return "sqlite"


def _b64(n: int) -> str:
    return base64.b64encode(b"x" * n).decode()


def _host(**fields: Any) -> dict[str, Any]:
    return {"name": "host", "os": "linux", "cpu": "x86_64", **fields}


def _ask(**fields: Any) -> dict[str, Any]:
    return {"host_uid": HOST, "wait_s": 0, **fields}


def _report(**fields: Any) -> dict[str, Any]:
    return {"status": "ERROR", **fields}


REGISTER = "/work/register"
REQUEST = "/work/request"
HEARTBEAT = "/work/heartbeat"
REPORT = f"/work/tasks/{UID}/report"
RELEASE = "/work/release"

#: (path, body, whether it is valid)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    (REGISTER, _host(), True),
    (REGISTER, _host(os="LINUX", cpu="AMD64"), True),
    (REGISTER, _host(os=" MacOSX ", cpu="arm64"), True),
    (REGISTER, _host(os="", cpu="x86_64"), False),
    (REGISTER, _host(cpu=""), False),
    (REGISTER, {"name": "host", "cpu": "x86_64"}, False),
    (REGISTER, {"name": "host", "os": "linux"}, False),
    (REGISTER, _host(os="plan9"), False),
    (REGISTER, _host(cpu="z80"), False),
    (REGISTER, _host(name=""), False),
    (REGISTER, _host(name="   "), False),
    (REGISTER, _host(name=" a b "), True),
    (REGISTER, _host(name="host\n"), False),
    (REGISTER, _host(name="x" * 256), False),
    (REGISTER, _host(cores=4.0, memory_bytes=8.0 * 2**30), True),
    (REGISTER, _host(cores=4.5), False),
    (REGISTER, _host(cores=-1), False),
    (REGISTER, _host(disk_free_bytes=2**62 + 1), False),
    (REGISTER, _host(tags=["gpu", ""]), True),
    (REGISTER, _host(tags=["a\x00"]), False),
    (REGISTER, _host(gpus=[{"name": "A100", "memory_bytes": 2.0**30}]), True),
    (REGISTER, _host(gpus=[{"name": ""}]), False),
    (REGISTER, _host(held=[UID.upper()]), False),
    (REGISTER, _host(activation={"state": "idle"}), False),
    (REGISTER, _host(shell="/bin/sh"), False),
    (REQUEST, _ask(), True),
    (REQUEST, _ask(capacity=2.0, wait_s=0.0), True),
    (REQUEST, _ask(capacity=0), False),
    (REQUEST, _ask(capacity=257), False),
    (REQUEST, _ask(wait_s=60.5), False),
    (REQUEST, _ask(reports=[_report(task_uid=UID, exit_code=2.0)]), True),
    (REQUEST, _ask(reports=[_report(task_uid=UID, exit_code=-(2**31))]), True),
    (REQUEST, _ask(reports=[_report(task_uid=UID, exit_code=2**31)]), False),
    (REQUEST, _ask(reports=[_report(task_uid=UID, exit_code=2.5)]), False),
    (REQUEST, _ask(reports=[_report()]), False),
    (REQUEST, _ask(reports=[_report(task_uid=None)]), False),
    (REQUEST, _ask(reports=[_report(task_uid=UID, status="DONE")]), False),
    (REQUEST, _ask(reports=[_report(task_uid=UID, accounting={"wall_s": 1, "max_rss_bytes": 2.0})]), True),
    (REQUEST, _ask(reports=[_report(task_uid=UID, accounting={"wall_s": -1})]), False),
    (REQUEST, _ask(held=[UID], free_memory_bytes=0, network=False), True),
    (REQUEST, _ask(host_uid="nope"), False),
    (REQUEST, {"wait_s": 0}, False),
    (HEARTBEAT, {"host_uid": HOST, "task_uids": [UID], "seen_seq": 3.0}, True),
    (HEARTBEAT, {"host_uid": HOST, "seen_seq": -1}, False),
    (HEARTBEAT, {"host_uid": HOST, "seen_seq": 1.5}, False),
    (HEARTBEAT, {"host_uid": HOST, "activation": {"state": "suspended", "detail": "busy"}}, True),
    (HEARTBEAT, {"host_uid": HOST, "activation": {"state": "active", "detail": "a\nb"}}, False),
    (REPORT, _report(exit_code=2.0), True),
    (REPORT, _report(task_uid=UID, exit_code=0), False),  # the path names the task, alone
    (REPORT, _report(exit_code="2"), False),
    (REPORT, _report(message="NUL \x00 and all"), True),
    (REPORT, _report(result_uid=UID, result_inline={"content_b64": "", "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": "AAAA", "sha256": ZERO_SHA}), True),
    (REPORT, _report(result_inline={"content_b64": "AA==", "sha256": ZERO_SHA}), True),
    (REPORT, _report(result_inline={"content_b64": "#\u00fc\u00014", "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": "AAA", "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": "AAAA=", "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": "AAAA\n", "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": _b64(MAX_INLINE), "sha256": ZERO_SHA}), True),
    (REPORT, _report(result_inline={"content_b64": _b64(MAX_INLINE + 1), "sha256": ZERO_SHA}), False),
    (REPORT, _report(result_inline={"content_b64": "AAAA", "sha256": "A" * 64}), False),
    (RELEASE, {"host_uid": HOST, "task_uids": [UID]}, True),
    (RELEASE, {"host_uid": HOST, "task_uids": UID}, False),
]


def _fill(value: Any, host: str) -> Any:
    if value == HOST:
        return host
    if isinstance(value, dict):
        return {k: _fill(v, host) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, host) for v in value]
    return value


def _document_takes(doc: dict[str, Any], path: str, body: Any) -> bool:
    template = path.replace(UID, "{uid}")
    op = doc["paths"][defaults.API_PREFIX + template]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
    return validator.is_valid(body)


async def test_the_worker_routes_take_exactly_what_their_document_says(xw: XW) -> None:
    host = await xw.register()
    doc = (await xw.call("GET", "/openapi.json")).body
    disagree = []
    for path, raw, valid in CASES:
        body = _fill(raw, host)
        by_document = _document_takes(doc, path, body)
        reply = await xw.call("POST", path, token=xw.worker, json=body)
        assert reply.status < 500, (path, raw, reply)
        by_server = reply.status != 400
        if not by_document == by_server == valid:
            disagree.append(f"{path} {raw!r}: expected {valid}, document {by_document}, server {reply}")
    assert not disagree, "\n".join(disagree)
    await xw.assert_healthy()


async def test_a_refused_worker_body_names_the_field_in_words(xw: XW) -> None:
    host = await xw.register()
    cases = [
        (REGISTER, _host(os=""), '"os": expected `str` naming an OS: linux, darwin, windows or any'),
        (REGISTER, _host(cpu="z80"), '"cpu": expected `str` naming a CPU'),
        (REGISTER, _host(name="  "), '"name": expected `str` of printable characters, not all blank'),
        (REQUEST, _ask(host_uid=host, reports=[_report()]), '"reports[0].task_uid" is required'),
        (
            REPORT,
            _report(result_inline={"content_b64": "#!", "sha256": ZERO_SHA}),
            '"result_inline.content_b64": expected `str` in standard padded base64',
        ),
        (
            REPORT,
            _report(result_inline={"content_b64": _b64(MAX_INLINE + 1), "sha256": ZERO_SHA}),
            f'"result_inline.content_b64": expected `str` in standard padded base64, of at most {MAX_INLINE} bytes',
        ),
    ]
    for path, body, said in cases:
        reply = await xw.call("POST", path, token=xw.worker, json=body)
        assert reply.status == 400 and said in reply.body["message"], (path, reply)


async def test_integral_numbers_are_integers_on_the_worker_routes(xw: XW) -> None:
    """``2.0`` is the integer 2 to JSON: a report's exit code written so is stored as 2."""
    app = await xw.insert_app(xw.admin, "tool")
    job = await xw.submit(xw.admin, app["name"])
    host = await xw.register()
    [task] = await xw.request_work(host)
    body = {"status": "ERROR", "exit_code": 2.0, "accounting": {"max_rss_bytes": 1024.0}}
    raw = msgspec.json.encode(body)
    assert b"2.0" in raw
    reply = await xw.call(
        "POST",
        f"/work/tasks/{task['task_uid']}/report",
        token=xw.worker,
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 200, reply
    done = await xw.job(job["uid"])
    assert done["exit_code"] == 2 and isinstance(done["exit_code"], int)
    [shown] = await xw.tasks(job["uid"])
    assert shown["accounting"]["max_rss_bytes"] == 1024


async def test_a_report_riding_on_a_work_request_names_its_task(xw: XW) -> None:
    """What the worker sends (a TaskReport) is taken; the same report without its task is not."""
    app = await xw.insert_app(xw.admin, "tool")
    job = await xw.submit(xw.admin, app["name"])
    host = await xw.register()
    [task] = await xw.request_work(host)
    content = b"PK\x05\x06" + b"\x00" * 18  # an empty zip
    inline = w.InlineResult(
        content_b64=base64.b64encode(content).decode(), sha256=hashlib.sha256(content).hexdigest()
    )
    riding = w.TaskReport(task_uid=task["task_uid"], status="COMPLETED", exit_code=0, result_inline=inline)
    without = {k: v for k, v in riding.to_wire().items() if k != "task_uid"}
    request = w.WorkRequest(host_uid=host, wait_s=0).to_wire()
    refused = await xw.call("POST", REQUEST, token=xw.worker, json={**request, "reports": [without]})
    assert refused.status == 400, refused
    assert (await xw.job(job["uid"]))["status"] == "RUNNING"
    taken = await xw.ok(
        "POST",
        REQUEST,
        token=xw.worker,
        json=w.WorkRequest(host_uid=host, wait_s=0, reports=[riding]).to_wire(),
    )
    assert taken["reported"] == [{"task_uid": task["task_uid"], "job_status": "COMPLETED"}]
    assert (await xw.job(job["uid"]))["status"] == "COMPLETED"
