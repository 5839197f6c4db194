"""Replicated jobs: whether their copies' results agree, and what to do next.

Volunteer hosts are untrusted: a job may ask for ``min_quorum`` results that agree (BOINC's
quorum) and have ``target_results`` copies sent at first, to distinct hosts of distinct
volunteers. Results agree when their digests do: the sha256 of the result's files, the
application's volatile ones left out (:func:`result_digest`). Once a quorum agrees, the
job is COMPLETED with the first of them as its canonical result; the results that disagree
are invalid. Until then copies are sent again as results fail or disagree, within the
caps on errors (``max_error_results``) and on copies in all (``max_total_results``).

Adaptive trust (BOINC's adaptive replication): a host's valid results in a row make its
record; a host with a record of N ≥ :data:`TRUST_AFTER` gets a replicated job alone with
probability 1 − 1/N. An invalid result resets the record, and the recent jobs the host ran
alone run again, replicated.

This module decides; :mod:`lifecycle` writes (it alone writes statuses).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xwcommon.status import JobStatus, TaskStatus

#: valid results in a row before a host may get replicated jobs alone (the server's
#: ``trust_after`` setting, this by default)
TRUST_AFTER = 10
#: how far back the jobs a host ran alone are sent again once it returns an invalid result
RECHECK_ALONE_S = 7 * 24 * 3600.0
#: the digest of a COMPLETED copy that sent no result (all such copies agree)
NO_RESULT = "0" * 64
#: the digest of a result that is not a readable archive within the bounds (agrees with none)
UNREADABLE = "f" * 64
#: result archives are read within these bounds (a copy's result is a volunteer's bytes)
MAX_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 64 * 2**30
CHUNK = 1 << 20


def sends_alone(valid_streak: int, rng: random.Random | None = None, trust_after: int = TRUST_AFTER) -> bool:
    """Whether a host with this record gets the replicated jobs of this claim alone
    (``trust_after`` 0: never)."""
    if trust_after <= 0 or valid_streak < max(trust_after, 2):
        return False
    return (rng or random).random() < 1.0 - 1.0 / valid_streak


def parse_volatile(text: str | None) -> tuple[str, ...]:
    try:
        names = json.loads(text or "[]")
    except ValueError:
        return ()
    return tuple(n for n in names if isinstance(n, str))


def _volatile(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def result_digest(path: Path | None, volatile: Sequence[str] = ()) -> str:
    """What a result archive's files hash to: sha256 over the sorted names and sha256 of
    every file but the volatile ones (fnmatch patterns on the member's path). Reads in
    chunks, within :data:`MAX_MEMBERS` and :data:`MAX_UNPACKED_BYTES`; anything that is not
    such an archive digests as :data:`UNREADABLE`."""
    if path is None:
        return NO_RESULT
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_MEMBERS:
                return UNREADABLE
            total = 0
            entries = []
            for member in sorted(members, key=lambda m: m.filename):
                if _volatile(member.filename, volatile):
                    continue
                h = hashlib.sha256()
                with archive.open(member) as fh:
                    while chunk := fh.read(CHUNK):
                        total += len(chunk)
                        if total > MAX_UNPACKED_BYTES:
                            return UNREADABLE
                        h.update(chunk)
                entries.append(f"{member.filename}\0{h.hexdigest()}\n")
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError):
        return UNREADABLE
    return hashlib.sha256("".join(entries).encode()).hexdigest()


@dataclass(frozen=True)
class Copy:
    """One task of a replicated job, as the validator sees it."""

    id: int
    host_id: int
    status: str
    digest: str | None
    validity: str | None
    exit_code: int | None
    overdue: bool = False
    uid: str = ""


@dataclass(frozen=True)
class JobState:
    id: int
    status: str
    min_quorum: int
    max_error_results: int
    max_total_results: int
    unsent: int
    sent: int
    trusted: bool


@dataclass
class Decision:
    """What becomes of one job: its status and counters, and its copies' verdicts."""

    job_id: int
    status: JobStatus
    unsent: int
    done: int
    canonical: Copy | None = None
    message: str | None = None
    valid: list[Copy] = field(default_factory=list)
    invalid: list[Copy] = field(default_factory=list)
    #: live copies to stop (the job ended)
    cancel: list[Copy] = field(default_factory=list)


LIVE = (JobStatus.PENDING.value, JobStatus.RUNNING.value, JobStatus.WAITING.value)


def decide(job: JobState, copies: Sequence[Copy]) -> Decision | None:
    """The job's next state from its copies; None if it is not live (already ended)."""
    if job.status not in LIVE:
        return None
    quorum = 1 if job.trusted else max(1, job.min_quorum)
    completed = [c for c in copies if c.status == TaskStatus.COMPLETED.value and c.validity != "invalid"]
    # a result with no digest yet waits for the comparison program (xwserver/comparing.py)
    results = [c for c in completed if c.digest is not None]
    comparing = [c for c in completed if c.digest is None]
    running = [c for c in copies if c.status == TaskStatus.RUNNING.value]
    groups: dict[str, list[Copy]] = {}
    for c in sorted(results, key=lambda c: c.id):
        groups.setdefault(c.digest or NO_RESULT, []).append(c)
    best = max(groups.values(), key=lambda g: (len(g), -g[0].id), default=[])
    if best and best[0].digest == UNREADABLE:
        best = []  # unreadable results agree with nothing, not even each other
    if len(best) >= quorum:
        agreed = {c.id for c in best}
        return Decision(
            job.id,
            JobStatus.COMPLETED,
            unsent=0,
            done=len(results),
            canonical=best[0],
            message=None if quorum == 1 else f"{len(best)} of {len(results)} results agree",
            valid=best,
            invalid=[c for c in results if c.id not in agreed],
            cancel=running,
        )
    errors = sum(c.status in (TaskStatus.ERROR.value, TaskStatus.LOST.value) for c in copies)
    if errors > job.max_error_results:
        return Decision(
            job.id,
            JobStatus.ERROR,
            unsent=0,
            done=len(results),
            message=(
                f"{errors} copies failed or were lost, more than max_error_results "
                f"({job.max_error_results}); no {quorum} results agreed"
            ),
            cancel=running,
        )
    counted = [c for c in running if not c.overdue] + comparing
    unsent = job.unsent
    need = quorum - len(best) - len(counted) - unsent
    if need > 0:
        room = max(0, job.max_total_results - job.sent - unsent)
        unsent += min(need, room)
        if unsent == 0 and not running and not comparing:
            return Decision(
                job.id,
                JobStatus.ERROR,
                unsent=0,
                done=len(results),
                message=(
                    f"no {quorum} of its {len(results)} results agree and max_total_results "
                    f"({job.max_total_results}) copies were sent"
                ),
            )
    if unsent > 0:
        status = JobStatus.PENDING
    elif completed:
        status = JobStatus.WAITING
    else:
        status = JobStatus.RUNNING
    return Decision(job.id, status, unsent=unsent, done=len(results))


# -- a job's or an application's replication, as submitted --------------------------------------

#: the bounds of what may be asked (BOINC's projects rarely ask more than a quorum of 3)
REPLICATION_BOUNDS = {
    "min_quorum": (1, 10),
    "target_results": (1, 20),
    "max_error_results": (0, 100),
    "max_total_results": (1, 100),
}
MAX_DELAY_BOUND_S = 365 * 24 * 3600.0
MAX_VOLATILE = 50


def replication(spec: dict[str, object], base: dict[str, object], where: str = "") -> dict[str, object]:
    """The replication fields of ``spec`` over ``base`` (an app's, or the defaults), checked:
    ``target_results`` is at least ``min_quorum`` (raised to it when only the quorum is
    asked), ``max_total_results`` at least ``target_results``. Raises BadRequest naming the
    field."""
    from xwcommon.errors import BadRequest, Unprocessable

    out = dict(base)
    for key, (low, high) in REPLICATION_BOUNDS.items():
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BadRequest(f'{where}"{key}" must be an integer from {low} to {high}')
        out[key] = value
    quorum = int(out["min_quorum"])  # type: ignore[call-overload]
    if spec.get("target_results") is None:
        out["target_results"] = max(quorum, int(out["target_results"]))  # type: ignore[call-overload]
    elif int(out["target_results"]) < quorum:  # type: ignore[call-overload]
        raise Unprocessable(
            f'{where}"target_results" ({out["target_results"]}) is below "min_quorum" ({quorum}): '
            "send at least as many copies as the quorum needs"
        )
    target = int(out["target_results"])  # type: ignore[call-overload]
    if spec.get("max_total_results") is None:
        out["max_total_results"] = max(target, int(out["max_total_results"]))  # type: ignore[call-overload]
    elif int(out["max_total_results"]) < target:  # type: ignore[call-overload]
        raise Unprocessable(
            f'{where}"max_total_results" ({out["max_total_results"]}) is below "target_results" ({target}): '
            "allow at least as many copies in all as are sent at first"
        )
    if "delay_bound_s" in spec:
        bound = spec["delay_bound_s"]
        if bound is not None and (
            not isinstance(bound, int | float)
            or isinstance(bound, bool)
            or not 1 <= bound <= MAX_DELAY_BOUND_S
        ):
            raise BadRequest(
                f'{where}"delay_bound_s" must be null or seconds from 1 to {int(MAX_DELAY_BOUND_S)}'
            )
        out["delay_bound_s"] = None if bound is None else float(bound)
    return out


def volatile_names(value: object) -> str:
    """An application's volatile result files (fnmatch patterns), checked, as stored (JSON)."""
    from xwcommon.errors import BadRequest

    if value is None:
        return "[]"
    if (
        not isinstance(value, list)
        or len(value) > MAX_VOLATILE
        or not all(isinstance(v, str) and 0 < len(v) <= 255 and "\0" not in v for v in value)
    ):
        raise BadRequest(f'"volatile" must be a list of at most {MAX_VOLATILE} file names or patterns')
    return json.dumps(value)


#: what a job gets when neither it nor its application says
DEFAULT_REPLICATION: dict[str, object] = {
    "min_quorum": 1,
    "target_results": 1,
    "max_error_results": 3,
    "max_total_results": 10,
    "delay_bound_s": None,
}
