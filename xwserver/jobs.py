"""Jobs: submission (one or bulk), listing, removal; and the tasks that ran them."""

from __future__ import annotations

import json
import logging
import shlex
import time
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon import defaults
from xwcommon.errors import BadRequest, Conflict, Forbidden, NotFound
from xwcommon.levels import UserLevel, format_access_rights
from xwcommon.status import JobStatus, TaskStatus
from xwcommon.uri import new_uid, parse_uid

from . import apps as apps_mod
from . import events, hot, jobsets, lifecycle, pending, requirements, validation
from .access import EXEC, READ, WRITE, Caller, may_on, may_sql
from .data import check_name, get_readable, owner_id_of
from .db.engine import connection, is_integrity_error, transaction
from .db.models import App, Data, Host, Job, JobTag, Task, User
from .state import Server, uid_maps

log = logging.getLogger(__name__)

MAX_ARG_BYTES = 64 * 1024
MAX_LIST = 10_000
MAX_OFFSET = 2**62  # past any table; larger would overflow the databases' OFFSET (a 500, not a 400)


def _parse_args(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            args = shlex.split(value)
        except ValueError as exc:
            raise BadRequest(f"args: cannot split {value!r}: {exc}") from None
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        args = list(value)
    else:
        raise BadRequest('"args" must be a list of strings or one string')
    if any("\0" in a for a in args):
        raise BadRequest("args must not contain NUL characters")
    if sum(len(a) for a in args) > MAX_ARG_BYTES:
        raise BadRequest(f"args are longer than {MAX_ARG_BYTES} characters in all")
    return args


MAX_BYTES = 2**62  # within a signed 64-bit column on every database

JOB_FIELDS = frozenset(
    {
        "app",
        "args",
        "stdin_uid",
        "env_uid",
        "label",
        "max_retry",
        "min_memory_bytes",
        "min_disk_bytes",
        "session_uid",
        "group_uid",
        "expected_host_uid",
        "priority",
        *validation.DEFAULT_REPLICATION,
        "tags",
        "min_cores",
        "min_gpus",
    }
)

#: the highest priority each level may ask (anyone may lower their jobs down to -1000)
MAX_PRIORITY = {UserLevel.STANDARD: 0, UserLevel.ADVANCED: 100, UserLevel.SUPER: 1000}
MIN_PRIORITY = -1000


def _priority(caller: Caller, value: Any) -> int:
    if value is None:
        return 0
    top = MAX_PRIORITY.get(caller.rights, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_PRIORITY <= value <= 1000:
        raise BadRequest(f'"priority" must be an integer from {MIN_PRIORITY} to {top}')
    if value > top:
        raise Forbidden(
            f'"priority" {value} is above what {caller.rights.name} users may ask ({top}); '
            "a higher priority needs a higher level"
        )
    return value


def _bytes(spec: dict[str, Any], key: str) -> int:
    value = spec.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BYTES:
        raise BadRequest(f'"{key}" must be an integer number of bytes from 0 to {MAX_BYTES}')
    return value


#: the references of a job spec other than its app (they need the ORM's objects to resolve)
_REFERENCES = ("stdin_uid", "env_uid", "session_uid", "group_uid", "expected_host_uid")
_INSERT_JOBS = insert(Job)
_INSERT_TAGS = insert(JobTag)
_JOB_IDS = select(Job.uid, Job.id).where(Job.uid.in_(bindparam("uids", expanding=True)))


class _Resolver:
    """Resolves app, data, session, group and host references once per distinct reference
    in a bulk (a macro names the same few thousands of times)."""

    def __init__(self, srv: Server, caller: Caller) -> None:
        self.srv, self.caller = srv, caller
        self.apps: dict[str, Any] = {}
        self.data: dict[str, Data] = {}
        self.sets: dict[str, dict[str, Any]] = {"session": {}, "group": {}}
        self.hosts: dict[str, Host] = {}

    async def job_set(self, session: AsyncSession, kind: jobsets.JobSetKind, ref: Any) -> int | None:
        """A session or group the caller may write (submit into); None if not named."""
        what = f"{kind.name}_uid"
        if ref is None:
            return None
        if not isinstance(ref, str):
            raise BadRequest(f'"{what}" must be a {kind.name} UID or URI')
        cache = self.sets[kind.name]
        if ref not in cache:
            cache[ref] = await jobsets.find(session, self.caller, kind, ref, WRITE, what=f'"{what}"')
        return int(cache[ref].id)

    async def host_id(self, session: AsyncSession, ref: Any) -> int | None:
        """The host a job must run on: one the caller may read (as GET /hosts shows them)."""
        if ref is None:
            return None
        if not isinstance(ref, str):
            raise BadRequest('"expected_host_uid" must be a host UID or URI')
        if ref not in self.hosts:
            uid = parse_uid(ref, "expected_host_uid")
            host = (await session.execute(select(Host).where(Host.uid == uid))).scalar_one_or_none()
            if host is None or not (
                self.caller.rights >= UserLevel.ADVANCED
                or await may_on(
                    session, self.caller, READ, owner_id=host.owner_id, access_rights=host.access_rights
                )
            ):
                raise NotFound(f'"expected_host_uid": no host {uid} visible to you; list them with xwworkers')
            self.hosts[ref] = host
        return self.hosts[ref].id

    async def app(self, conn: Any, ref: Any) -> Any:
        """A row of ``apps_mod.APP_ROW``."""
        if not isinstance(ref, str) or not ref:
            raise BadRequest('"app" must name an application (its name, UID or URI)')
        if ref not in self.apps:
            self.apps[ref] = await apps_mod.find_row(conn, self.caller, ref, EXEC)
        return self.apps[ref]

    async def data_id(self, session: AsyncSession, ref: Any, what: str) -> int | None:
        if ref is None:
            return None
        if not isinstance(ref, str):
            raise BadRequest(f'"{what}" must be a data UID or URI')
        if ref not in self.data:
            parse_uid(ref, what)  # a malformed reference is refused naming its field
            self.data[ref] = await get_readable(self.srv, self.caller, ref, session=session)
        return self.data[ref].id


async def _row(
    session: Any, srv: Server, res: _Resolver, spec: Any, now: float, tag_lists: list[list[str]]
) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise BadRequest('a job is a JSON object {"app": ..., "args": [...], ...}')
    unknown = set(spec) - JOB_FIELDS
    if unknown:
        raise BadRequest(f"unknown job fields: {', '.join(sorted(unknown))[:200]}")
    app = await res.app(session, spec.get("app"))
    label = spec.get("label")
    if label is not None:
        label = check_name(label, "label")
    needs, wanted = requirements.of_job(spec, app)
    tag_lists.append(wanted)
    max_retry = spec.get("max_retry", srv.settings.max_retry)
    if max_retry is None:
        max_retry = srv.settings.max_retry
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or not 0 <= max_retry <= 100:
        raise BadRequest('"max_retry" must be an integer from 0 to 100')
    return {
        "uid": new_uid(),
        "app_id": app.id,
        "owner_id": res.caller.id,
        "label": label,
        "args": json.dumps(_parse_args(spec.get("args"))),
        "stdin_data_id": await res.data_id(session, spec.get("stdin_uid"), "stdin_uid"),
        "env_data_id": await res.data_id(session, spec.get("env_uid"), "env_uid"),
        "status": JobStatus.PENDING.value,
        "retry": 0,
        "max_retry": max_retry,
        "access_rights": app.access_rights,  # a job's rights are its app's
        "created_at": now,
        "min_memory_bytes": _bytes(spec, "min_memory_bytes"),
        "min_disk_bytes": _bytes(spec, "min_disk_bytes"),
        "needs_network": bool(app.needs_network),  # copied, as the rights: the claim reads the job alone
        "session_id": await res.job_set(session, jobsets.SESSIONS, spec.get("session_uid")),
        "group_id": await res.job_set(session, jobsets.GROUPS, spec.get("group_uid")),
        "expected_host_id": await res.host_id(session, spec.get("expected_host_uid")),
        "nice": -_priority(res.caller, spec.get("priority")),
        "share_key": 0.0,  # set with the whole submission's (share_keys)
        "unsent": 1,
        "sent": 0,
        "done": 0,
        "trusted": False,
        **_replication(spec, app),
        **needs,
    }


def _replication(spec: dict[str, Any], app: Any) -> dict[str, Any]:
    """The job's replication: what it asks over its application's. A job of several
    copies starts with ``target_results`` of them to send."""
    base = {key: getattr(app, key) for key in validation.DEFAULT_REPLICATION}
    out: dict[str, Any] = validation.replication(spec, base)
    if out["min_quorum"] > 1 or out["target_results"] > 1:
        out["unsent"] = out["target_results"]
    return out


_SHARE_VTIME = select(User.share_vtime).where(User.id == bindparam("owner"))
_SET_SHARE_VTIME = update(User).where(User.id == bindparam("owner")).values(share_vtime=bindparam("vtime"))
_QUEUE_HEAD = select(func.min(Job.share_key)).where(hot.status_is(Job.status, JobStatus.PENDING.value))


#: how many of an owner's (and of everyone's) latest completed copies set its usage weight
USAGE_WINDOW = 200
USAGE_WEIGHT_TTL_S = 60.0
MIN_WEIGHT, MAX_WEIGHT = 0.1, 10.0

_CPU = func.coalesce(Task.cpu_user_s, 0.0) + func.coalesce(Task.cpu_system_s, 0.0)
_LATEST_OF_OWNER = (
    select(_CPU.label("cpu"))
    .join(Job, Job.id == Task.job_id)
    .where(Job.owner_id == bindparam("owner"), hot.status_is(Task.status, TaskStatus.COMPLETED.value))
    .order_by(Task.id.desc())
    .limit(USAGE_WINDOW)
    .subquery()
)
_OWNER_MEAN = select(func.avg(_LATEST_OF_OWNER.c.cpu))
_LATEST = (
    select(_CPU.label("cpu"))
    .where(hot.status_is(Task.status, TaskStatus.COMPLETED.value))
    .order_by(Task.id.desc())
    .limit(5 * USAGE_WINDOW)
    .subquery()
)
_MEAN = select(func.avg(_LATEST.c.cpu))


async def usage_weight(srv: Server, conn: Any, owner_id: int) -> float:
    """How far one of the owner's jobs moves its share key: the CPU seconds its latest
    completed copies took on average, against everyone's (1 when either is unknown), within
    [MIN_WEIGHT, MAX_WEIGHT]. An owner whose jobs each take ten times the CPU of others' gets
    a tenth of the jobs, so owners are served by usage, not by job counts. Kept a minute."""
    now = time.monotonic()
    hit = srv.usage_weights.get(owner_id)
    if hit is not None and now - hit[1] < USAGE_WEIGHT_TTL_S:
        return hit[0]
    mine = (await conn.execute(_OWNER_MEAN, {"owner": owner_id})).scalar_one_or_none()
    everyone = (await conn.execute(_MEAN)).scalar_one_or_none()
    if not (mine and everyone):
        return 1.0  # no history yet: asked again next time (not kept)
    weight = min(MAX_WEIGHT, max(MIN_WEIGHT, float(mine) / float(everyone)))
    if len(srv.usage_weights) > 100_000:
        srv.usage_weights.clear()
    srv.usage_weights[owner_id] = (weight, now)
    return weight


async def share_keys(srv: Server, conn: Any, owner_id: int, rows: list[dict[str, Any]]) -> None:
    """Fair share across owners (start-time fair queuing, weighted by usage): a submission's
    jobs take the owner's next keys from max(the owner's virtual time, the queue's head),
    one step per job, the step being the owner's usage weight (:func:`usage_weight`). An
    owner with 1,000 jobs queued has keys far ahead; one who submits 10 now gets keys at the
    head, so their jobs run next to the big owner's rather than after them all. An owner who
    was idle gains no credit: the keys never start behind the head. The head is the highest
    key this process claimed lately (read from the queue once)."""
    if srv.queue_head is None:
        srv.queue_head = float((await conn.execute(_QUEUE_HEAD)).scalar_one_or_none() or 0.0)
    vtime = float((await conn.execute(_SHARE_VTIME, {"owner": owner_id})).scalar_one_or_none() or 0.0)
    step = await usage_weight(srv, conn, owner_id)
    start = max(vtime, srv.queue_head)
    for i, row in enumerate(rows, 1):
        row["share_key"] = start + i * step
    await conn.execute(_SET_SHARE_VTIME, {"owner": owner_id, "vtime": start + len(rows) * step})


async def submit(srv: Server, caller: Caller, specs: list[Any]) -> list[dict[str, Any]]:
    """Insert jobs in one transaction (all or nothing) and wake waiting workers."""
    caller.require(UserLevel.STANDARD, "submitting jobs")
    if not specs:
        return []
    if len(specs) > defaults.MAX_BULK_JOBS:
        raise BadRequest(f"at most {defaults.MAX_BULK_JOBS} jobs per request; split the batch")
    res = _Resolver(srv, caller)
    now = time.time()
    shown_tags: dict[str, list[str]] = {}

    async def rows_of(conn: Any) -> list[dict[str, Any]]:
        rows = []
        tag_lists: list[list[str]] = []
        for i, spec in enumerate(specs):
            try:
                rows.append(await _row(conn, srv, res, spec, now, tag_lists))
            except (BadRequest, Forbidden, NotFound) as exc:
                if len(specs) > 1:
                    raise type(exc)(f"job #{i}: {exc.message}") from None
                raise
        await share_keys(srv, conn, caller.id, rows)
        await conn.execute(_INSERT_JOBS, rows)
        await events.record(
            conn, [events.event("job", r["uid"], "created", owner_id=caller.id) for r in rows], now
        )
        tagged = {r["uid"]: t for r, t in zip(rows, tag_lists, strict=True) if t}
        shown_tags.update(tagged)
        if tagged:  # the jobs' ids, for their tags' rows
            ids = dict((await conn.execute(_JOB_IDS, {"uids": list(tagged)})).all())
            await conn.execute(
                _INSERT_TAGS,
                [{"job_id": ids[uid], "tag": tag} for uid, wanted in tagged.items() for tag in wanted],
            )
        return rows

    try:
        if all(
            isinstance(spec, dict) and not any(spec.get(k) is not None for k in _REFERENCES) for spec in specs
        ):
            # jobs that name nothing but their app: Core statements on the driver, as the
            # hot path (the ORM session cost PostgreSQL's submissions half their latency)
            rows = await transaction(srv.engine, rows_of)
        else:
            async with srv.sessions.begin() as session:
                rows = await rows_of(session)
    except Exception as exc:  # something these jobs name was removed meanwhile (a foreign key)
        if not is_integrity_error(exc):
            raise
        log.warning("submission refused by the database: %s", exc)
        raise Conflict(
            "an application, data, session or group these jobs name was removed meanwhile; nothing was submitted"
        ) from None
    by_id = {a.id: a for a in res.apps.values()}
    data_uids = {d.id: d.uid for d in res.data.values()}
    uids = {
        "app": {a.id: a.uid for a in by_id.values()},
        "user": {caller.id: caller.uid},
        "data": data_uids,
        "session": {r.id: r.uid for r in res.sets["session"].values()},
        "group": {r.id: r.uid for r in res.sets["group"].values()},
        "host": {h.id: h.uid for h in res.hosts.values()},
    }
    names = {a.id: a.name for a in by_id.values()}
    # Wire.job only reads attributes: a plain namespace per row costs a tenth of an ORM Job
    # (whose instrumented constructor was most of a 5000-job bulk's time)
    unset = dict.fromkeys(("id", "exit_code", "message", "result_data_id", "started_at", "completed_at"))
    made = [SimpleNamespace(**unset, **r, tags_list=shown_tags.get(r["uid"], [])) for r in rows]
    shown = [{**srv.wire.job(cast(Job, j), uids, names, {}), "tags": shown_tags.get(j.uid, [])} for j in made]
    async with connection(srv.engine) as conn:  # a job that cannot run says so at once
        await _explain(pending.Explainer(srv, conn, budget=20), made, shown)
    # workers are woken once the answer is ready: nothing awaits between the two, so a
    # worker's claim never runs before the submitter has its answer
    srv.notifier.notify(len(rows))
    return shown


async def render_jobs(srv: Server, session: AsyncSession, jobs: list[Job]) -> list[dict[str, Any]]:
    app_ids = {j.app_id for j in jobs}
    names = (
        dict((await session.execute(select(App.id, App.name).where(App.id.in_(app_ids)))).all())
        if jobs
        else {}
    )
    data_ids = [x for j in jobs for x in (j.stdin_data_id, j.env_data_id, j.result_data_id)]
    uids = await uid_maps(
        session,
        {
            "app": app_ids,
            "user": [j.owner_id for j in jobs],
            "data": data_ids,
            "session": [j.session_id for j in jobs],
            "group": [j.group_id for j in jobs],
            "host": [j.expected_host_id for j in jobs],
        },
    )
    result_ids = [j.result_data_id for j in jobs if j.result_data_id]
    shas = (
        dict((await session.execute(select(Data.id, Data.sha256).where(Data.id.in_(result_ids)))).all())
        if result_ids
        else {}
    )
    tags: dict[int, list[str]] = {}
    tagged = [j.id for j in jobs if j.tag_count]
    for start in range(0, len(tagged), 900):
        rows = await session.execute(
            select(JobTag.job_id, JobTag.tag).where(JobTag.job_id.in_(tagged[start : start + 900]))
        )
        for job_id, tag in rows:
            tags.setdefault(job_id, []).append(tag)
    return [{**srv.wire.job(j, uids, names, shas), "tags": sorted(tags.get(j.id, []))} for j in jobs]


def _parse_statuses(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(JobStatus(part.strip().upper()).value)
        except ValueError:
            raise BadRequest(
                f"unknown status {part!r}; use {', '.join(s.value for s in JobStatus)}"
            ) from None
    return out


def _paging(limit: str | None, offset: str | None) -> tuple[int, int]:
    try:
        n = int(limit) if limit else 1000
        o = int(offset) if offset else 0
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if not 1 <= n <= MAX_LIST or not 0 <= o <= MAX_OFFSET:
        raise BadRequest(f"limit must be 1..{MAX_LIST} and offset 0..{MAX_OFFSET}")
    return n, o


async def list_jobs(
    srv: Server,
    caller: Caller,
    *,
    status: str | None = None,
    label: str | None = None,
    owner: str | None = None,
    session: str | None = None,
    group: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
) -> list[dict[str, Any]]:
    """The jobs the caller may read (a job's rights are its app's); ``owner`` ("me" or a
    user UID) keeps one owner's; ``session`` and ``group`` (UIDs) one set's."""
    statuses = _parse_statuses(status)
    n, o = _paging(limit, offset)
    q = select(Job).where(may_sql(caller, READ, Job.owner_id, Job.access_rights))
    q = q.order_by(Job.id).limit(n).offset(o)
    if statuses:
        q = q.where(Job.status.in_(statuses))
    if label:
        q = q.where(Job.label == check_name(label, "label"))  # a NUL would be a 500 on PostgreSQL
    elif label is not None:
        q = q.where(Job.label == label)
    for kind, ref in ((jobsets.SESSIONS, session), (jobsets.GROUPS, group)):
        if ref:  # an unknown set matches nothing, as an unknown owner
            wanted = select(kind.model.id).where(kind.model.uid == parse_uid(ref, kind.name))
            q = q.where(kind.job_column.in_(wanted))
    async with srv.sessions() as db:
        if owner:
            q = q.where(Job.owner_id == await owner_id_of(db, caller, owner))
        jobs = list((await db.execute(q)).scalars())
        shown = await render_jobs(srv, db, jobs)
        await _explain(pending.Explainer(srv, db), jobs, shown)
        return shown


async def _explain(explainer: pending.Explainer, jobs: list[Any], shown: list[dict[str, Any]]) -> None:
    """Each PENDING job that no connected worker can run says why (``pending_reason``)."""
    for job, row in zip(jobs, shown, strict=True):
        if job.status == JobStatus.PENDING.value and (why := await explainer.reason(job)) is not None:
            row["pending_reason"] = why


async def _job(session: AsyncSession, caller: Caller, uid_text: str, bit: int = READ) -> Job:
    """A job: 404 unless the caller may read it, 403 unless it may ``bit`` it."""
    uid = parse_uid(uid_text)
    job = (await session.execute(select(Job).where(Job.uid == uid))).scalar_one_or_none()
    if job is None or not await may_on(
        session, caller, READ, owner_id=job.owner_id, access_rights=job.access_rights
    ):
        raise NotFound(f"no job {uid}; list yours with xwworks")
    if bit != READ and not await may_on(
        session, caller, bit, owner_id=job.owner_id, access_rights=job.access_rights
    ):
        raise Forbidden(
            f"job {uid} is not yours to change: its access rights (its application's) are "
            f"{format_access_rights(job.access_rights)}"
        )
    return job


async def get(srv: Server, caller: Caller, uid_text: str) -> dict[str, Any]:
    async with srv.sessions() as session:
        job = await _job(session, caller, uid_text)
        shown = (await render_jobs(srv, session, [job]))[0]
        why = await pending.reason(srv, session, job)
        if why is not None:
            shown["pending_reason"] = why
        return shown


async def delete(srv: Server, caller: Caller, uid_text: str) -> None:
    """Remove a job (aborting its live task first) and its result."""
    from .data import collect_digest

    async with srv.sessions.begin() as session:
        if caller.rights < UserLevel.STANDARD:
            raise Forbidden(f"removing jobs needs STANDARD rights; {caller.login} has {caller.rights.name}")
        job = await _job(session, caller, uid_text, WRITE)
        shas = await lifecycle.remove_jobs(session, [job.id])
    for sha in shas:  # one job: its file goes now rather than at the collector's next round
        await collect_digest(srv, sha)


async def list_tasks(
    srv: Server,
    caller: Caller,
    *,
    job: str | None = None,
    status: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
) -> list[dict[str, Any]]:
    n, o = _paging(limit, offset)
    q = select(Task, Job.uid, Host.uid).join(Job, Job.id == Task.job_id).join(Host, Host.id == Task.host_id)
    if not caller.is_super:  # a task is seen by whoever may read its job, and by its host's owner
        q = q.where(or_(may_sql(caller, READ, Job.owner_id, Job.access_rights), Host.owner_id == caller.id))
    if job:
        q = q.where(Job.uid == parse_uid(job, "job"))
    if status:
        try:
            q = q.where(Task.status == TaskStatus(status.upper()).value)
        except ValueError:
            raise BadRequest(f"unknown task status {status!r}") from None
    q = q.order_by(Task.id).limit(n).offset(o)
    async with srv.sessions() as session:
        rows = (await session.execute(q)).all()
    return [srv.wire.task(t, job_uid, host_uid) for t, job_uid, host_uid in rows]


async def delete_many(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    """``POST /jobs/delete``: remove the listed jobs the caller may write, in one transaction.

    Not all or nothing (xwresults erases results as it downloads them, so some may be gone
    already): ``{"deleted": [uid…], "missing": [{"uid", "reason"}…]}``.
    """
    caller.require(UserLevel.STANDARD, "removing jobs")
    wanted = _listed_uids(body)
    async with srv.sessions.begin() as session:
        ids, deleted, missing = await _writable(session, caller, wanted, "remove")
        await lifecycle.remove_jobs(session, ids)
    return {"deleted": deleted, "missing": missing}


ABORTED_MESSAGE = "aborted by {login}"


async def abort_many(srv: Server, caller: Caller, body: Any) -> dict[str, Any]:
    """``POST /jobs/abort``: the listed jobs the caller may write end ABORTED unless they are
    over; they stay for their owner to see (xwrm removes them). Their running copies stop at
    their workers' next heartbeat. ``{"aborted": [uid…], "missing": [{"uid", "reason"}…]}``:
    a job that had ended already is listed as missing with its status."""
    caller.require(UserLevel.STANDARD, "aborting jobs")
    wanted = _listed_uids(body)
    now = time.time()
    async with srv.sessions.begin() as session:
        ids, writable, missing = await _writable(session, caller, wanted, "abort")
        statuses = dict(
            (await session.execute(select(Job.uid, Job.status).where(Job.id.in_(ids)))).all() if ids else []
        )
        await lifecycle.abort_jobs(session, ids, now, ABORTED_MESSAGE.format(login=caller.login))
    aborted = []
    for uid in writable:
        if statuses.get(uid) in validation.LIVE:
            aborted.append(uid)
        else:
            missing.append({"uid": uid, "reason": f"it is {statuses.get(uid)} already: nothing to abort"})
    return {"aborted": aborted, "missing": missing}


def _listed_uids(body: Any) -> list[str]:
    if not isinstance(body, dict) or set(body) != {"uids"} or not isinstance(body["uids"], list):
        raise BadRequest('expected {"uids": [job UID, ...]} and nothing else')
    refs = body["uids"]
    if len(refs) > defaults.MAX_BULK_JOBS:
        raise BadRequest(f'"uids": at most {defaults.MAX_BULK_JOBS} jobs per request; split the list')
    wanted: list[str] = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, str):
            raise BadRequest(f'"uids[{i}]" must be a job UID or URI')
        uid = parse_uid(ref, f"uids[{i}]")
        if uid not in wanted:
            wanted.append(uid)
    return wanted


async def _writable(
    session: AsyncSession, caller: Caller, wanted: list[str], verb: str
) -> tuple[list[int], list[str], list[dict[str, str]]]:
    """The listed jobs the caller may write: (ids, uids, the others with the reason)."""
    found: dict[str, tuple[int, int, int]] = {}
    for start in range(0, len(wanted), 900):
        rows = await session.execute(
            select(Job.uid, Job.id, Job.owner_id, Job.access_rights).where(
                Job.uid.in_(wanted[start : start + 900])
            )
        )
        found.update({uid: (job_id, owner, rights) for uid, job_id, owner, rights in rows})
    uids: list[str] = []
    missing: list[dict[str, str]] = []
    ids: list[int] = []
    for uid in wanted:
        if uid not in found:
            missing.append({"uid": uid, "reason": "no such job"})
            continue
        job_id, owner, rights = found[uid]
        if not await may_on(session, caller, READ, owner_id=owner, access_rights=rights):
            missing.append({"uid": uid, "reason": "no such job"})  # as GET /jobs/{uid}: 404
        elif not await may_on(session, caller, WRITE, owner_id=owner, access_rights=rights):
            missing.append(
                {
                    "uid": uid,
                    "reason": f"not yours to {verb}: its access rights are {format_access_rights(rights)}",
                }
            )
        else:
            uids.append(uid)
            ids.append(job_id)
    return ids, uids, missing
