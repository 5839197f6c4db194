"""Prebuilt Core statements for the hot path (claim, heartbeat, report).

Built once with bind parameters, so a request pays neither statement construction nor
ORM bookkeeping: SQLAlchemy finds the compiled SQL in its cache by the statement's
identity. Everything here is plain SQL over the tables of ``db.models``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import Update

from xwcommon.platforms import ANY
from xwcommon.status import JobStatus, TaskStatus

from .access import READ
from .db.models import App, AppBinary, Data, Host, Job, JobTag, Task, User

# Bind parameters of an UPDATE never take a column name of its table (SQLAlchemy reserves
# those for the SET clause): hence b_host_id, b_status and such.
RUNNING = TaskStatus.RUNNING.value
PENDING = JobStatus.PENDING.value


def status_is(column: Any, *values: str) -> ColumnElement[bool]:
    """``column = 'A'`` (``IN ('A', 'B')``) with the statuses written into the SQL, not bound.

    The partial indexes on PENDING jobs and RUNNING tasks serve a query only when its
    predicate names the same literal: neither PostgreSQL's generic plan of a prepared
    statement nor SQLite can prove that a bound parameter matches an index's predicate.
    """
    names = sorted(set(values))
    for name in names:  # statuses are constants of xwcommon.status, never user input
        if not name.isalpha() or not name.isupper():
            raise ValueError(f"not a status name: {name!r}")
    literals = [literal_column(f"'{name}'", String) for name in names]
    return column == literals[0] if len(literals) == 1 else column.in_(literals)


_platforms = (
    AppBinary.os.in_([bindparam("os"), ANY]),
    AppBinary.cpu.in_([bindparam("cpu"), ANY]),
)


#: what a claim reads of each job it takes
CLAIMED_COLUMNS = (
    Job.id,
    Job.uid,
    Job.app_id,
    Job.args,
    Job.stdin_data_id,
    Job.env_data_id,
    Job.needs_network,
    Job.min_memory_bytes,
    Job.min_disk_bytes,
    Job.share_key,
    Job.nice,
    Job.owner_id,
)


@cache
def _readable_input(column: Any) -> ColumnElement[bool]:
    """No input in ``column``, or one the worker identity may read by its access bits (bind
    ``b_owner_id``, ``b_group_id``): owner, other-read bit, or group-read bit and a member
    of the owner's group. Checked at claim time, so a worker's cache holding the same bytes
    never runs a job on data its identity may not read (the download would be refused)."""
    data = aliased(Data)
    members = select(User.id).where(User.group_id == bindparam("b_group_id"))
    return or_(
        column.is_(None),
        exists().where(
            data.id == column,
            or_(
                data.owner_id == bindparam("b_owner_id"),
                data.access_rights.op("&")(READ) != 0,
                and_(data.access_rights.op("&")(READ << 3) != 0, data.owner_id.in_(members)),
            ),
        ),
    )


@cache
def _new_to_host() -> ColumnElement[bool]:
    """A replicated job's copies go to distinct hosts (bind ``host_id``) of distinct
    volunteers (bind ``b_volunteer``: the host owner's id when it is a private worker's,
    -1 for a public or group worker identity, which a whole fleet of volunteers shares)."""
    copy = aliased(Task)
    volunteer_hosts = select(Host.id).where(Host.owner_id == bindparam("b_volunteer"))
    return or_(
        Job.min_quorum <= 1,
        Job.sent == 0,
        ~exists().where(
            copy.job_id == Job.id,
            or_(copy.host_id == bindparam("host_id"), copy.host_id.in_(volunteer_hosts)),
        ),
    )


#: the queue's order: priority (``nice`` = -priority), fair share across owners, submission
QUEUE_ORDER = (Job.nice, Job.share_key, Job.id)

#: what a host offers the claim (bind ``b_cores``, ``b_gpus`` and ``b_tags``, a list never
#: empty: a host with no tag binds NO_TAG): a job's cores, GPUs and every one of its tags
NO_TAG = " "  # never a tag: tags have no spaces (xwserver.requirements)


@cache
def _host_offers() -> ColumnElement[bool]:
    held = (
        select(func.count())
        .select_from(JobTag)
        .where(JobTag.job_id == Job.id, JobTag.tag.in_(bindparam("b_tags", expanding=True)))
        .scalar_subquery()
    )
    return and_(
        Job.min_cores <= bindparam("b_cores"),
        Job.min_gpus <= bindparam("b_gpus"),
        or_(Job.tag_count == 0, Job.tag_count == held),
    )


def claim_select(
    kind: str, skip_locked: bool, fit: bool = False, offline: bool = False, inputs: bool = True
) -> Any:
    """PENDING jobs a worker may run, in the queue's order. ``kind``: private, public or group.

    ``fit``: only jobs whose declared needs fit the host's free memory and disk (bind
    ``free_memory``, ``free_disk``); ``offline``: only jobs that do not need the network.
    A job bound to one host (``expected_host_id``) goes to that host only (bind ``host_id``).
    ``inputs``: only jobs whose stdin and env the worker identity may read (a SUPER
    identity may read everything). A replicated job's next copy goes to a host that holds
    no copy of it yet (:func:`_new_to_host`).
    """
    if kind == "private":
        rights = Job.owner_id == bindparam("b_owner_id")
    elif kind == "public":
        rights = Job.access_rights.op("&")(0o001) != 0
    else:
        members = select(User.id).where(User.group_id == bindparam("b_group_id"))
        rights = and_(Job.owner_id.in_(members), Job.access_rights.op("&")(0o011) != 0)
    where = [
        status_is(Job.status, PENDING),
        Job.app_id.in_(select(AppBinary.app_id).where(*_platforms)),
        rights,
        or_(Job.expected_host_id.is_(None), Job.expected_host_id == bindparam("host_id")),
        _new_to_host(),
        _host_offers(),
    ]
    if fit:
        where += [
            Job.min_memory_bytes <= bindparam("free_memory"),
            Job.min_disk_bytes <= bindparam("free_disk"),
        ]
    if offline:
        where.append(Job.needs_network.is_(False))
    if inputs:
        where += [_readable_input(Job.stdin_data_id), _readable_input(Job.env_data_id)]
    q = select(*CLAIMED_COLUMNS).where(*where).order_by(*QUEUE_ORDER).limit(bindparam("k"))
    if skip_locked:
        q = q.with_for_update(skip_locked=True, of=Job)
    return q


BINARIES = (
    select(AppBinary.app_id, AppBinary.os, AppBinary.cpu, Data.uid, Data.sha256, Data.size, App.name)
    .join(Data, Data.id == AppBinary.data_id)
    .join(App, App.id == AppBinary.app_id)
    .where(AppBinary.app_id.in_(bindparam("app_ids", expanding=True)), *_platforms)
)

INPUTS = select(Data.id, Data.uid, Data.sha256, Data.size).where(
    Data.id.in_(bindparam("ids", expanding=True))
)

HOST_BY_UID = select(
    Host.id,
    Host.owner_id,
    Host.os,
    Host.cpu,
    Host.enabled,
    Host.valid_streak,
    Host.cores,
    Host.gpus,
    Host.tags,
).where(Host.uid == bindparam("uid"))

HOST_SEEN: Update = update(Host).where(Host.id == bindparam("host_id")).values(last_seen_at=bindparam("now"))

#: HOST_SEEN with what the worker's activation policy says; ``activation_since`` moves only
#: when the state changes. It comes first in the SET clause: MariaDB assigns left to right,
#: each assignment seeing the ones before it (the others read the old row).
HOST_SEEN_ACTIVATION: Update = (
    update(Host)
    .where(Host.id == bindparam("host_id"))
    .ordered_values(
        (
            Host.activation_since,
            case(
                (Host.activation_state == bindparam("state", type_=String()), Host.activation_since),
                else_=bindparam("since", type_=Double()),
            ),
        ),
        (Host.last_seen_at, bindparam("now")),
        (Host.activation_state, bindparam("state", type_=String())),
        (Host.activation_detail, bindparam("detail", type_=String())),
    )
)

TASK_OF = (
    select(
        Task.id,
        Task.status,
        Task.job_id,
        Job.uid.label("job_uid"),
        Job.owner_id.label("job_owner_id"),
        Job.min_quorum.label("min_quorum"),
        Job.sent.label("sent"),
        Host.owner_id.label("host_owner_id"),
        Host.uid.label("host_uid"),
        Host.enabled.label("host_enabled"),
    )
    .join(Job, Job.id == Task.job_id)
    .join(Host, Host.id == Task.host_id)
    .where(Task.uid == bindparam("uid"))
)
TASK_OF_LOCKED = TASK_OF.with_for_update(of=Task)
