"""Turning rows into the JSON objects of docs/api.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from xwcommon.levels import UserLevel, format_access_rights
from xwcommon.uri import make_uri

from .db.models import App, Data, Host, Job, Task


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _accounting(t: Task) -> dict[str, Any] | None:
    """What the worker accounted for a task; null when it reported nothing."""
    shown = {
        "cpu_user_s": t.cpu_user_s,
        "cpu_system_s": t.cpu_system_s,
        "wall_s": t.wall_s,
        "max_rss_bytes": t.max_rss_bytes,
    }
    return shown if any(v is not None for v in shown.values()) else None


class Shown(Protocol):
    """What a user's JSON shows: a ``User`` row, or a login's ``users.Account``."""

    @property
    def uid(self) -> str: ...
    @property
    def login(self) -> str: ...
    @property
    def rights(self) -> int: ...
    @property
    def email(self) -> str: ...


class Wire:
    """Renders rows for one server (which names the URIs)."""

    def __init__(self, netloc: str) -> None:
        self.netloc = netloc

    def uri(self, uid: str) -> str:
        return make_uri(self.netloc, uid)

    def user(self, u: Shown, group_uid: str | None = None) -> dict[str, Any]:
        return {
            "uid": u.uid,
            "uri": self.uri(u.uid),
            "login": u.login,
            "rights": UserLevel(u.rights).name,
            "group_uid": group_uid,
            "email": u.email,
        }

    def data(self, d: Data, owner_uid: str) -> dict[str, Any]:
        return {
            "uid": d.uid,
            "uri": self.uri(d.uid),
            "name": d.name,
            "size": d.size,
            "sha256": d.sha256,
            "status": d.status,
            "owner_uid": owner_uid,
            "access_rights": format_access_rights(d.access_rights),
            "created_at": iso(d.created_at),
            **({"url": d.url} if d.url else {}),
        }

    def app(self, a: App, owner_uid: str, binaries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "uid": a.uid,
            "uri": self.uri(a.uid),
            "name": a.name,
            "owner_uid": owner_uid,
            "access_rights": format_access_rights(a.access_rights),
            "created_at": iso(a.created_at),
            "needs_network": a.needs_network,
            "binaries": binaries,
        }

    def job(
        self, j: Job, uids: dict[str, dict[int, str]], app_names: dict[int, str], result_sha: dict[int, str]
    ) -> dict[str, Any]:
        data_uids = uids["data"]
        return {
            "uid": j.uid,
            "uri": self.uri(j.uid),
            "app_uid": uids["app"].get(j.app_id),
            "app_name": app_names.get(j.app_id),
            "owner_uid": uids["user"].get(j.owner_id),
            "label": j.label,
            "args": json.loads(j.args),
            "stdin_uid": data_uids.get(j.stdin_data_id) if j.stdin_data_id else None,
            "env_uid": data_uids.get(j.env_data_id) if j.env_data_id else None,
            "status": j.status,
            "retry": j.retry,
            "max_retry": j.max_retry,
            "exit_code": j.exit_code,
            "message": j.message,
            "result_uid": data_uids.get(j.result_data_id) if j.result_data_id else None,
            "result_sha256": result_sha.get(j.result_data_id) if j.result_data_id else None,
            "created_at": iso(j.created_at),
            "started_at": iso(j.started_at),
            "completed_at": iso(j.completed_at),
            "access_rights": format_access_rights(j.access_rights),
            "min_memory_bytes": j.min_memory_bytes,
            "min_disk_bytes": j.min_disk_bytes,
            "needs_network": j.needs_network,
            "session_uid": uids.get("session", {}).get(j.session_id) if j.session_id else None,
            "group_uid": uids.get("group", {}).get(j.group_id) if j.group_id else None,
            "expected_host_uid": uids.get("host", {}).get(j.expected_host_id) if j.expected_host_id else None,
            "priority": -j.nice,
            "min_quorum": j.min_quorum,
            "target_results": j.target_results,
            "max_error_results": j.max_error_results,
            "max_total_results": j.max_total_results,
            "delay_bound_s": j.delay_bound_s,
            "copies_sent": j.sent,
            "results": j.done,
            "trusted": bool(j.trusted),
            "min_cores": j.min_cores,
            "min_gpus": j.min_gpus,
        }

    def event(self, e: Any, actor_uid: str | None = None) -> dict[str, Any]:
        return {
            "id": e.id,
            "at": iso(e.at),
            "kind": e.kind,
            "object_uid": e.object_uid,
            "action": e.action,
            "actor_uid": actor_uid,
            "address": e.address,
            "job_uid": e.job_uid,
            "host_uid": e.host_uid,
            "detail": e.detail,
        }

    def task(self, t: Task, job_uid: str, host_uid: str) -> dict[str, Any]:
        return {
            "uid": t.uid,
            "uri": self.uri(t.uid),
            "job_uid": job_uid,
            "host_uid": host_uid,
            "status": t.status,
            "started_at": iso(t.started_at),
            "ended_at": iso(t.ended_at),
            "lease_expires_at": iso(t.lease_expires_at),
            "exit_code": t.exit_code,
            "accounting": _accounting(t),
            "validity": t.validity,
        }

    def host(self, h: Host, owner_uid: str, state: str) -> dict[str, Any]:
        """``state``: active, suspended, lost or disabled (see xwserver.hosts.state_of)."""
        return {
            "uid": h.uid,
            "uri": self.uri(h.uid),
            "name": h.name,
            "os": h.os,
            "cpu": h.cpu,
            "cores": h.cores,
            "memory_bytes": h.memory_bytes,
            "disk_free_bytes": h.disk_free_bytes,
            "tags": json.loads(h.tags),
            "version": h.version,
            "owner_uid": owner_uid,
            "enabled": h.enabled,
            "state": state,
            "access_rights": format_access_rights(h.access_rights),
            "registered_at": iso(h.registered_at),
            "last_seen_at": iso(h.last_seen_at),
            "activation": (
                None
                if h.activation_state is None
                else {
                    "state": h.activation_state,
                    "detail": h.activation_detail or "",
                    "since": iso(h.activation_since),
                }
            ),
            "gpus": json.loads(h.gpus or "[]"),
        }
