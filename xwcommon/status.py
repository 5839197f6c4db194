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
    # A job is PENDING while a copy of it waits to be sent, RUNNING while every copy it
    # needs is out and none has come back, WAITING once results came back but no quorum
    # agrees yet (a replicated job: see xwserver/validation.py).
    JobStatus.PENDING: frozenset(
        {JobStatus.RUNNING, JobStatus.WAITING, JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.ABORTED}
    ),
    # RUNNING -> PENDING: a lease expired (retry+1), the worker handed the copy back, or a
    # copy ran past the job's delay bound (another one is sent)
    JobStatus.RUNNING: frozenset(
        {JobStatus.PENDING, JobStatus.WAITING, JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.ABORTED}
    ),
    JobStatus.WAITING: frozenset(
        {JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.ABORTED}
    ),
    # COMPLETED -> PENDING: the job was sent alone to a host trusted for its record of valid
    # results, and that host then returned an invalid one: its recent lone jobs run again
    JobStatus.COMPLETED: frozenset({JobStatus.PENDING}),
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

#: the statuses a job ends in (a COMPLETED one goes back to the queue only in the rare case
#: above, and a client waiting for it has its result meanwhile)
FINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.ABORTED})


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
