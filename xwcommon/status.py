"""Statuses of jobs, tasks and data, and the one table of allowed transitions."""

from __future__ import annotations

import enum

from .errors import Conflict


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"


class TaskStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    LOST = "LOST"
    ABORTED = "ABORTED"


class DataStatus(enum.StrEnum):
    UNAVAILABLE = "UNAVAILABLE"
    AVAILABLE = "AVAILABLE"


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.WAITING: frozenset({JobStatus.PENDING, JobStatus.ABORTED, JobStatus.ERROR}),
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.ABORTED, JobStatus.ERROR}),
    # RUNNING -> PENDING: the lease expired (retry+1) or the worker handed the job back.
    JobStatus.RUNNING: frozenset(
        {JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.ABORTED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.ABORTED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.ERROR, TaskStatus.LOST, TaskStatus.ABORTED}
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.ERROR: frozenset(),
    TaskStatus.LOST: frozenset(),
    TaskStatus.ABORTED: frozenset(),
}

DATA_TRANSITIONS: dict[DataStatus, frozenset[DataStatus]] = {
    DataStatus.UNAVAILABLE: frozenset({DataStatus.AVAILABLE}),
    DataStatus.AVAILABLE: frozenset(),
}

FINAL_JOB_STATUSES = frozenset(s for s, nxt in JOB_TRANSITIONS.items() if not nxt)


def sources_of(table: dict, target: enum.Enum) -> frozenset:
    """The statuses from which ``target`` may be reached (used to guard UPDATEs)."""
    return frozenset(s for s, nxt in table.items() if target in nxt)


def check_job_transition(old: JobStatus, new: JobStatus) -> None:
    """Raise :class:`Conflict` unless ``old -> new`` is an allowed job transition."""
    if new not in JOB_TRANSITIONS[old]:
        raise Conflict(f"a job cannot go from {old} to {new}")


def check_task_transition(old: TaskStatus, new: TaskStatus) -> None:
    """Raise :class:`Conflict` unless ``old -> new`` is an allowed task transition."""
    if new not in TASK_TRANSITIONS[old]:
        raise Conflict(f"a task cannot go from {old} to {new}")
