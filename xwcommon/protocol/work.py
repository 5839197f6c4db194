"""What a worker and the server say to each other (``/api/v1/work/*``).

The main path, as messages::

    Registration ─▶ Registered            host identity, lease and heartbeat period
    WorkRequest  ─▶ WorkAnswer            reports of finished tasks ride along; the
                                          worker names the tasks it still holds
    Heartbeat    ─▶ HeartbeatAnswer       renews the leases of the tasks it names
    Release      ─▶ Released              tasks handed back (no retry spent)
    Report       ─▶ ReportAnswer          one report alone (while a long-poll is out)

Exact leases: the server hands every assignment a ``seq`` (increasing per server). A
work request names every task the worker holds (``held``), so the server releases at once
any other task it believed the host held: an answer that never reached the worker. A
heartbeat names its tasks too, with ``seen_seq``, the highest ``seq`` the worker has
received: the server releases unnamed tasks up to that ``seq`` (a later one may be on its
way in a work answer) and renews only the named ones.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

from . import MAX_BYTES, PATTERN_WORDS, PRINTABLE_PATTERN, Answer, Bytes, Request, Seconds, Sha256, Uid
from .client import CpuName, OsName

__all__ = [
    "ACCOUNTING_MAX",
    "MAX_CAPACITY",
    "MAX_TASKS_PER_CALL",
    "MAX_WAIT_S",
    "Accounting",
    "Activation",
    "Assignment",
    "DataRef",
    "Gpu",
    "Heartbeat",
    "HeartbeatAnswer",
    "InlineResult",
    "Registered",
    "Registration",
    "Release",
    "Released",
    "Report",
    "ReportAnswer",
    "ReportOutcome",
    "ResultStored",
    "TaskReport",
    "WorkAnswer",
    "WorkRequest",
]

MAX_CAPACITY = 256
MAX_WAIT_S = 60.0
MAX_TASKS_PER_CALL = 1024
MAX_TAGS = 64
MAX_GPUS = 16
MAX_MESSAGE = 4096
MAX_ACTIVATION_DETAIL = 200
MAX_HOST_NAME = 255
#: a number of seconds far past any job, within a signed 64-bit column
ACCOUNTING_MAX = 2**62
INLINE_RESULT_MAX_BYTES = 64 * 1024
#: base64 of INLINE_RESULT_MAX_BYTES
_INLINE_B64_MAX = (INLINE_RESULT_MAX_BYTES + 2) // 3 * 4
#: standard base64, padded (what ``base64.b64encode`` writes and ``b64decode(validate=True)``
#: reads), of at most INLINE_RESULT_MAX_BYTES: a length bound alone would let the last
#: group hold up to two bytes more
_B64 = "[A-Za-z0-9+/]"
_FULL, _LEFT = divmod(INLINE_RESULT_MAX_BYTES, 3)
_TAIL = f"{_B64}{{2}}==|{_B64}{{3}}="
_LAST = {0: "", 1: f"({_B64}{{2}}==)?", 2: f"({_TAIL})?"}[_LEFT]
BASE64_PATTERN = f"^(({_B64}{{4}}){{0,{_FULL - 1}}}({_TAIL})?|({_B64}{{4}}){{{_FULL}}}{_LAST})$(?!\\n)"
#: printable, and not blank (the server strips nothing from a host's name)
_CHAR = "[^\\x00-\\x1f\\x7f-\\x9f]"
_NOT_BLANK_PATTERN = f"^{_CHAR}*(?=\\S){_CHAR}+$(?!\\n)"
PATTERN_WORDS[BASE64_PATTERN] = f"in standard padded base64, of at most {INLINE_RESULT_MAX_BYTES} bytes"
PATTERN_WORDS[_NOT_BLANK_PATTERN] = "of printable characters, not all blank"
PATTERN_WORDS[get_args(OsName)[1].pattern] = (
    "naming an OS: linux, darwin, windows or any (XWHEP's LINUX, MACOSX, WIN32 too)"
)
PATTERN_WORDS[get_args(CpuName)[1].pattern] = (
    "naming a CPU: x86_64, aarch64, i686, ppc64le, armv7l, riscv64 or any (XWHEP's AMD64, IX86 too)"
)

Capacity = Annotated[int, msgspec.Meta(ge=1, le=MAX_CAPACITY)]
WaitS = Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_S)]
TaskUids = Annotated[list[Uid], msgspec.Meta(max_length=MAX_TASKS_PER_CALL)]
ExitCode = Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]


def _printable(max_length: int, min_length: int = 0) -> msgspec.Meta:
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=PRINTABLE_PATTERN)


HostName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_HOST_NAME,
        pattern=_NOT_BLANK_PATTERN,
        description="printable characters, not all blank",
    ),
]
Short = Annotated[str, _printable(64)]
Tag = Annotated[str, _printable(127)]
GpuName = Annotated[str, _printable(128, 1)]
Detail = Annotated[str, _printable(MAX_ACTIVATION_DETAIL)]


class Activation(Request, kw_only=True):
    """What the worker's activation policy says: may it compute now, and why."""

    wire_name = "activation"

    state: Literal["active", "suspended"]
    detail: Detail = ""


class Gpu(Request, kw_only=True):
    name: GpuName
    memory_bytes: Bytes = 0


class Registration(Request, kw_only=True):
    """``POST /work/register``: describe the host; ``host_uid`` resumes an identity.

    ``held``: the tasks this worker process still holds (a worker that resumes its identity
    after a restart holds none): the server releases the host's other tasks at once. None:
    not said (the server releases nothing).
    """

    wire_name = "registration"

    name: HostName
    os: OsName
    cpu: CpuName
    cores: Annotated[int, msgspec.Meta(ge=0, le=2**20)] = 0
    memory_bytes: Bytes = 0
    disk_free_bytes: Bytes = 0
    tags: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)] = []
    version: Short = ""
    gpus: Annotated[list[Gpu], msgspec.Meta(max_length=MAX_GPUS)] = []
    activation: Activation | None = None
    host_uid: Uid | None = None
    held: TaskUids | None = None


class Registered(Answer, kw_only=True):
    host_uid: Uid
    lease_s: Seconds
    heartbeat_interval_s: Seconds
    #: tasks of this host that the worker did not name, handed back to the queue
    released: int = 0
    #: the host's new credential (given to a caller who logged in with the password): the
    #: worker keeps it to log in as this host without the password
    host_key: str | None = None
    #: the name the host goes by (its own, or with a suffix when another host had it)
    name: str | None = None


class DataRef(Answer, kw_only=True):
    """A piece of content a task needs; fetched by ``data_uid`` (or from ``url``, for data
    inserted by URL), checked by ``sha256``."""

    data_uid: Uid
    sha256: Sha256
    size: Bytes | None = None
    #: data by URL: the worker fetches it there, not from the server
    url: str | None = None
    #: an app binary's signature (xwcommon/signing.py) and the platform it was signed for
    signature: str | None = None
    os: str | None = None
    cpu: str | None = None


class Assignment(Answer, kw_only=True):
    """One task given to a worker: run ``binary`` with ``args`` (and stdin, env archive)."""

    task_uid: Uid
    job_uid: Uid
    #: increasing per server: a heartbeat's ``seen_seq`` says which assignments it knows of
    seq: Seq
    app_name: str
    args: list[str]
    lease_expires_at: str
    binary: DataRef
    stdin: DataRef | None = None
    env: DataRef | None = None
    needs_network: bool = False
    min_memory_bytes: Bytes = 0
    min_disk_bytes: Bytes = 0


class Accounting(Request, kw_only=True):
    """What a task's processes used; each figure None when unknown."""

    cpu_user_s: Seconds | None = None
    cpu_system_s: Seconds | None = None
    wall_s: Seconds | None = None
    max_rss_bytes: Bytes | None = None


class InlineResult(Request, kw_only=True):
    """A result archive small enough to ride in its report (stored like an upload)."""

    content_b64: Annotated[
        str,
        msgspec.Meta(
            max_length=_INLINE_B64_MAX,
            pattern=BASE64_PATTERN,
            description=f"standard padded base64 of at most {INLINE_RESULT_MAX_BYTES} bytes",
        ),
    ]
    sha256: Sha256


class Report(Request, kw_only=True):
    """A task's end, posted alone to ``/work/tasks/{uid}/report`` (the path names the task).
    Its result, if any: ``result_uid`` (uploaded first) or ``result_inline``."""

    wire_name = "report"

    status: Literal["COMPLETED", "ERROR"]
    exit_code: ExitCode | None = None
    message: str | None = None
    result_uid: Uid | None = None
    result_inline: InlineResult | None = None
    accounting: Accounting | None = None

    def __post_init__(self) -> None:
        if self.result_uid is not None and self.result_inline is not None:
            raise ValueError('give "result_uid" or "result_inline", not both')
        if self.message:
            # a message may quote a job's output; NUL is the one character no database stores
            self.message = self.message.replace("\0", "\ufffd")[:MAX_MESSAGE]


class TaskReport(Report, kw_only=True):
    """A report riding on a work request: it names its task. (Alone, the path names it: a
    second name that could disagree is not taken there.)"""

    task_uid: Uid


class WorkRequest(Request, kw_only=True):
    """``POST /work/request``: finished reports, the tasks still held, room for ``capacity``.

    ``held`` None: the worker does not say (the server releases nothing); a list: every
    task this worker holds besides those reported here. A request naming ``held`` does a
    heartbeat's work when the server takes it in (not when it turns it away at once with
    ``retry_after_s`` and nothing else): the leases of the held tasks are renewed, the host
    counts as seen, and held tasks that are no longer live come back in ``cancel``. A
    worker holding no task need not heartbeat while such a request is out (an idle worker
    holds one connection).
    """

    wire_name = "work request"

    host_uid: Uid
    capacity: Capacity = 1
    wait_s: WaitS = 20.0
    reports: Annotated[list[TaskReport], msgspec.Meta(max_length=MAX_TASKS_PER_CALL)] = []
    held: TaskUids | None = None
    #: free now, for jobs that declare needs (None: not said, no filter on it)
    free_memory_bytes: Bytes | None = None
    free_disk_bytes: Bytes | None = None
    #: whether the volunteer lets jobs use the network (None: not said)
    network: bool | None = None


class ReportOutcome(Answer, kw_only=True, omit_defaults=True):
    """How the server took one report: the job's status, or an error code (``task_gone``)."""

    task_uid: Uid
    job_status: str | None = None
    error: str | None = None
    message: str | None = None


class WorkAnswer(Answer, kw_only=True):
    assignments: list[Assignment] = []
    reported: list[ReportOutcome] = []
    #: tasks the server believed this host held, not named in ``held``: handed back
    released: int = 0
    #: no assignment and no room to wait on the server: ask again after this many seconds
    #: (chosen by the server from its load, with jitter, so a fleet does not come back at once)
    retry_after_s: float | None = None
    #: held tasks that are not live any more: stop them, report nothing (as a heartbeat's)
    cancel: list[Uid] = []


class Heartbeat(Request, kw_only=True):
    """``POST /work/heartbeat``: renews the leases of ``task_uids`` (and only those)."""

    wire_name = "heartbeat"

    host_uid: Uid
    task_uids: TaskUids = []
    #: the highest assignment ``seq`` received; None: release nothing unnamed
    seen_seq: Seq | None = None
    activation: Activation | None = None


class HeartbeatAnswer(Answer, kw_only=True):
    lease_s: Seconds
    #: named tasks that are not live any more: stop them, report nothing
    cancel: list[Uid] = []
    released: int = 0


class Release(Request, kw_only=True):
    """``POST /work/release``: hand tasks back; their jobs go back to the queue, no retry spent."""

    wire_name = "release"

    host_uid: Uid
    task_uids: TaskUids = []
    #: the worker is stopping: its waiting work request, if any, ends now without assignments
    withdraw: bool = False


class Released(Answer, kw_only=True):
    released: int


class ReportAnswer(Answer, kw_only=True):
    job_status: str


class ResultStored(Answer, kw_only=True):
    """``POST /work/tasks/{uid}/result``: the stored result's UID, to name in the report."""

    result_uid: Uid


# the accounting bound is the same number as the byte bound: one check for both columns
assert ACCOUNTING_MAX == MAX_BYTES
