"""Why a PENDING job is not running: what no connected worker offers it.

A job the claim can give to none of the connected workers would stay PENDING without a
word (HTCondor's ``condor_q -analyze`` answers the same question). Asked when one job
is shown, never on the hot path: the answer walks the connected hosts, not the queue.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.levels import UserLevel, format_access_rights
from xwcommon.platforms import ANY
from xwcommon.status import JobStatus

from .access import READ, owner_group
from .db.models import AppBinary, Data, Host, Job, JobTag, User
from .state import Server

_CONNECTED = (
    select(
        Host.id,
        Host.os,
        Host.cpu,
        Host.memory_bytes,
        Host.disk_free_bytes,
        Host.cores,
        Host.gpus,
        Host.tags,
        User.id.label("identity"),
        User.rights,
        User.group_id,
    )
    .join(User, User.id == Host.owner_id)
    .where(Host.enabled.is_(True))
)


def _may_run(identity: Any, job: Job, owner_group: int | None) -> bool:
    """The claim's rule (hot.claim_select) for one worker identity."""
    if UserLevel(identity.rights) >= UserLevel.STANDARD:
        return bool(identity.identity == job.owner_id)
    if identity.group_id is None:
        return bool(job.access_rights & 0o001)
    return owner_group == identity.group_id and bool(job.access_rights & 0o011)


def _may_read(identity: Any, data: Any, owner_group: int | None) -> bool:
    """hot._readable_input for one worker identity."""
    if UserLevel(identity.rights) >= UserLevel.SUPER or identity.identity == data.owner_id:
        return True
    if data.access_rights & READ:
        return True
    return (
        identity.group_id is not None
        and owner_group == identity.group_id
        and bool(data.access_rights & (READ << 3))
    )


#: the hosts an explanation looks at are read at most this often (a fleet of 10,000 hosts
#: would otherwise be read at every submission): a host that connected since is seen late
SNAPSHOT_TTL_S = 5.0


class Explainer:
    """Answers :func:`reason` for many jobs of one listing or submission: the hosts are read
    once, and jobs alike (same app, needs, owner, rights and inputs) share one answer."""

    def __init__(self, srv: Server, session: Any, *, now: float | None = None, budget: int = 200) -> None:
        """``session``: an ORM session or a connection (both run these Core statements)."""
        self.srv, self.session = srv, session
        #: at most this many distinct kinds of job are looked into (a listing of jobs that
        #: each read their own stdin would otherwise cost a few queries per job)
        self.budget = budget
        self.now = time.time() if now is None else now
        self._hosts: list[Any] | None = None
        self._ever: tuple[int, int, int] | None = None
        self._memo: dict[tuple[Any, ...], str | None] = {}

    async def hosts(self) -> list[Any]:
        if self._hosts is None:
            since = self.now - self.srv.settings.lease_s  # a working host heartbeats well within it
            self._hosts = list(
                (await self.session.execute(_CONNECTED.where(Host.last_seen_at >= since))).all()
            )
        return self._hosts

    async def ever(self) -> tuple[int, int, int]:
        """How many hosts were ever registered, and the most memory and disk one offered."""
        if self._ever is None:
            row = (
                await self.session.execute(
                    select(func.count(Host.id), func.max(Host.memory_bytes), func.max(Host.disk_free_bytes))
                )
            ).first()
            self._ever = (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)) if row else (0, 0, 0)
            self.srv.registered_hosts = (self.now, self._ever)
        return self._ever

    async def reason(self, job: Any) -> str | None:
        if job.status != JobStatus.PENDING.value:
            return None
        key = (
            job.app_id,
            job.owner_id,
            job.access_rights,
            job.min_memory_bytes,
            job.min_disk_bytes,
            job.expected_host_id,
            job.stdin_data_id,
            job.env_data_id,
            getattr(job, "min_quorum", 1),
            getattr(job, "min_cores", 0),
            getattr(job, "min_gpus", 0),
            tuple(await self._tags(job)),
        )
        if key not in self._memo:
            if len(self._memo) >= self.budget:
                return None
            self._memo[key] = await self._reason(job)
        return self._memo[key]

    async def _reason(self, job: Any) -> str | None:
        session = self.session
        registered, most_memory, most_disk = await self.ever()
        if registered and (job.min_memory_bytes > most_memory or job.min_disk_bytes > most_disk):
            return (
                f"no registered host has ever offered what it needs ({job.min_memory_bytes} bytes of "
                f"memory, {job.min_disk_bytes} of disk; the most any offered: {most_memory} and {most_disk})"
            )
        hosts = await self.hosts()
        if job.expected_host_id is not None:
            known = (await session.execute(select(Host.id).where(Host.id == job.expected_host_id))).first()
            if known is None:
                return "the one host it may run on (expected_host_uid) was removed; it can never run"
            hosts = [h for h in hosts if h.id == job.expected_host_id]
            if not hosts:
                return "the one host it may run on (expected_host_uid) is not connected"
        if not hosts:
            return "no worker is connected"
        platforms = await self._platforms(job.app_id)
        hosts = [h for h in hosts if any(os in (h.os, ANY) and cpu in (h.cpu, ANY) for os, cpu in platforms)]
        if not hosts:
            return "no connected worker's platform has a binary of its application"
        big_enough = [
            h
            for h in hosts
            if h.memory_bytes >= job.min_memory_bytes and h.disk_free_bytes >= job.min_disk_bytes
        ]
        if not big_enough:
            return (
                f"it needs {job.min_memory_bytes} bytes of memory and {job.min_disk_bytes} of disk; "
                f"the largest connected worker has {max(h.memory_bytes for h in hosts)} and "
                f"{max(h.disk_free_bytes for h in hosts)}"
            )
        offering = [h for h in big_enough if await self._offers(h, job)]
        if not offering:
            return (
                f"no connected worker offers what it requires: {job.min_cores} cores, {job.min_gpus} GPUs, "
                f"tags {', '.join(await self._tags(job)) or '(none)'}"
            )
        # the owners' user groups: one lookup each (group bits apply to members of the owner's group)
        # the owner's user group matters to group workers only: looked up for them alone
        grouped = any(h.group_id is not None and UserLevel(h.rights) < UserLevel.STANDARD for h in offering)
        job_group = await owner_group(session, job.owner_id) if grouped else None
        runners = [h for h in offering if _may_run(h, job, job_group)]
        if not runners:
            return (
                f"no connected worker's identity may run it (its access rights are "
                f"{format_access_rights(job.access_rights)})"
            )
        for what, data_id in (("stdin", job.stdin_data_id), ("env", job.env_data_id)):
            if data_id is None:
                continue
            data = (
                await session.execute(
                    select(Data.uid, Data.owner_id, Data.access_rights).where(Data.id == data_id)
                )
            ).first()
            if data is None:
                continue
            group = await owner_group(session, data.owner_id)
            if not any(_may_read(h, data, group) for h in runners):
                return (
                    f"no connected worker may read its {what} (data {data.uid}, access rights "
                    f"{format_access_rights(data.access_rights)})"
                )
        quorum = int(getattr(job, "min_quorum", 1) or 1)
        if quorum > 1 and len(runners) < quorum:
            return (
                f"its results must agree on {quorum} distinct hosts and {len(runners)} connected "
                "worker(s) may run it; it waits for more"
            )
        return None

    async def _platforms(self, app_id: int) -> set[tuple[str, str]]:
        """The (os, cpu) an app has binaries for, kept a few seconds (apps.py clears it when
        an app changes): a submission's explanation then asks the database nothing more."""
        cached = self.srv.app_platforms.get(app_id)
        if cached is not None and self.now - cached[0] < SNAPSHOT_TTL_S:
            return cached[1]
        rows = await self.session.execute(
            select(AppBinary.os, AppBinary.cpu).where(AppBinary.app_id == app_id)
        )
        found = {(os_name, cpu) for os_name, cpu in rows}
        if len(self.srv.app_platforms) > 10_000:
            self.srv.app_platforms.clear()
        self.srv.app_platforms[app_id] = (self.now, found)
        return found

    async def _tags(self, job: Any) -> list[str]:
        if not getattr(job, "tag_count", 0):
            return []
        given = getattr(job, "tags_list", None)  # a job just submitted: its tags as given
        if given is not None:
            return sorted(given)
        rows = await self.session.execute(select(JobTag.tag).where(JobTag.job_id == job.id))
        return sorted(rows.scalars())

    async def _offers(self, host: Any, job: Any) -> bool:
        """hot._host_offers for one host."""
        if host.cores < getattr(job, "min_cores", 0) or len(_json_list(host.gpus)) < getattr(
            job, "min_gpus", 0
        ):
            return False
        wanted = await self._tags(job)
        return set(wanted) <= set(_json_list(host.tags))


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


async def reason(srv: Server, session: AsyncSession, job: Job, *, now: float | None = None) -> str | None:
    """What keeps ``job`` from every connected worker, or None (it waits its turn, or runs)."""
    return await Explainer(srv, session, now=now).reason(job)
