"""The protocol types, the route table and the OpenAPI document agree with the server.

Every route names the type of its body and of its answer (``xwserver/api/route.py``); the
OpenAPI document is generated from them. These tests make drift impossible both ways:

- the route table: every route says both, with types of the protocol;
- a real server is driven through every endpoint, and each JSON answer must convert to the
  declared type (``msgspec.convert(strict=True)``) *and* hold no field the type does not
  declare, so a field added to ``xwserver/wire.py`` without the protocol fails here;
- valid and invalid bodies are posted, and the server's verdict must be the type's;
- the document is valid OpenAPI 3.1 and lists exactly the types of the table.

On SQLite; the answers' types also on PostgreSQL and MariaDB (each database's column types
rendered to the wire). The verdicts on bodies are the request types' and the handlers', taken
before the database: they need no other database.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect as mi
import pytest

from xwcommon import defaults, platforms
from xwcommon.errors import BadRequest
from xwcommon.levels import UserLevel
from xwcommon.protocol import Answer, Request
from xwcommon.protocol import client as c
from xwcommon.protocol import work as w
from xwcommon.uri import is_uid
from xwserver import data, groups, jobs, users
from xwserver.api.openapi import ERROR_CODES, document
from xwserver.api.route import BINARY, Route
from xwserver.api.routes import ROUTES

if TYPE_CHECKING:
    from conftest import XW


# -- checking a JSON value against a type, exactly -------------------------------------------------------------
def _unwrap(info: mi.Type) -> mi.Type:
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def unknown_fields(value: Any, t: Any, where: str = "$") -> list[str]:
    """The keys of ``value`` that ``t`` does not declare, at any depth (answers accept unknown
    fields on the wire; here each one is a field the protocol lacks)."""
    info = _unwrap(t if isinstance(t, mi.Type) else mi.type_info(t))
    if isinstance(info, mi.UnionType):
        members = [_unwrap(m) for m in info.types]
        if isinstance(value, dict):
            structs = [m for m in members if isinstance(m, mi.StructType)]
            tagged = [s for s in structs if s.tag_field and value.get(s.tag_field) == s.tag]
            if tagged or len(structs) == 1:
                return unknown_fields(value, (tagged or structs)[0], where)
            dicts = [m for m in members if isinstance(m, mi.DictType)]
            return unknown_fields(value, dicts[0], where) if dicts else []
        if isinstance(value, list):
            lists = [m for m in members if isinstance(m, mi.ListType)]
            return unknown_fields(value, lists[0], where) if lists else []
        return []
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        known = {f.encode_name: f for f in info.fields}
        extra = [f"{where}.{k}" for k in value if k not in known and k != info.tag_field]
        nested = [
            x
            for k, f in known.items()
            if k in value
            for x in unknown_fields(value[k], f.type, f"{where}.{k}")
        ]
        return extra + nested
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return [
            x for i, item in enumerate(value) for x in unknown_fields(item, info.item_type, f"{where}[{i}]")
        ]
    if isinstance(info, mi.DictType) and isinstance(value, dict):
        return [x for k, v in value.items() for x in unknown_fields(v, info.value_type, f"{where}.{k}")]
    return []


def assert_is(value: Any, t: Any, what: str) -> Any:
    """``value`` (parsed JSON) is exactly of type ``t``: it converts strictly, and has no
    field ``t`` does not declare."""
    try:
        converted = msgspec.convert(value, t, strict=True)
    except msgspec.ValidationError as exc:
        raise AssertionError(f"{what}: the answer is not a {t}: {exc}\n{value!r}") from None
    extra = unknown_fields(value, t)
    assert not extra, f"{what}: the answer has fields its type does not declare: {extra}"
    return converted


# -- the route table ---------------------------------------------------------------------------------------------
def _is_answer(t: Any) -> bool:
    info = _unwrap(mi.type_info(t))
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    return all(isinstance(m, mi.StructType) and issubclass(m.cls, Answer) for m in members)


def test_every_route_declares_its_body_and_its_answer() -> None:
    for r in ROUTES:
        where = f"{r.method} {r.path}"
        assert r.request is None or r.request == BINARY or issubclass(r.request, Request), where
        assert r.response == BINARY or _is_answer(r.response), where
        assert r.status in (200, 201), where
        if r.method in ("GET", "DELETE"):
            assert r.request is None, f"{where} takes no body"
        if r.status == 201:
            assert r.method == "POST", where


_QUERY_READ = re.compile(r"""(?:query|\bq)\.get\("(\w+)"|query_int\(request, "(\w+)"\)""")


def test_every_query_parameter_a_handler_reads_is_declared() -> None:
    for r in ROUTES:
        read = {a or b for a, b in _QUERY_READ.findall(inspect.getsource(r.handler))}
        assert read == set(r.query), f"{r.method} {r.path} reads {sorted(read)}, declares {sorted(r.query)}"


def test_the_worker_routes_speak_the_worker_protocol() -> None:
    declared = {(r.method, r.path): (r.request, r.response, r.status) for r in ROUTES}
    assert declared[("POST", "/work/register")] == (w.Registration, w.Registered, 200)
    assert declared[("POST", "/work/request")] == (w.WorkRequest, w.WorkAnswer, 200)
    assert declared[("POST", "/work/heartbeat")] == (w.Heartbeat, w.HeartbeatAnswer, 200)
    assert declared[("POST", "/work/release")] == (w.Release, w.Released, 200)
    assert declared[("POST", "/work/tasks/{uid}/report")] == (w.Report, w.ReportAnswer, 200)
    assert declared[("POST", "/work/tasks/{uid}/result")] == (BINARY, w.ResultStored, 201)


def test_the_client_types_bounds_are_the_servers() -> None:
    assert c.MAX_NAME == data.MAX_NAME
    assert (c.MAX_LOGIN, c.MAX_PASSWORD, c.MAX_EMAIL) == (
        users.MAX_LOGIN,
        users.MAX_PASSWORD,
        users.MAX_EMAIL,
    )
    assert c.MAX_LABEL == groups.MAX_LABEL
    assert c.MAX_ARG_CHARS == jobs.MAX_ARG_BYTES
    assert c.MAX_BULK_JOBS == defaults.MAX_BULK_JOBS
    assert set(c.JobSpec.__struct_fields__) == jobs.JOB_FIELDS
    assert set(c.UserCreation.__struct_fields__) == users._USER_FIELDS
    assert set(c.UserChange.__struct_fields__) == users._PATCH_FIELDS


def _accepts(t: Any, value: Any) -> bool:
    try:
        msgspec.convert(value, t, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def test_the_patterns_take_what_the_server_takes() -> None:
    for name in [*c.LEVELS, *c.LEVEL_ALIASES]:
        for spelled in (name, name.lower(), f" {name.title()} "):
            UserLevel.parse(spelled)
            assert _accepts(c.Rights, spelled), spelled
    assert _accepts(c.Rights, "STANDARD\n") and UserLevel.parse("STANDARD\n") == UserLevel.STANDARD
    for bad in ("GOD", "", "SUPER USER", "STANDARDS"):
        with pytest.raises(BadRequest):
            UserLevel.parse(bad)
        assert not _accepts(c.Rights, bad), bad
    for os_name in platforms._OS_ALIASES:
        assert _accepts(c.OsName, os_name.upper()) and _accepts(c.OsName, f" {os_name} ")
    for cpu in platforms._CPU_ALIASES:
        assert _accepts(c.CpuName, cpu.upper())
    assert not _accepts(c.OsName, "plan9") and not _accepts(c.CpuName, "z80")
    uid = str(uuid.uuid4())
    good = (uid, uid.upper(), uid.replace("-", ""), f"xw://host:4330/{uid}", f" {uid}\n", f"{{{uid}}}")
    for ref in (*good, "", "nope", uid[:-1], f"{uid}x", f"{uid}\x00", f"xw://h/{uid}/x"):
        assert _accepts(c.UidRef, ref) == is_uid(ref), ref
    for shown in ("abc", " a b ", "x" * 255, "é", "...", "a.b"):
        assert _accepts(c.Name, shown) and data.check_name(shown) == shown
    for bad in (
        "",
        "   ",
        "x" * 256,
        "a\nb",
        "abc\n",
        "\tabc",
        "a\x00",
        "é\x7f",
        "a/b",
        "a\\b",
        ".",
        "..",
        "\u202eexe.txt",
        "a\u2066",
        "\x9b",
    ):
        assert not _accepts(c.Name, bad), repr(bad)
        with pytest.raises(BadRequest):
            data.check_name(bad)


# -- the document --------------------------------------------------------------------------------------------------
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator (the dev extra)")
    doc = document(ROUTES)
    validator.validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_the_document_describes_every_body_and_answer_by_its_type() -> None:
    doc = document(ROUTES)
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for r in ROUTES:
        op = doc["paths"][defaults.API_PREFIX + r.path][r.method.lower()]
        where = f"{r.method} {r.path}"
        assert set(op["responses"]) == {str(r.status), "default"}, where
        [(media, answer)] = op["responses"][str(r.status)]["content"].items()
        if r.response == BINARY:
            assert (media, answer["schema"]) == (BINARY, {"type": "string", "format": "binary"}), where
        else:
            assert media == "application/json", where
            assert answer["schema"] != {"type": "object"}, where
            assert _refs(answer["schema"]), where  # a named component, not a bare object
        error = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, where
        if r.request is None:
            assert "requestBody" not in op, where
        else:
            [(media, body)] = op["requestBody"]["content"].items()
            expected = BINARY if r.request == BINARY else "application/json"
            assert media == expected, where
            if r.request != BINARY:
                assert body["schema"] == {"$ref": f"#/components/schemas/{r.request.__name__}"}, where
                assert schemas[r.request.__name__]["additionalProperties"] is False, where
    error = schemas["Error"]
    assert error["required"] == ["error", "message"]
    assert {"not_found", "host_disabled", "task_gone", "busy", "login_busy", "internal"} <= set(
        error["properties"]["error"]["enum"]
    )
    assert tuple(error["properties"]["error"]["enum"]) == ERROR_CODES


# -- every endpoint of a real server -----------------------------------------------------------------------------
def _pattern(r: Route) -> re.Pattern[str]:
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in re.split(r"\{\w+\}", r.path)) + "$")


_MATCHERS = [(r, _pattern(r)) for r in ROUTES]


def route_of(method: str, path: str) -> Route:
    found = [r for r, p in _MATCHERS if r.method == method and p.match(path)]
    # a literal path wins over a template (/jobs/bulk over /jobs/{uid})
    found.sort(key=lambda r: r.path.count("{"))
    assert found, f"no route {method} {path}"
    return found[0]


class Driver:
    """Calls the server as the route table says: the body of the declared type, the status
    and the answer's type checked; remembers which routes it went through."""

    def __init__(self, xw: XW) -> None:
        self.xw = xw
        self.seen: set[tuple[str, str]] = set()

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        body: Request | bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        r = route_of(method, path)
        where = f"{method} {path}"
        assert set(params or {}) <= set(r.query), f"{where} does not declare its query {params}"
        kw: dict[str, Any] = {"token": token, "params": params}
        if isinstance(body, Request):
            assert r.request is type(body), f"{where} takes a {r.request}, not a {type(body)}"
            kw["json"] = body.to_wire()
        elif isinstance(body, bytes):
            assert r.request == BINARY, where
            kw["data"] = body
        else:
            assert r.request is None, f"{where} needs a body"
        reply = await self.xw.call(method, path, **kw)
        assert reply.status == r.status, f"{where} answered {reply.status}, not {r.status}: {reply.body!r}"
        if r.response == BINARY:
            assert reply.headers["Content-Type"] == BINARY and isinstance(reply.body, bytes), where
        else:
            assert_is(reply.body, r.response, where)
        self.seen.add((r.method, r.path))
        return reply.body


@pytest.mark.every_database
async def test_every_endpoint_answers_its_declared_type(xw: XW) -> None:
    call = Driver(xw)
    admin, worker = xw.admin, xw.worker

    # session
    await call("GET", "/version", token=None)
    doc = await call("GET", "/openapi.json", token=None)
    assert doc["paths"]
    logged = await call("POST", "/login", token=None, body=c.Login(login="admin", password=xw.admin_password))
    await call("GET", "/users/me", token=admin)

    # users and user groups
    lab = await call("POST", "/usergroups", token=admin, body=c.UserGroupCreation(label="lab"))
    await call("GET", "/usergroups", token=admin)
    await call("GET", f"/usergroups/{lab['uid']}", token=admin)
    created = c.UserCreation(login="bob", password="pw-bob-1", email="bob@example.org", group="lab")
    bob = await call("POST", "/users", token=admin, body=created)
    assert bob["group_uid"] == lab["uid"]
    await call("GET", "/users", token=admin)
    await call("GET", "/users/bob", token=admin)
    await call("PATCH", "/users/bob", token=admin, body=c.UserChange(email="robert@example.org"))
    await call("POST", "/users/bob/password", token=admin, body=c.PasswordChange(password="pw-bob-2"))

    # data and apps
    script = b"#!/bin/sh\necho hello\n"
    query = {"name": "hello.sh", "sha256": hashlib.sha256(script).hexdigest(), "size": len(script)}
    binary = await call("POST", "/data", token=admin, body=script, params=query)
    stdin = await call("POST", "/data", token=admin, body=b"some input", params={"name": "in.txt"})
    by_url = c.DataByUrl(url="https://data.example.org/in.txt", sha256="0" * 64, size=3)
    await call("POST", "/data/url", token=admin, body=by_url)
    await call("GET", "/data", token=admin)
    await call("GET", f"/data/{stdin['uid']}", token=admin)
    assert await call("GET", f"/data/{stdin['uid']}/content", token=admin) == b"some input"
    spec = c.BinarySpec(os="any", cpu="any", data_uid=binary["uid"])
    app = await call("POST", "/apps", token=admin, body=c.AppInsert(name="hello", binaries=[spec]))
    await call("GET", "/apps", token=admin)
    await call("GET", f"/apps/{app['uid']}", token=admin)

    # sessions and groups of jobs
    session = await call(
        "POST", "/sessions", token=admin, body=c.JobSetCreation(name="run 1", access_rights="0750")
    )
    group = await call("POST", "/groups", token=admin, body=c.JobSetCreation(name="batch"))
    await call("GET", "/sessions", token=admin)
    await call("GET", "/groups", token=admin)

    # a host, and jobs for it
    registration = w.Registration(
        name="node-1",
        os="linux",
        cpu="x86_64",
        cores=4,
        memory_bytes=8 << 30,
        disk_free_bytes=100 << 30,
        tags=["fast"],
        version="test",
        gpus=[w.Gpu(name="gpu0", memory_bytes=1 << 30)],
        activation=w.Activation(state="active", detail="idle"),
    )
    registered = await call("POST", "/work/register", token=worker, body=registration)
    host = registered["host_uid"]
    as_host = c.HostLogin(login="worker", host_uid=host, host_key=registered["host_key"])
    assert (await call("POST", "/login/host", token=None, body=as_host))["host_uid"] == host
    first = c.JobSpec(
        app="hello",
        args=["a", "b c"],
        stdin_uid=stdin["uid"],
        label="first",
        max_retry=2,
        min_memory_bytes=1,
        min_disk_bytes=1,
        session_uid=session["uid"],
        group_uid=group["uid"],
        expected_host_uid=host,
    )
    job = await call("POST", "/jobs", token=admin, body=first)
    bulk = c.JobBulk(jobs=[c.JobSpec(app="hello", args="-n 1"), c.JobSpec(app=app["uid"])])
    others = (await call("POST", "/jobs/bulk", token=admin, body=bulk))["jobs"]
    await call("GET", f"/sessions/{session['uid']}", token=admin)
    await call("GET", f"/groups/{group['uid']}", token=admin)

    # the worker's side
    answer = await call(
        "POST", "/work/request", token=worker, body=w.WorkRequest(host_uid=host, capacity=3, wait_s=0)
    )
    task = {a["job_uid"]: a["task_uid"] for a in answer["assignments"]}
    assert set(task) == {job["uid"], *(j["uid"] for j in others)}
    beat = w.Heartbeat(host_uid=host, task_uids=list(task.values()), activation=w.Activation(state="active"))
    await call("POST", "/work/heartbeat", token=worker, body=beat)
    archive = b"PK result"
    digest = hashlib.sha256(archive).hexdigest()
    upload = {"sha256": digest, "size": len(archive)}
    stored = await call(
        "POST", f"/work/tasks/{task[job['uid']]}/result", token=worker, body=archive, params=upload
    )
    report = w.Report(
        status="COMPLETED",
        exit_code=0,
        message="done",
        result_uid=stored["result_uid"],
        accounting=w.Accounting(cpu_user_s=0.5, cpu_system_s=0.25, wall_s=1.0, max_rss_bytes=1 << 20),
    )
    await call("POST", f"/work/tasks/{task[job['uid']]}/report", token=worker, body=report)
    release = w.Release(host_uid=host, task_uids=[task[others[0]["uid"]]])
    await call("POST", "/work/release", token=worker, body=release)
    riding = w.TaskReport(task_uid=task[others[1]["uid"]], status="ERROR", exit_code=3, message="boom")
    await call(
        "POST",
        "/work/request",
        token=worker,
        body=w.WorkRequest(host_uid=host, capacity=1, wait_s=0, reports=[riding]),
    )

    # what the client sees of it
    done = await call("GET", f"/jobs/{job['uid']}", token=admin)
    assert (done["status"], done["result_sha256"]) == ("COMPLETED", digest)
    await call("GET", "/jobs", token=admin)
    await call("GET", "/jobs", token=admin, params={"session": session["uid"], "status": "COMPLETED"})
    tasks = (await call("GET", "/tasks", token=admin, params={"job": job["uid"]}))["tasks"]
    assert tasks[0]["accounting"] is not None
    hosts = (await call("GET", "/hosts", token=admin))["hosts"]
    assert hosts[0]["activation"] is not None and hosts[0]["gpus"]

    # any object by UID, and access rights
    kinds = {
        "job": job["uid"],
        "data": stdin["uid"],
        "task": task[job["uid"]],
        "app": app["uid"],
        "host": host,
        "user": bob["uid"],
        "usergroup": lab["uid"],
        "session": session["uid"],
        "group": group["uid"],
    }
    for kind, uid in kinds.items():
        assert (await call("GET", f"/objects/{uid}", token=admin))["kind"] == kind
    for uid, rights in (
        (stdin["uid"], "0750"),
        (host, "o-r"),
        (session["uid"], 0o700),
        (group["uid"], "u=rwx,go="),
    ):
        await call("POST", f"/objects/{uid}/chmod", token=admin, body=c.Chmod(rights=rights))
    assert not (await call("POST", f"/hosts/{host}/disable", token=admin))["enabled"]
    assert (await call("POST", f"/hosts/{host}/enable", token=admin))["enabled"]
    assert any(r["name"] == "admin" for r in (await call("GET", "/usage", token=admin))["usage"])
    assert any(e["action"] == "created" for e in (await call("GET", "/events", token=admin))["events"])

    # aborts and removals
    aborted = await call("POST", "/jobs/abort", token=admin, body=c.JobDeletion(uids=[others[1]["uid"]]))
    assert aborted["aborted"] + [m["uid"] for m in aborted["missing"]] == [others[1]["uid"]]
    removal = c.JobDeletion(uids=[others[0]["uid"], str(uuid.uuid4())])
    gone = await call("POST", "/jobs/delete", token=admin, body=removal)
    assert gone["deleted"] == [others[0]["uid"]] and len(gone["missing"]) == 1
    await call("DELETE", f"/jobs/{others[1]['uid']}", token=admin)
    await call("DELETE", f"/sessions/{session['uid']}", token=admin)  # with its job
    await call("DELETE", f"/groups/{group['uid']}", token=admin)
    await call("DELETE", f"/apps/{app['uid']}", token=admin)
    await call("DELETE", f"/data/{stdin['uid']}", token=admin)
    await call("DELETE", "/users/bob", token=admin)
    await call("DELETE", f"/hosts/{host}", token=admin)
    await call("DELETE", f"/usergroups/{lab['uid']}", token=admin)
    await call("POST", "/logout", token=logged["token"])

    assert call.seen == {(r.method, r.path) for r in ROUTES}
    await xw.assert_healthy()


# -- the server's verdict is the type's ----------------------------------------------------------------------------
UID = "0b7c5c2e-4b8f-4a57-9a3f-6f0d8a1c2b3d"

#: (path, body): what the type and the handler must judge alike (a path with "{app}" gets
#: the UID of an app the test inserts)
SAME_VERDICT: list[tuple[str, str, Any]] = [
    ("POST", "/login", {"login": "admin", "password": "not the password"}),
    ("POST", "/login", {"login": "", "password": "x"}),
    ("POST", "/login", {"login": "admin"}),
    ("POST", "/login", {"login": 5, "password": "x"}),
    ("POST", "/login/host", {"login": "worker", "host_uid": UID, "host_key": "not the key"}),
    ("POST", "/login/host", {"login": "worker", "host_uid": "vm", "host_key": "k"}),
    ("POST", "/login/host", {"login": "worker", "host_uid": UID}),
    ("POST", "/usergroups", {"label": "team-1"}),
    ("POST", "/usergroups", {"label": ""}),
    ("POST", "/usergroups", {"label": "two words"}),
    ("POST", "/usergroups", {"label": "-dash"}),
    ("POST", "/usergroups", {"label": UID}),
    ("POST", "/usergroups", {"label": UID.replace("-", "")}),
    ("POST", "/usergroups", {"label": 7}),
    ("POST", "/usergroups", {"label": "x" * 129}),
    ("POST", "/usergroups", {"label": "ok", "members": []}),
    ("POST", "/usergroups", {}),
    (
        "POST",
        "/users",
        {"login": "carol", "password": "pw", "rights": "standard_user", "email": "c@example.org"},
    ),
    ("POST", "/users", {"login": "me", "password": "pw"}),
    ("POST", "/users", {"login": "dave"}),
    ("POST", "/users", {"login": "dave", "password": ""}),
    ("POST", "/users", {"login": "dave", "password": "pw", "rights": "GOD"}),
    ("POST", "/users", {"login": "dave", "password": "pw", "rights": None}),
    ("POST", "/users", {"login": "dave", "password": "pw", "email": "not an address"}),
    ("POST", "/users", {"login": "dave", "password": "pw", "email": "dave@example.org\n"}),
    ("POST", "/users", {"login": "dave", "password": "pw", "group": 5}),
    ("POST", "/users", {"login": "dave", "password": "pw", "shell": "/bin/sh"}),
    ("PATCH", "/users/carol", {"email": None}),
    ("PATCH", "/users/carol", {"rights": "ADVANCED", "group": ""}),
    ("PATCH", "/users/carol", {}),
    ("PATCH", "/users/carol", {"rights": None}),
    ("PATCH", "/users/carol", {"login": "caroline"}),
    ("POST", "/users/carol/password", {"password": "new-one"}),
    ("POST", "/users/carol/password", {"password": ""}),
    ("POST", "/users/carol/password", {"password": "x" * 1025}),
    ("POST", "/users/carol/password", {"password": "new", "hint": "h"}),
    ("POST", "/apps", {"name": "tool", "binaries": [{"os": "LINUX", "cpu": "AMD64", "data_uid": "{data}"}]}),
    ("POST", "/apps", {"name": "tool", "binaries": []}),
    ("POST", "/apps", {"name": "", "binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}"}]}),
    ("POST", "/apps", {"name": UID, "binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}"}]}),
    ("POST", "/apps", {"name": "tool", "binaries": [{"os": "any", "cpu": "any"}]}),
    ("POST", "/apps", {"name": "tool", "binaries": [{"os": "plan9", "cpu": "any", "data_uid": "{data}"}]}),
    ("POST", "/apps", {"binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}"}]}),
    (
        "POST",
        "/apps",
        {
            "name": "tool",
            "binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}"}],
            "needs_network": "yes",
        },
    ),
    ("POST", "/jobs", {"app": "tool", "args": "-n 3 'two words'", "label": "l", "max_retry": 0}),
    ("POST", "/jobs", {"app": "tool", "min_memory_bytes": None, "session_uid": None}),
    ("POST", "/jobs", {"app": ""}),
    ("POST", "/jobs", {"app": "tool", "max_retry": 101}),
    ("POST", "/jobs", {"app": "tool", "max_retry": True}),
    ("POST", "/jobs", {"app": "tool", "args": [1]}),
    ("POST", "/jobs", {"app": "tool", "args": ["a\x00b"]}),
    ("POST", "/jobs", {"app": "tool", "args": "unclosed 'quote"}),
    ("POST", "/jobs", {"app": "tool", "args": ["x" * 40000, "y" * 40000]}),
    ("POST", "/jobs", {"app": "tool", "label": ""}),
    ("POST", "/jobs", {"app": "tool", "min_disk_bytes": -1}),
    ("POST", "/jobs", {"app": "tool", "min_disk_bytes": 2**62 + 1}),
    ("POST", "/jobs", {"app": "tool", "stdin_uid": "not a uid"}),
    ("POST", "/jobs", {"app": "tool", "priority": 1}),
    ("POST", "/jobs/bulk", {"jobs": [{"app": "tool"}, {"app": "tool", "args": ["1"]}]}),
    ("POST", "/jobs/bulk", {"jobs": "tool"}),
    ("POST", "/jobs/bulk", {"jobs": [{"app": "tool", "max_retry": -1}]}),
    ("POST", "/jobs/delete", {"uids": []}),
    ("POST", "/jobs/delete", {"uids": [UID, "xw://{server}/" + UID]}),
    ("POST", "/jobs/delete", {"uids": ["nope"]}),
    ("POST", "/jobs/delete", {"uids": UID}),
    ("POST", "/jobs/delete", {"uids": [], "force": True}),
    ("POST", "/jobs/abort", {"uids": ["nope"]}),
    ("POST", "/jobs/abort", {"uids": UID}),
    ("POST", "/sessions", {"name": "s", "access_rights": "0750"}),
    ("POST", "/sessions", {"name": "s", "access_rights": "u+rwx,g=rx"}),
    ("POST", "/sessions", {"name": "s", "access_rights": 488}),
    ("POST", "/sessions", {"name": "s", "access_rights": "0999"}),
    ("POST", "/sessions", {"name": "s", "access_rights": "u+q"}),
    ("POST", "/sessions", {"name": "s", "access_rights": 512}),
    ("POST", "/sessions", {"name": "s", "access_rights": ""}),
    ("POST", "/sessions", {"name": "a\nb"}),
    ("POST", "/sessions", {"name": "s", "owner": "me"}),
    ("POST", "/groups", {"name": "g"}),
    ("POST", "/groups", {}),
    ("POST", "/objects/{data}/chmod", {"rights": "0750"}),
    ("POST", "/objects/{data}/chmod", {"rights": "go-w"}),
    ("POST", "/objects/{data}/chmod", {"rights": True}),
    ("POST", "/objects/{data}/chmod", {"rights": []}),
    ("POST", "/objects/{data}/chmod", {"rights": "rwx"}),
    ("POST", "/objects/{data}/chmod", {}),
]

#: bodies the handler takes and its type refuses, or the other way round: none left (the
#: handlers used to ignore unknown fields); a case that disagrees goes here, with an issue
KNOWN_DIFFERENCES: list[tuple[str, str, Any]] = []

#: unknown fields, at any depth, are refused as the types refuse them
SAME_VERDICT += [
    ("POST", "/login", {"login": "admin", "password": "x", "remember": True}),
    (
        "POST",
        "/apps",
        {"name": "tool", "binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}"}], "x": 1},
    ),
    (
        "POST",
        "/apps",
        {"name": "tool", "binaries": [{"os": "any", "cpu": "any", "data_uid": "{data}", "x": 1}]},
    ),
    ("POST", "/jobs/bulk", {"jobs": [], "atomic": True}),
    ("POST", "/objects/{data}/chmod", {"rights": "0755", "recursive": True}),
    ("POST", "/sessions", {"name": "a/b"}),
    ("POST", "/sessions", {"name": "\u202etxt.exe"}),
    ("POST", "/jobs", {"app": "tool", "label": "../../etc/passwd"}),
]


def _fill(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in refs.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [_fill(v, refs) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, refs) for k, v in value.items()}
    return value


def _type_verdict(r: Route, body: Any) -> bool:
    try:
        r.request.from_wire(body)
    except BadRequest:
        return False
    return True


async def test_the_server_takes_what_the_request_types_take(xw: XW) -> None:
    await xw.insert_app(xw.admin, "tool")
    stored = await xw.upload(xw.admin, b"#!/bin/sh\n", name="tool.sh")
    refs = {"data": stored["uid"], "server": xw.settings.netloc}
    disagree = []
    for method, path, raw in [*SAME_VERDICT, *KNOWN_DIFFERENCES]:
        r = route_of(method, _fill(path, refs))
        body = _fill(raw, refs)
        typed = _type_verdict(r, body)
        reply = await xw.call(method, _fill(path, refs), token=xw.admin, json=body)
        if reply.status >= 400:
            assert reply.body["error"] in ERROR_CODES, reply
        served = reply.status != 400
        if served != typed:
            disagree.append((method, path, raw))
            print(f"{method} {path} {raw!r}: the type says {typed}, the server {reply}")
    assert disagree == KNOWN_DIFFERENCES
    await xw.assert_healthy()
