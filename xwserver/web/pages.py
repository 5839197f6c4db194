"""The dashboard's pages: each parses its query or form, calls the server's domain functions
as the logged-in user, and renders a template. Errors (``XWError``) become an error page
with the same status and message the API would answer."""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import BodyPartReader, web
from sqlalchemy import func, select

from xwcommon import __version__, defaults
from xwcommon.errors import BadRequest, NotFound, PayloadTooLarge, XWError
from xwcommon.levels import UserLevel
from xwcommon.status import JobStatus, TaskStatus
from xwcommon.uri import parse_uid

from .. import apps, data, events, groups, hosts, jobs, jobsets, users
from ..access import READ, Caller, may_sql
from ..api.http import SERVER_KEY
from ..db.models import Host, Job, Task
from ..state import Server
from . import session as web_session
from .session import SECURITY_HEADERS, NotLoggedIn

log = logging.getLogger(__name__)

#: jobs per page of the jobs list (keyset paging: the next page starts below the last job shown)
PAGE_SIZE = 50
#: events shown on a job's page (the oldest first: its history from its submission)
EVENTS_SHOWN = 200
#: tasks shown on a job's page
TASKS_SHOWN = 100
HERE = Path(__file__).resolve().parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Visit:
    """Who asks, and what the templates need of the session."""

    srv: Server
    caller: Caller
    token: str

    @property
    def csrf(self) -> str:
        return web_session.csrf_of(self.token)


Page = Callable[[web.Request, Visit], Awaitable[web.StreamResponse]]


def render(template: str, *, status: int = 200, visit: Visit | None = None, **values: Any) -> web.Response:
    body = TEMPLATES.get_template(template).render(
        me=visit.caller if visit else None,
        is_super=bool(visit and visit.caller.is_super),
        csrf=visit.csrf if visit else "",
        version=__version__,
        **values,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def _secured(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def page(inner: Page, *, super_only: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page that needs a session: without one, to the login page; errors as a page."""

    async def handler(request: web.Request) -> web.StreamResponse:
        visit: Visit | None = None
        try:
            caller, token = await web_session.caller_of(request)
            visit = Visit(request.app[SERVER_KEY], caller, token)
            if super_only:
                caller.require(UserLevel.SUPER, "this page")
            return _secured(await inner(request, visit))
        except NotLoggedIn:
            wanted = request.path_qs if request.method == "GET" else "/jobs"
            return _secured(redirect("/login?" + urlencode({"next": wanted})))
        except XWError as exc:
            return _secured(render("error.html", status=exc.http_status, visit=visit, message=exc.message))

    return handler


def _next_path(value: str | None) -> str:
    """Where to go after login: a path of this site only (never ``//elsewhere``)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/jobs"


# -- session ---------------------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.StreamResponse:
    return await _login_page(request)


async def _login_page(request: web.Request, *, status: int = 200, message: str = "") -> web.StreamResponse:
    response = web.Response(status=status, content_type="text/html", charset="utf-8")
    token = web_session.new_login_csrf(response)
    shown = render(
        "login.html", message=message, next=_next_path(request.query.get("next")), login_csrf=token
    )
    response.text = shown.text or ""
    return _secured(response)


async def login_submit(request: web.Request) -> web.StreamResponse:
    srv = request.app[SERVER_KEY]
    form = await request.post()
    try:
        web_session.check_login_csrf(request, str(form.get(web_session.CSRF_FIELD, "")))
        done = await users.login(srv, form.get("login"), form.get("password"), request.remote)
        if done.user.rights < UserLevel.STANDARD:
            await users.logout(srv, done.token)
            raise BadRequest("a worker identity has no dashboard; log in as a user")
    except XWError as exc:
        status = 401 if exc.http_status in (400, 401) else exc.http_status
        return await _login_page(request, status=status, message=exc.message)
    response = redirect(_next_path(str(form.get("next", ""))))
    web_session.set_session(response, done.token, max(1, int(srv.settings.token_ttl_s)))
    return _secured(response)


async def logout(request: web.Request, visit: Visit) -> web.StreamResponse:
    form = await request.post()
    web_session.check_csrf(visit.token, str(form.get(web_session.CSRF_FIELD, "")))
    await users.logout(visit.srv, visit.token)
    response = redirect("/login")
    web_session.clear_session(response)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return _secured(redirect("/jobs"))


# -- jobs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobFilter:
    status: str = ""
    label: str = ""
    session: str = ""
    group: str = ""

    @classmethod
    def of(cls, query: Any) -> JobFilter:
        f = cls(*(str(query.get(k, "")).strip() for k in ("status", "label", "session", "group")))
        if f.status and f.status.upper() not in JobStatus.__members__:
            raise BadRequest(f"unknown status {f.status!r}; use {', '.join(s.value for s in JobStatus)}")
        return f

    def where(self, q: Any) -> Any:
        if self.status:
            q = q.where(Job.status == self.status.upper())
        if self.label:  # checked as a name: a NUL would be a 500 on PostgreSQL
            q = q.where(Job.label == data.check_name(self.label, "label"))
        for kind, ref in ((jobsets.SESSIONS, self.session), (jobsets.GROUPS, self.group)):
            if ref:
                wanted = select(kind.model.id).where(kind.model.uid == parse_uid(ref, kind.name))
                q = q.where(kind.job_column.in_(wanted))
        return q

    def query(self, **more: str) -> str:
        values = {"status": self.status, "label": self.label, "session": self.session, "group": self.group}
        return urlencode({k: v for k, v in {**values, **more}.items() if v})


async def jobs_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The caller's readable jobs, newest first, PAGE_SIZE at a time: keyset paging on the
    job's id (``before`` names the last job of the previous page by UID), so a page costs
    the same on the first page and the thousandth, whatever the number of jobs."""
    srv, caller = visit.srv, visit.caller
    wanted = JobFilter.of(request.query)
    before = request.query.get("before", "").strip()
    readable = may_sql(caller, READ, Job.owner_id, Job.access_rights)
    async with srv.sessions() as db:
        counted = (
            wanted.where(select(Job.status, func.count()).where(readable)) if not wanted.status else None
        )
        if counted is None:  # counts over every status but the one chosen: the filter's other fields
            counted = JobFilter(label=wanted.label, session=wanted.session, group=wanted.group).where(
                select(Job.status, func.count()).where(readable)
            )
        counts = dict((await db.execute(counted.group_by(Job.status))).all())
        q = wanted.where(select(Job).where(readable))
        if before:
            below = (await db.execute(select(Job.id).where(Job.uid == parse_uid(before, "before")))).scalar()
            if below is None:
                raise NotFound(f"no job {before}")
            q = q.where(Job.id < below)
        found = list((await db.execute(q.order_by(Job.id.desc()).limit(PAGE_SIZE + 1))).scalars())
        shown = await jobs.render_jobs(srv, db, found[:PAGE_SIZE])
    more = len(found) > PAGE_SIZE
    return render(
        "jobs.html",
        visit=visit,
        jobs=shown,
        counts=[(s.value, counts.get(s.value, 0)) for s in JobStatus],
        total=sum(counts.values()),
        statuses=[s.value for s in JobStatus],
        wanted=wanted,
        next_query=wanted.query(before=shown[-1]["uid"]) if more and shown else "",
        first_query=wanted.query() if before else None,
    )


async def job_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    uid = request.match_info["uid"]
    job = await jobs.get(visit.srv, visit.caller, uid)
    tasks = await jobs.list_tasks(visit.srv, visit.caller, job=job["uid"], limit=str(TASKS_SHOWN))
    history = await events.list_events(visit.srv, visit.caller, job=job["uid"], limit=str(EVENTS_SHOWN))
    return render("job.html", visit=visit, job=job, tasks=tasks, events=history)


async def job_result(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The job's result archive, as the API's data download streams it."""
    job = await jobs.get(visit.srv, visit.caller, request.match_info["uid"])
    if not job.get("result_uid"):
        raise NotFound(f"job {job['uid']} has no result (yet): it is {job['status']}")
    stored = await data.get_content(visit.srv, visit.caller, job["result_uid"])
    path = visit.srv.store.path_of(stored.sha256)
    try:
        fh = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise NotFound(f"the result of job {job['uid']} is no longer stored") from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="ResultsOf_{job["uid"]}.zip"',
            "X-XW-SHA256": stored.sha256,
            **SECURITY_HEADERS,
        }
    )
    response.content_length = stored.size
    try:
        await response.prepare(request)
        while chunk := await asyncio.to_thread(fh.read, defaults.STREAM_CHUNK_BYTES):
            await response.write(chunk)
    finally:
        fh.close()
    await response.write_eof()
    return response


# -- submission -----------------------------------------------------------------------------------------
async def submit_form(request: web.Request, visit: Visit) -> web.StreamResponse:
    return render("submit.html", visit=visit, apps=await apps.list_apps(visit.srv, visit.caller), message="")


async def submit(request: web.Request, visit: Visit) -> web.StreamResponse:
    """A job from the form: its app, arguments, label, standard input (typed or a file) and an
    environment archive; uploaded files become data as ``xwsenddata`` would make them."""
    srv, caller = visit.srv, visit.caller
    caller.require(UserLevel.STANDARD, "submitting jobs")
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("the submission form is sent as multipart/form-data")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: dict[str, str] = {}
    first = True
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        if first:  # nothing is stored before the form is known to come from this site
            if part.name != web_session.CSRF_FIELD:
                raise BadRequest("the form's CSRF token must come first")
            web_session.check_csrf(visit.token, (await part.text()).strip())
            first = False
            continue
        if part.name in ("stdin_file", "env_file") and part.filename:
            stored = await _store_part(srv, caller, part)
            if stored is not None:
                files[part.name] = stored
        elif part.name in ("app", "args", "label", "stdin_text"):
            fields[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")[: 64 * 1024]
    if first:
        raise BadRequest("the form's CSRF token is missing")
    spec: dict[str, Any] = {"app": fields.get("app", "").strip()}
    try:
        spec["args"] = shlex.split(fields.get("args", ""))
    except ValueError as exc:
        raise BadRequest(f"arguments: {exc}") from None
    if label := fields.get("label", "").strip():
        spec["label"] = label
    if "stdin_file" in files:
        spec["stdin_uid"] = files["stdin_file"]
    elif stdin := fields.get("stdin_text", ""):
        spec["stdin_uid"] = await _store_bytes(srv, caller, stdin.replace("\r\n", "\n").encode(), "stdin")
    if "env_file" in files:
        spec["env_uid"] = files["env_file"]
    [created] = await jobs.submit(srv, caller, [spec])
    return redirect(f"/jobs/{created['uid']}")


async def _store_part(srv: Server, caller: Caller, part: BodyPartReader) -> str | None:
    limit = srv.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        seen = 0
        while chunk := await part.read_chunk(defaults.STREAM_CHUNK_BYTES):
            seen += len(chunk)
            if seen > limit:
                raise PayloadTooLarge(f"file over the limit of {limit} bytes (max_body_bytes)")
            yield chunk

    name = Path(part.filename or "file").name[:64] or "file"
    first = await part.read_chunk(defaults.STREAM_CHUNK_BYTES)
    if not first:
        return None  # a file input left empty

    async def all_chunks() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks():
            yield chunk

    stored = await data.store_upload(srv, caller, all_chunks(), name=name)
    return stored.uid


async def _store_bytes(srv: Server, caller: Caller, content: bytes, name: str) -> str:
    async def one() -> AsyncIterator[bytes]:
        yield content

    stored = await data.store_upload(srv, caller, one(), name=name, expected_size=len(content))
    return stored.uid


# -- workers, users, groups ------------------------------------------------------------------------------
async def workers_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    found = await hosts.list_hosts(visit.srv, visit.caller)
    states = {
        s: sum(1 for h in found if h["state"] == s) for s in ("active", "suspended", "lost", "disabled")
    }
    return render(
        "workers.html", visit=visit, hosts=found, states=states, credit=await _credit(visit.srv, found)
    )


async def _credit(srv: Server, shown: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """Per host shown: the tasks it completed and their CPU seconds (user + system), the
    measure of a volunteer's contribution (BOINC's credit counts CPU time too)."""
    uids = [h["uid"] for h in shown]
    credit: dict[str, tuple[int, float]] = {}
    cpu = func.coalesce(
        func.sum(func.coalesce(Task.cpu_user_s, 0.0) + func.coalesce(Task.cpu_system_s, 0.0)), 0.0
    )
    async with srv.sessions() as db:
        for start in range(0, len(uids), 500):
            q = (
                select(Host.uid, func.count(), cpu)
                .join(Task, Task.host_id == Host.id)
                .where(Host.uid.in_(uids[start : start + 500]), Task.status == TaskStatus.COMPLETED.value)
                .group_by(Host.uid)
            )
            for uid, n, seconds in await db.execute(q):
                credit[uid] = (int(n), float(seconds or 0.0))
    return credit


async def users_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    found = await users.list_users(visit.srv, visit.caller)
    labels = {g["uid"]: g["label"] for g in await groups.list_groups(visit.srv, visit.caller)}
    return render("users.html", visit=visit, users=found, labels=labels)


async def groups_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    return render("groups.html", visit=visit, groups=await groups.list_groups(visit.srv, visit.caller))


async def style(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(HERE / "static" / "style.css", headers={"Content-Type": "text/css"})
    response.headers["Cache-Control"] = "max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def add_pages(app: web.Application, srv: Server) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/login", login_form)
    r.add_post("/login", login_submit)
    r.add_post("/logout", page(logout))
    r.add_get("/jobs", page(jobs_page))
    r.add_get("/jobs/{uid}", page(job_page))
    r.add_get("/jobs/{uid}/result", page(job_result))
    r.add_get("/submit", page(submit_form))
    r.add_post("/submit", page(submit))
    r.add_get("/workers", page(workers_page))
    r.add_get("/users", page(users_page, super_only=True))
    r.add_get("/groups", page(groups_page, super_only=True))
    r.add_get("/static/style.css", style)
