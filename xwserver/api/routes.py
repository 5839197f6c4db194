"""Handlers and the route table (the OpenAPI document is generated from it)."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from xwcommon import __version__, defaults
from xwcommon.errors import BadRequest
from xwcommon.levels import UserLevel
from xwcommon.protocol import client as c
from xwcommon.protocol import work as w
from xwcommon.protocol.work import Heartbeat, Registration, Release, Report, WorkRequest

from .. import apps, data, hosts, jobs, leases, metrics, scheduler, users
from ..state import Server
from ..wire import iso
from .access_routes import ACCESS_ROUTES
from .data_url_routes import DATA_URL_ROUTES
from .events_routes import EVENT_ROUTES
from .http import (
    ALLOW,
    BODY_TYPE_KEY,
    TOKEN_KEY,
    Handler,
    caller_of,
    message_response,
    ok,
    query_int,
    read_json,
    read_message,
    server_of,
    upload_chunks,
)
from .jobsets_routes import JOBSET_ROUTES
from .openapi import document
from .route import BINARY, Route
from .usage_routes import USAGE_ROUTES
from .users_routes import USER_ROUTES


# -- session -----------------------------------------------------------------------------------------
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest('expected {"login": "...", "password": "..."}')
    srv = server_of(request)
    done = await users.login(
        srv, body.get("login"), body.get("password"), request.remote, host_uid=body.get("host_uid")
    )
    return await _logged_in(srv, done)


async def host_login(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest('expected {"login": "...", "host_uid": "...", "host_key": "..."}')
    srv = server_of(request)
    done = await users.host_login(
        srv, body.get("login"), body.get("host_uid"), body.get("host_key"), request.remote
    )
    return await _logged_in(srv, done)


async def _logged_in(srv: Server, done: users.LoggedIn) -> web.Response:
    shown = srv.wire.user(done.user, done.user.group_uid)
    answer = {"token": done.token, "expires_at": iso(done.expires_at), "user": shown}
    if done.host_uid is not None:
        answer["host_uid"] = done.host_uid
    if done.host_key is not None:
        answer["host_key"] = done.host_key
    return web.json_response(answer)


async def logout(request: web.Request) -> web.Response:
    await users.logout(server_of(request), request[TOKEN_KEY])
    return ok()


async def version(request: web.Request) -> web.Response:
    srv = server_of(request)
    return web.json_response({"version": __version__, "api": "v1", "server": srv.settings.netloc})


async def me(request: web.Request) -> web.Response:
    return web.json_response(await users.me(server_of(request), caller_of(request)))


# -- data ----------------------------------------------------------------------------------------------
async def data_upload(request: web.Request) -> web.Response:
    srv, caller = server_of(request), caller_of(request)
    from xwcommon.levels import UserLevel, parse_access_rights

    caller.require(UserLevel.STANDARD, "inserting data")
    rights = request.query.get("access_rights")
    size = query_int(request, "size")
    d = await data.store_upload(
        srv,
        caller,
        upload_chunks(request, size),
        name=request.query.get("name", "data"),
        access_rights=parse_access_rights(rights) if rights else data.DATA_DEFAULT_RIGHTS,
        expected_sha256=request.query.get("sha256"),
        expected_size=size,
    )
    return web.json_response(await data.render(srv, d), status=201)


async def data_list(request: web.Request) -> web.Response:
    found = await data.list_data(server_of(request), caller_of(request), owner=request.query.get("owner"))
    return web.json_response({"data": found})


async def data_get(request: web.Request) -> web.Response:
    srv = server_of(request)
    d = await data.get_readable(srv, caller_of(request), request.match_info["uid"])
    return web.json_response(await data.render(srv, d))


async def data_content(request: web.Request) -> web.StreamResponse:
    srv = server_of(request)
    d = await data.get_content(srv, caller_of(request), request.match_info["uid"])
    path = srv.store.path_of(d.sha256)
    try:
        fh = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise BadRequest(f"data {d.uid} has no content stored") from None
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "X-XW-SHA256": d.sha256})
    resp.content_length = d.size
    try:
        await resp.prepare(request)
        while chunk := await asyncio.to_thread(fh.read, defaults.STREAM_CHUNK_BYTES):
            await resp.write(chunk)
    finally:
        fh.close()
    await resp.write_eof()
    return resp


async def data_delete(request: web.Request) -> web.Response:
    await data.delete(server_of(request), caller_of(request), request.match_info["uid"])
    return ok()


# -- apps -----------------------------------------------------------------------------------------------
async def app_insert(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await apps.insert(server_of(request), caller_of(request), body), status=201)


async def app_list(request: web.Request) -> web.Response:
    return web.json_response({"apps": await apps.list_apps(server_of(request), caller_of(request))})


async def app_get(request: web.Request) -> web.Response:
    return web.json_response(
        await apps.get(server_of(request), caller_of(request), request.match_info["uid"])
    )


async def app_delete(request: web.Request) -> web.Response:
    await apps.delete(server_of(request), caller_of(request), request.match_info["uid"])
    return ok()


# -- jobs ------------------------------------------------------------------------------------------------
async def job_submit(request: web.Request) -> web.Response:
    body = await read_json(request)
    created = await jobs.submit(server_of(request), caller_of(request), [body])
    return web.json_response(created[0], status=201)


async def job_submit_bulk(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("jobs"), list):
        raise BadRequest('expected {"jobs": [ {job}, ... ]}')
    created = await jobs.submit(server_of(request), caller_of(request), body["jobs"])
    return web.json_response({"jobs": created}, status=201)


async def job_list(request: web.Request) -> web.Response:
    q = request.query
    found = await jobs.list_jobs(
        server_of(request),
        caller_of(request),
        status=q.get("status"),
        label=q.get("label"),
        owner=q.get("owner"),
        session=q.get("session"),
        group=q.get("group"),
        limit=q.get("limit"),
        offset=q.get("offset"),
    )
    return web.json_response({"jobs": found})


async def job_delete_many(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await jobs.delete_many(server_of(request), caller_of(request), body))


async def job_abort_many(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await jobs.abort_many(server_of(request), caller_of(request), body))


async def job_get(request: web.Request) -> web.Response:
    return web.json_response(
        await jobs.get(server_of(request), caller_of(request), request.match_info["uid"])
    )


async def job_delete(request: web.Request) -> web.Response:
    await jobs.delete(server_of(request), caller_of(request), request.match_info["uid"])
    return ok()


async def task_list(request: web.Request) -> web.Response:
    q = request.query
    found = await jobs.list_tasks(
        server_of(request),
        caller_of(request),
        job=q.get("job"),
        status=q.get("status"),
        limit=q.get("limit"),
        offset=q.get("offset"),
    )
    return web.json_response({"tasks": found})


# -- workers ---------------------------------------------------------------------------------------------
async def work_register(request: web.Request) -> web.Response:
    msg = await read_message(request, Registration)
    return message_response(await hosts.register(server_of(request), caller_of(request), msg))


async def work_request(request: web.Request) -> web.Response:
    msg = await read_message(request, WorkRequest)
    started = time.perf_counter()
    answer = await scheduler.request_work(
        server_of(request), caller_of(request), msg, connected=lambda: _connected(request)
    )
    metrics.observe_work_request(time.perf_counter() - started, len(answer.assignments))
    metrics.work_answered(answer, {r.task_uid: r.status for r in msg.reports})
    response = message_response(answer)
    if scheduler.leaves_idle(answer):
        # told to come back later: the connection would sit idle meanwhile, with its TLS
        # state and buffers (tens of KiB each, times thousands of volunteers)
        response.force_close()
    return response


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def work_heartbeat(request: web.Request) -> web.Response:
    msg = await read_message(request, Heartbeat)
    return message_response(await leases.heartbeat(server_of(request), caller_of(request), msg))


async def work_result(request: web.Request) -> web.Response:
    size = query_int(request, "size")
    answer = await leases.upload_result(
        server_of(request),
        caller_of(request),
        request.match_info["uid"],
        upload_chunks(request, size),
        sha256=request.query.get("sha256"),
        size=size,
    )
    return message_response(answer, status=201)


async def work_report(request: web.Request) -> web.Response:
    msg = await read_message(request, Report)
    answer = await leases.report(server_of(request), caller_of(request), request.match_info["uid"], msg)
    metrics.reported([(msg.status, None)])
    return message_response(answer)


async def work_release(request: web.Request) -> web.Response:
    msg = await read_message(request, Release)
    return message_response(await leases.release(server_of(request), caller_of(request), msg))


async def host_list(request: web.Request) -> web.Response:
    return web.json_response({"hosts": await hosts.list_hosts(server_of(request), caller_of(request))})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(ROUTES, server_of(request)))


CORE_ROUTES: list[Route] = [
    Route(
        "POST",
        "/login",
        login,
        "Log in; returns a bearer token",
        request=c.Login,
        response=c.LoginAnswer,
        public=True,
    ),
    Route(
        "POST",
        "/login/host",
        host_login,
        "Log in as a worker's host with its host credential; the token acts only as that host",
        request=c.HostLogin,
        response=c.LoginAnswer,
        public=True,
    ),
    Route("POST", "/logout", logout, "Revoke the caller's token", request=None, response=c.Ok),
    Route("GET", "/version", version, "Server version", request=None, response=c.VersionInfo, public=True),
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "This document",
        request=None,
        response=c.OpenApiDocument,
        public=True,
    ),
    Route("GET", "/users/me", me, "The caller's user", request=None, response=c.User),
    Route(
        "POST",
        "/data",
        data_upload,
        "Upload data (raw streamed body, sha256 checked)",
        request=BINARY,
        response=c.Data,
        status=201,
        query=("name", "sha256", "size", "access_rights"),
    ),
    Route(
        "GET",
        "/data",
        data_list,
        "List the caller's data",
        request=None,
        response=c.DataList,
        query=("owner",),
    ),
    Route("GET", "/data/{uid}", data_get, "Get a data object", request=None, response=c.Data),
    Route(
        "GET",
        "/data/{uid}/content",
        data_content,
        "Download a data object's content",
        request=None,
        response=BINARY,
    ),
    Route("DELETE", "/data/{uid}", data_delete, "Remove a data object", request=None, response=c.Ok),
    Route(
        "POST",
        "/apps",
        app_insert,
        "Insert an application or add binaries to it",
        request=c.AppInsert,
        response=c.App,
        status=201,
    ),
    Route(
        "GET",
        "/apps",
        app_list,
        "List the applications the caller may read",
        request=None,
        response=c.AppList,
    ),
    Route("GET", "/apps/{uid}", app_get, "Get an application by UID or name", request=None, response=c.App),
    Route("DELETE", "/apps/{uid}", app_delete, "Remove an application", request=None, response=c.Ok),
    Route("POST", "/jobs", job_submit, "Submit a job", request=c.JobSpec, response=c.Job, status=201),
    Route(
        "POST",
        "/jobs/bulk",
        job_submit_bulk,
        "Submit many jobs at once (all or nothing)",
        request=c.JobBulk,
        response=c.JobList,
        status=201,
    ),
    Route(
        "POST",
        "/jobs/delete",
        job_delete_many,
        "Remove many jobs at once (those the caller may write; the others are listed)",
        request=c.JobDeletion,
        response=c.JobsDeleted,
    ),
    Route(
        "POST",
        "/jobs/abort",
        job_abort_many,
        "Abort many jobs at once: they end ABORTED and stay listed; running copies stop",
        request=c.JobDeletion,
        response=c.JobsAborted,
    ),
    Route(
        "GET",
        "/jobs",
        job_list,
        "List the caller's jobs",
        request=None,
        response=c.JobList,
        query=("status", "label", "owner", "session", "group", "limit", "offset"),
    ),
    Route("GET", "/jobs/{uid}", job_get, "Get a job", request=None, response=c.Job),
    Route(
        "DELETE",
        "/jobs/{uid}",
        job_delete,
        "Remove a job (aborting it if it runs)",
        request=None,
        response=c.Ok,
    ),
    Route(
        "GET",
        "/tasks",
        task_list,
        "List tasks",
        request=None,
        response=c.TaskList,
        query=("job", "status", "limit", "offset"),
    ),
    Route("GET", "/hosts", host_list, "List worker hosts", request=None, response=c.HostList),
    Route(
        "POST",
        "/work/register",
        work_register,
        "Register a worker host",
        request=w.Registration,
        response=w.Registered,
    ),
    Route(
        "POST",
        "/work/request",
        work_request,
        "Report finished tasks and ask for up to k jobs (long-poll)",
        request=w.WorkRequest,
        response=w.WorkAnswer,
    ),
    Route(
        "POST",
        "/work/heartbeat",
        work_heartbeat,
        "Extend the leases of a host's tasks",
        request=w.Heartbeat,
        response=w.HeartbeatAnswer,
    ),
    Route(
        "POST",
        "/work/tasks/{uid}/result",
        work_result,
        "Upload a task's result archive",
        request=BINARY,
        response=w.ResultStored,
        status=201,
        query=("sha256", "size"),
    ),
    Route(
        "POST",
        "/work/tasks/{uid}/report",
        work_report,
        "Report a task's final status",
        request=w.Report,
        response=w.ReportAnswer,
    ),
    Route(
        "POST",
        "/work/release",
        work_release,
        "Hand tasks back to the server",
        request=w.Release,
        response=w.Released,
    ),
]


#: every route of the API; each area keeps its own list in its own module
ROUTES: list[Route] = (
    CORE_ROUTES + USER_ROUTES + ACCESS_ROUTES + JOBSET_ROUTES + DATA_URL_ROUTES + USAGE_ROUTES + EVENT_ROUTES
)


#: all a WORKER identity may call besides /work/* (XWHEP's worker level computes, nothing else);
#: the content of data checks delegation itself (inputs of a task the worker holds)
WORKER_CALLS = {("POST", "/logout"), ("GET", "/users/me"), ("GET", "/data/{uid}/content")}


def worker_may_call(route: Route) -> bool:
    return route.path.startswith("/work/") or (route.method, route.path) in WORKER_CALLS


def _standard_only(route: Route, inner: Handler) -> Handler:
    """The route's handler, refusing WORKER identities (403 naming the level it needs)."""
    action = f"{route.method} {defaults.API_PREFIX}{route.path}"

    async def handler(request: web.Request) -> web.StreamResponse:
        caller_of(request).require(UserLevel.STANDARD, action)
        return await inner(request)

    return handler


def _typed_body(route: Route, handler: Handler) -> Handler:
    """The handler, with its route's request type where read_json finds it."""
    if route.body != "json":
        return handler

    async def typed(request: web.Request) -> web.StreamResponse:
        request[BODY_TYPE_KEY] = route.request
        return await handler(request)

    return typed


def _allow(path: str) -> str | None:
    """The methods the route table documents for ``path`` (its most literal match)."""
    below = path.removeprefix(defaults.API_PREFIX)
    found = [r for r in ROUTES if _template(r.path).match(below)]
    if not found:
        return None
    fewest = min(r.path.count("{") for r in found)
    return ",".join(sorted({r.method for r in found if r.path.count("{") == fewest}))


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in re.split(r"\{\w+\}", path)) + "$")


def _shadowed(route: Route) -> frozenset[str]:
    """The literal paths of other routes that ``route``'s template matches too (``/jobs/bulk``
    for ``/jobs/{uid}``): there the template's method is not allowed, whatever aiohttp finds."""
    if "{" not in route.path:
        return frozenset()
    template = _template(route.path)
    fewer = route.path.count("{")
    return frozenset(r.path for r in ROUTES if r.path.count("{") < fewer and template.match(r.path))


def _literal_first(route: Route, handler: Handler) -> Handler:
    """The handler, answering 405 (with the documented methods) on the paths it shadows."""
    shadowed = _shadowed(route)
    if not shadowed:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        below = request.path.removeprefix(defaults.API_PREFIX)
        if below in shadowed:
            raise web.HTTPMethodNotAllowed(request.method, (_allow(request.path) or "").split(","))
        return await handler(request)

    return checked


#: query parameters whose empty value means something: every status, no owner
EMPTY_QUERY_OK = frozenset({"status", "owner"})


def _no_empty_query(route: Route, handler: Handler) -> Handler:
    """The handler, refusing a documented query parameter given empty (``?session=``): a
    filter on nothing is a mistake to name, not a filter to drop in silence."""
    names = [n for n in route.query if n not in EMPTY_QUERY_OK]
    if not names:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        for name in names:
            if request.query.get(name) == "":
                raise BadRequest(f"query parameter {name} is empty; give a value or leave it out")
        return await handler(request)

    return checked


def add_routes(app: web.Application) -> None:
    """Every route; all but the public ones and the worker's own need STANDARD at least."""
    ALLOW["documented"] = _allow
    for r in ROUTES:
        handler = _no_empty_query(r, r.handler)
        if not (r.public or worker_may_call(r)):
            handler = _standard_only(r, handler)
        handler = _literal_first(r, _typed_body(r, handler))
        app.router.add_route(r.method, defaults.API_PREFIX + r.path, handler)
