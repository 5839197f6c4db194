"""One lifecycle: only xwserver/lifecycle.py writes a status, and only transitions the table allows.

These read the server's source and its statements, not a running server: a status written
anywhere else, or a guard the transition table forbids, fails here before any test that
would need the race to show it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy.sql.dml import Update

from xwcommon.errors import Conflict
from xwcommon.status import JOB_TRANSITIONS, TASK_TRANSITIONS, JobStatus, TaskStatus
from xwserver import lifecycle

SERVER = Path(lifecycle.__file__).resolve().parent
#: the columns that hold a job's, task's or host's status
STATUS_COLUMNS = {"status", "enabled"}
#: the tables whose status only the lifecycle changes
STATUS_TABLES = {"Job", "Task", "Host"}


def _status_writes(path: Path) -> list[str]:
    """Where ``update(Job|Task|Host)…values(status=…)`` or ``obj.status = …`` appears."""
    found: list[str] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"values", "ordered_values"}
            and _updates_status_table(node.func.value)
            and any(k.arg in STATUS_COLUMNS for k in node.keywords)
        ):
            found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in STATUS_COLUMNS:
                    found.append(f"{path.name}:{node.lineno}")
    return found


def _updates_status_table(node: ast.AST) -> bool:
    """Whether a chain of calls starts with ``update(Job|Task|Host)``."""
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "update":
                return any(isinstance(a, ast.Name) and a.id in STATUS_TABLES for a in node.args)
            node = node.func
        else:
            node = node.value
    return False


def test_no_server_module_but_the_lifecycle_writes_a_job_task_or_host_status() -> None:
    offenders = [
        hit
        for path in sorted(SERVER.rglob("*.py"))
        if path.name != "lifecycle.py" and "migrations" not in path.parts
        for hit in _status_writes(path)
    ]
    assert offenders == [], f"status written outside xwserver/lifecycle.py: {offenders}"


def test_the_source_walk_finds_the_lifecycle_own_writes() -> None:
    # the walk above would pass vacuously if it could not see a write: it sees these
    assert len(_status_writes(SERVER / "lifecycle.py")) >= 8


def test_a_guard_the_transition_table_forbids_cannot_be_built() -> None:
    with pytest.raises(Conflict):
        lifecycle.job_moves(JobStatus.RUNNING, JobStatus.COMPLETED)
    with pytest.raises(Conflict):
        lifecycle.task_moves(TaskStatus.RUNNING, TaskStatus.LOST)
    with pytest.raises(Conflict):
        lifecycle.job_moves(JobStatus.PENDING, JobStatus.ABORTED)


@pytest.mark.parametrize(
    ("stmt", "table", "target"),
    [
        (lifecycle._FINISH_TASK, TASK_TRANSITIONS, TaskStatus.COMPLETED),
        (lifecycle._ABORT_TASKS, TASK_TRANSITIONS, TaskStatus.ABORTED),
        (lifecycle._LOSE_TASKS, TASK_TRANSITIONS, TaskStatus.LOST),
        (lifecycle._FINISH_JOB, JOB_TRANSITIONS, JobStatus.COMPLETED),
        (lifecycle._REQUEUE_JOBS, JOB_TRANSITIONS, JobStatus.PENDING),
        (lifecycle._RETRY_JOBS, JOB_TRANSITIONS, JobStatus.PENDING),
        (lifecycle._FAIL_JOBS, JOB_TRANSITIONS, JobStatus.ERROR),
        (lifecycle._CLAIM_BY_IDS, JOB_TRANSITIONS, JobStatus.RUNNING),
    ],
)
def test_every_status_update_is_guarded_by_sources_the_table_allows(
    stmt: Update, table: dict, target: object
) -> None:
    where = stmt.whereclause
    assert where is not None
    # statuses are written into the SQL (hot.status_is), not bound
    guarded = set(re.findall(r"'(\w+)'", str(where.compile())))
    sources = {s.value for s, nxt in table.items() if target in nxt}
    statuses = {s.value for s in table}
    named = guarded & statuses
    assert named, f"{stmt} has no status guard"
    assert named <= sources, f"{stmt} moves from {named - sources} to {target}, which the table forbids"
