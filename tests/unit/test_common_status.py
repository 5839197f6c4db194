"""The one table of status transitions (xwcommon.status) that the server enforces."""

from __future__ import annotations

import itertools

import pytest

from xwcommon.errors import Conflict
from xwcommon.status import (
    DATA_TRANSITIONS,
    FINAL_JOB_STATUSES,
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    DataStatus,
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
    sources_of,
)

J, T = JobStatus, TaskStatus

#: every job transition the design names, and nothing else
EXPECTED_JOB = {
    (J.PENDING, J.RUNNING),  # claimed: every copy it needs is out
    (J.PENDING, J.WAITING),  # its last copy claimed while results are in (replicated)
    (J.PENDING, J.COMPLETED),  # a copy past its delay bound finished while its twin waits
    (J.PENDING, J.ERROR),
    (J.PENDING, J.ABORTED),
    (J.RUNNING, J.PENDING),  # lease expired (retry+1), handed back, or past its delay bound
    (J.RUNNING, J.WAITING),  # a replicated job's first results are in, no quorum yet
    (J.RUNNING, J.COMPLETED),
    (J.RUNNING, J.ERROR),
    (J.RUNNING, J.ABORTED),
    (J.WAITING, J.PENDING),  # results disagree or a copy failed: another copy to send
    (J.WAITING, J.COMPLETED),  # a quorum agrees
    (J.WAITING, J.ERROR),  # caps reached
    (J.WAITING, J.ABORTED),
    (J.COMPLETED, J.PENDING),  # sent alone to a trusted host that then cheated: checked again
}
EXPECTED_TASK = {(T.RUNNING, s) for s in (T.COMPLETED, T.ERROR, T.LOST, T.ABORTED)}


def test_every_status_has_a_row_in_its_table() -> None:
    assert set(JOB_TRANSITIONS) == set(JobStatus)
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert set(DATA_TRANSITIONS) == set(DataStatus)


def test_the_job_table_allows_exactly_the_designed_transitions() -> None:
    allowed = {(old, new) for old, targets in JOB_TRANSITIONS.items() for new in targets}
    assert allowed == EXPECTED_JOB


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobStatus, JobStatus)))
def test_check_job_transition_agrees_with_the_table(old: JobStatus, new: JobStatus) -> None:
    if (old, new) in EXPECTED_JOB:
        check_job_transition(old, new)
    else:
        with pytest.raises(Conflict, match=f"from {old} to {new}") as err:
            check_job_transition(old, new)
        assert err.value.http_status == 409


@pytest.mark.parametrize(("old", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_check_task_transition_agrees_with_the_table(old: TaskStatus, new: TaskStatus) -> None:
    if (old, new) in EXPECTED_TASK:
        check_task_transition(old, new)
    else:
        with pytest.raises(Conflict):
            check_task_transition(old, new)


def test_final_job_statuses_lead_nowhere_but_a_trusted_result_checked_again() -> None:
    assert {J.COMPLETED, J.ERROR, J.ABORTED} == FINAL_JOB_STATUSES
    for final in FINAL_JOB_STATUSES:
        for new in JobStatus:
            if (final, new) == (J.COMPLETED, J.PENDING):
                continue
            with pytest.raises(Conflict):
                check_job_transition(final, new)


def test_a_job_never_runs_again_once_results_are_in_and_a_task_never_runs_again() -> None:
    with pytest.raises(Conflict):
        check_job_transition(J.COMPLETED, J.RUNNING)
    with pytest.raises(Conflict):
        check_job_transition(J.WAITING, J.RUNNING)
    assert T.RUNNING not in sources_of(TASK_TRANSITIONS, T.RUNNING)
    assert sources_of(TASK_TRANSITIONS, T.RUNNING) == frozenset()


def test_sources_of_lists_what_may_reach_a_status() -> None:
    assert sources_of(JOB_TRANSITIONS, J.PENDING) == {J.WAITING, J.RUNNING, J.COMPLETED}
    assert sources_of(JOB_TRANSITIONS, J.RUNNING) == {J.PENDING}
    assert sources_of(JOB_TRANSITIONS, J.ABORTED) == {J.WAITING, J.PENDING, J.RUNNING}
    assert sources_of(TASK_TRANSITIONS, T.LOST) == {T.RUNNING}


def test_data_only_becomes_available_once() -> None:
    assert {
        DataStatus.UNAVAILABLE: {DataStatus.AVAILABLE},
        DataStatus.AVAILABLE: frozenset(),
    } == DATA_TRANSITIONS


def test_statuses_are_their_xwhep_names_on_the_wire() -> None:
    assert [s.value for s in JobStatus] == ["PENDING", "WAITING", "RUNNING", "COMPLETED", "ERROR", "ABORTED"]
    assert f"{J.PENDING}" == "PENDING"
    assert TaskStatus("LOST") is T.LOST
