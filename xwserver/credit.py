"""Credit: the CPU seconds of a host's (or a volunteer's) valid results, as BOINC grants it,
and the record of valid and invalid results behind it. Read when hosts or users are
listed (a GROUP BY over their tasks), never written on the hot path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from xwcommon.status import TaskStatus

from .db.models import Host, Task

_CPU = func.coalesce(Task.cpu_user_s, 0.0) + func.coalesce(Task.cpu_system_s, 0.0)
_VALID = Task.validity == "valid"


@dataclass(frozen=True)
class Credit:
    cpu_s: float = 0.0
    valid: int = 0
    invalid: int = 0

    def shown(self) -> dict[str, Any]:
        return {
            "credit_cpu_s": round(self.cpu_s, 3),
            "valid_results": self.valid,
            "invalid_results": self.invalid,
        }


def _sums(key: Any) -> Any:
    return (
        select(
            key,
            func.sum(case((_VALID, _CPU), else_=0.0)),
            func.sum(case((_VALID, 1), else_=0)),
            func.sum(case((Task.validity == "invalid", 1), else_=0)),
        )
        .where(Task.status == TaskStatus.COMPLETED.value)
        .group_by(key)
    )


async def of_hosts(session: AsyncSession, host_ids: Iterable[int]) -> dict[int, Credit]:
    ids = sorted(set(host_ids))
    out: dict[int, Credit] = {}
    for start in range(0, len(ids), 900):
        q = _sums(Task.host_id).where(Task.host_id.in_(ids[start : start + 900]))
        for host_id, cpu, valid, invalid in await session.execute(q):
            out[host_id] = Credit(float(cpu or 0.0), int(valid or 0), int(invalid or 0))
    return out


async def of_owners(session: AsyncSession, owner_ids: Iterable[int]) -> dict[int, Credit]:
    """Per volunteer: the credit of the hosts each identity owns."""
    ids = sorted(set(owner_ids))
    out: dict[int, Credit] = {}
    for start in range(0, len(ids), 900):
        q = (
            _sums(Host.owner_id)
            .join(Host, Host.id == Task.host_id)
            .where(Host.owner_id.in_(ids[start : start + 900]))
        )
        for owner_id, cpu, valid, invalid in await session.execute(q):
            out[owner_id] = Credit(float(cpu or 0.0), int(valid or 0), int(invalid or 0))
    return out
