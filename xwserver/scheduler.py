"""The claim: hand PENDING jobs to a worker that may run them, in one short transaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xwcommon import defaults
from xwcommon.errors import BadRequest, Forbidden
from xwcommon.levels import UserLevel
from xwcommon.platforms import ANY
from xwcommon.uri import new_uid

from . import hot
from .access import Caller
from .hosts import own_host
from .leases import release_tasks, report_many
from .state import HostInfo, Server
from .wire import iso

MAX_CAPACITY = 256
MAX_WAIT_S = 60.0
MAX_BYTES = 2**62  # within a signed 64-bit column on every database


def worker_kind(caller: Caller) -> str:
    """Which jobs a worker identity may run (DESIGN: public, group and private workers)."""
    if caller.rights >= UserLevel.STANDARD:
        return "private"  # its owner's jobs only
    if caller.group_id is None:
        return "public"  # public jobs (executable by others)
    return "group"  # its group's jobs, and public jobs of its group's members


def _binary_rank(os_name: str, cpu: str) -> int:
    """Prefer the most specific binary: exact (os, cpu) over one 'any' over both."""
    return (os_name == ANY) + (cpu == ANY)


@dataclass(frozen=True)
class Resources:
    """What a work request says it has free now; None: not said (no filter on it)."""

    free_memory_bytes: int | None = None
    free_disk_bytes: int | None = None
    network: bool | None = None

    @property
    def fit(self) -> bool:
        return self.free_memory_bytes is not None or self.free_disk_bytes is not None

    @property
    def offline(self) -> bool:
        return self.network is False


def parse_resources(body: dict[str, Any]) -> Resources:
    values: dict[str, Any] = {}
    for key in ("free_memory_bytes", "free_disk_bytes"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_BYTES):
            raise BadRequest(f'"{key}" must be an integer number of bytes from 0 to {MAX_BYTES}')
        values[key] = v
    network = body.get("network")
    if network is not None and not isinstance(network, bool):
        raise BadRequest('"network" must be true or false')
    return Resources(values["free_memory_bytes"], values["free_disk_bytes"], network)


async def claim(
    srv: Server, caller: Caller, host: HostInfo, capacity: int, resources: Resources = Resources()
) -> list[dict[str, Any]]:
    """One short transaction: pick, mark RUNNING, insert the tasks, describe what to fetch."""
    now = time.time()
    lease_until = now + srv.settings.lease_s
    params = {
        "os": host.os,
        "cpu": host.cpu,
        "k": capacity,
        "owner_id": caller.id,
        "group_id": caller.group_id,
        "host_id": host.id,
    }
    if resources.fit:  # one not said is no limit
        params["free_memory"] = (
            MAX_BYTES if resources.free_memory_bytes is None else resources.free_memory_bytes
        )
        params["free_disk"] = MAX_BYTES if resources.free_disk_bytes is None else resources.free_disk_bytes
    select_jobs = hot.claim_select(worker_kind(caller), srv.skip_locked, resources.fit, resources.offline)
    async with srv.engine.begin() as conn:
        jobs = (await conn.execute(select_jobs, params)).all()
        if not jobs:
            return []
        await conn.execute(hot.CLAIM_JOBS, {"ids": [j.id for j in jobs], "now": now})
        tasks = [
            {
                "uid": new_uid(),
                "job_id": j.id,
                "host_id": host.id,
                "status": hot.RUNNING,
                "started_at": now,
                "lease_expires_at": lease_until,
                "ended_at": None,
                "exit_code": None,
            }
            for j in jobs
        ]
        await conn.execute(hot.INSERT_TASKS, tasks)
        binaries: dict[int, tuple[int, dict[str, Any], str]] = {}
        rows = await conn.execute(
            hot.BINARIES, {"app_ids": list({j.app_id for j in jobs}), "os": host.os, "cpu": host.cpu}
        )
        for app_id, os_name, cpu, d_uid, sha, size, app_name in rows:
            rank = _binary_rank(os_name, cpu)
            if app_id not in binaries or rank < binaries[app_id][0]:
                binaries[app_id] = (rank, {"data_uid": d_uid, "sha256": sha, "size": size}, app_name)
        input_ids = {i for j in jobs for i in (j.stdin_data_id, j.env_data_id) if i is not None}
        inputs: dict[int, dict[str, Any]] = {}
        if input_ids:
            for d_id, d_uid, sha, size in await conn.execute(hot.INPUTS, {"ids": list(input_ids)}):
                inputs[d_id] = {"data_uid": d_uid, "sha256": sha, "size": size}
    lease_text = iso(lease_until)
    return [
        {
            "task_uid": t["uid"],
            "job_uid": j.uid,
            "app_name": binaries[j.app_id][2],
            "args": json.loads(j.args),
            "lease_expires_at": lease_text,
            "binary": binaries[j.app_id][1],
            "stdin": inputs.get(j.stdin_data_id) if j.stdin_data_id else None,
            "env": inputs.get(j.env_data_id) if j.env_data_id else None,
            "needs_network": bool(j.needs_network),
            "min_memory_bytes": j.min_memory_bytes,
            "min_disk_bytes": j.min_disk_bytes,
        }
        for j, t in zip(jobs, tasks, strict=True)
    ]


def _always() -> bool:
    return True


async def request_work(
    srv: Server, caller: Caller, body: Any, *, connected: Callable[[], bool] = _always
) -> dict[str, Any]:
    """Long-poll: claim at once, else wait for a submission (or the re-check timer).

    Reports of finished tasks may ride along (``reports``); they are applied first and
    their outcomes come back in ``reported``.

    ``connected`` tells whether the worker is still there: jobs claimed for a request
    whose worker went away meanwhile are handed back at once instead of waiting for
    their lease to expire (which would also spend a retry).
    """
    caller.require(UserLevel.WORKER, "requesting work")
    if not isinstance(body, dict):
        raise BadRequest('expected {"host_uid": ..., "capacity": k, "wait_s": s}')
    capacity = body.get("capacity", 1)
    if not isinstance(capacity, int) or isinstance(capacity, bool) or not 1 <= capacity <= MAX_CAPACITY:
        raise BadRequest(f'"capacity" must be an integer from 1 to {MAX_CAPACITY}')
    wait_s = body.get("wait_s", defaults.WORK_REQUEST_WAIT_S)
    if not isinstance(wait_s, int | float) or isinstance(wait_s, bool) or not 0 <= wait_s <= MAX_WAIT_S:
        raise BadRequest(f'"wait_s" must be a number of seconds from 0 to {MAX_WAIT_S:g}')
    resources = parse_resources(body)
    host = await own_host(srv, caller, body.get("host_uid"))
    reported = await report_many(srv, caller, body["reports"]) if body.get("reports") else []
    assignments = await _wait_and_claim(srv, caller, host, capacity, wait_s, connected, resources)
    return {"assignments": assignments, "reported": reported}


async def _wait_and_claim(
    srv: Server,
    caller: Caller,
    host: HostInfo,
    capacity: int,
    wait_s: float,
    connected: Callable[[], bool],
    resources: Resources,
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    first = True
    while True:
        if not connected():
            srv.notifier.notify(1)  # pass a wake-up this request may have taken to a live one
            return []
        if not first:  # the host may have been disabled while this request waited (403)
            host = await own_host(srv, caller, host.uid)
        first = False
        got = await claim(srv, caller, host, capacity, resources)
        if got and not connected():
            await release_tasks(srv, host.id, [a["task_uid"] for a in got])
            return []
        if got:
            try:  # disabled while claiming: hand the claim back (hosts.set_enabled sweeps again)
                await own_host(srv, caller, host.uid)
            except Forbidden:
                await release_tasks(srv, host.id, [a["task_uid"] for a in got])
                raise
        remaining = deadline - loop.time()
        if got or remaining <= 0 or srv.notifier.closing:
            return got
        await srv.notifier.wait(min(srv.settings.work_request_recheck_s, remaining))
