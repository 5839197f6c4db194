"""What clients and administrators say to the server: every endpoint besides ``/work/*``.

Each request body is a :class:`Request` (unknown fields refused) and each JSON answer an
:class:`Answer`; the route table names them per endpoint and the OpenAPI document takes its
schemas from them. They say what the server's handlers accept and answer (``docs/api.md``):
required fields, types and bounds as the server checks them. What a schema cannot say
(whether a name exists, whether ``args`` split as a shell would) the server still checks.

Objects as the server shows them::

    User, UserGroup, Data, App, Job, Task, Host, JobSet (a session or a group of jobs)

Lists come wrapped in an object named after them: ``{"jobs": [Job…]}``.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from ..platforms import _CPU_ALIASES, _OS_ALIASES
from ..uri import is_uid
from . import MAX_BYTES, PATTERN_WORDS, Answer, Bytes, Request, Seconds, Sha256, Uid

__all__ = [
    "ACCESS_RIGHTS_PATTERN",
    "App",
    "AppBinary",
    "AppInsert",
    "AppList",
    "AppObject",
    "BinarySpec",
    "Chmod",
    "Data",
    "DataList",
    "DataObject",
    "Error",
    "GroupList",
    "GroupObject",
    "Host",
    "HostActivation",
    "HostGpu",
    "HostList",
    "HostLogin",
    "HostObject",
    "HostRemoved",
    "Job",
    "JobBulk",
    "JobDeletion",
    "JobList",
    "JobObject",
    "JobSet",
    "JobSetCreation",
    "JobSpec",
    "JobsDeleted",
    "Login",
    "LoginAnswer",
    "MissingJob",
    "ObjectAnswer",
    "Ok",
    "OpenApiDocument",
    "PasswordChange",
    "SessionList",
    "SessionObject",
    "Task",
    "TaskAccounting",
    "TaskList",
    "TaskObject",
    "User",
    "UserChange",
    "UserCreation",
    "UserGroup",
    "UserGroupCreation",
    "UserGroupList",
    "UserGroupObject",
    "UserList",
    "UserObject",
    "VersionInfo",
]

# -- bounds the server checks (a test holds them equal to the server's constants) -------------------------
#: names of data, apps, sessions, groups of jobs, job labels (xwserver.data.MAX_NAME)
MAX_NAME = 255
#: logins (xwserver.users.MAX_LOGIN) and user group labels (xwserver.groups.MAX_LABEL)
MAX_LOGIN = 128
MAX_LABEL = 128
MAX_PASSWORD = 1024
MAX_EMAIL = 254
MAX_RETRY = 100
#: all of a job's arguments together, in characters (xwserver.jobs.MAX_ARG_BYTES)
MAX_ARG_CHARS = 64 * 1024
#: jobs per bulk submission or removal (xwcommon.defaults.MAX_BULK_JOBS)
MAX_BULK_JOBS = 5000

_HEX = "[0-9a-fA-F]"
#: what ``xwcommon.uri.parse_uid`` takes: a UID (any case, hyphens optional) or an
#: ``xw://host/uid`` URI
#: the end of the text (``$`` alone lets Python's ``re`` match before a final newline)
_END = r"$(?!\n)"
_BARE_UID = r"(urn:)?(uuid:)?\{*-*(" + _HEX + r"-*){32}\}*"
UID_REF_PATTERN = r"^\s*(xw://([^/]*/)+" + _BARE_UID + r"/*|" + _BARE_UID + r")\s*" + _END
UidRef = Annotated[str, msgspec.Meta(pattern=UID_REF_PATTERN, description="a UID or an xw:// URI")]


def _any_case(words: list[str]) -> str:
    """A pattern for any of ``words`` in any case, blanks around (as ``strip().lower()`` reads)."""

    def one(word: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else _escape(c) for c in word)

    return r"^\s*(" + "|".join(one(w) for w in sorted(words)) + r")\s*" + _END


def _escape(c: str) -> str:
    return "\\" + c if c in r"\.^$*+?()[]{}|/" else c


#: what ``data.check_name`` refuses: control characters (C0, DEL, C1), line and paragraph
#: separators, bidirectional controls, path separators
_NAME_CHAR = r"[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069/\\]"
#: something besides blanks, and not ``.`` or ``..`` (``data.check_name``)
_NAME_PATTERN = rf"^(?!\.\.?$){_NAME_CHAR}*(?=\S){_NAME_CHAR}+" + _END
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME,
        pattern=_NAME_PATTERN,
        description="1 to 255 characters, not all blank, not . or ..; no control, bidirectional "
        "or path separator characters",
    ),
]

#: ``groups.check_identifier``: letters, digits and ``_ . @ + -``, starting with a letter,
#: a digit or ``_``; not a UID (32 hexadecimal digits, hyphens anywhere)
_NOT_A_UID = rf"(?!-*({_HEX}-*){{32}}$)"
_IDENTIFIER = r"\w[\w.@+-]*" + _END
Label = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_LABEL,
        pattern="^" + _NOT_A_UID + _IDENTIFIER,
        description="letters, digits and _ . @ + -, starting with a letter, digit or _; not a UID",
    ),
]
LoginName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_LOGIN,
        pattern="^(?!me$)" + _NOT_A_UID + _IDENTIFIER,
        description="letters, digits and _ . @ + -, starting with a letter, digit or _; not a UID, not 'me'",
    ),
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PASSWORD)]
#: a host credential (what the server gave, ``secrets.token_urlsafe(32)``)
HostKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: ``users.check_email``: "" for none, else ``local@domain``
_EMAIL_PATTERN = r"^(|[\w.%+\-!#$&*=?^`{|}~]+@([^\W_]|-)+(\.([^\W_]|-)+)*)" + _END
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_EMAIL, pattern=_EMAIL_PATTERN, description='"" for none, or name@example.org'
    ),
]

#: the levels, and XWHEP's names for them (``UserLevel.parse``), in any case
LEVELS = ("WORKER", "STANDARD", "ADVANCED", "SUPER")
LEVEL_ALIASES = ("WORKER_USER", "STANDARD_USER", "ADVANCED_USER", "ADMINISTRATOR", "SUPER_USER")
Level = Literal["WORKER", "STANDARD", "ADVANCED", "SUPER"]
Rights = Annotated[
    str,
    msgspec.Meta(
        pattern=_any_case([*LEVELS, *LEVEL_ALIASES]),
        description="WORKER, STANDARD, ADVANCED or SUPER (any case; XWHEP's STANDARD_USER… too)",
    ),
]

#: ``levels.parse_access_rights``: octal (0750, 750, XWHEP's 0x750) or chmod's symbolic
#: clauses (u+r,g-w,o=rx), any case, blanks around
_CLAUSE = r"[ugoaUGOA]*([-+=][rwxRWX]*)+"
ACCESS_RIGHTS_PATTERN = rf"^\s*((0[xXoO]?)?[0-7]{{3}}|{_CLAUSE}(\s*,\s*{_CLAUSE})*)\s*" + _END
AccessRights = (
    Annotated[int, msgspec.Meta(ge=0, le=0o777, description="access bits as a number (0o750 is 488)")]
    | Annotated[
        str,
        msgspec.Meta(
            pattern=ACCESS_RIGHTS_PATTERN,
            description="octal (0750, 750, 0x750) or symbolic (u+r,g-w,o=rx)",
        ),
    ]
)
#: how the server shows access bits
ShownRights = Annotated[str, msgspec.Meta(pattern="^0[0-7]{3}" + _END, description="octal, as 0755")]

OsName = Annotated[
    str, msgspec.Meta(pattern=_any_case(list(_OS_ALIASES)), description="linux, darwin, windows or any")
]
CpuName = Annotated[
    str,
    msgspec.Meta(pattern=_any_case(list(_CPU_ALIASES)), description="x86_64, aarch64, i686, … or any"),
]

Arg = Annotated[str, msgspec.Meta(pattern="^[^\\x00]*" + _END, description="no NUL character")]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601, UTC")]
Uri = Annotated[str, msgspec.Meta(pattern="^xw://", description="xw://<host:port>/<uid>")]
Count = Annotated[int, msgspec.Meta(ge=0)]
JobStatus = Literal["PENDING", "WAITING", "RUNNING", "COMPLETED", "ERROR", "ABORTED"]
TaskStatus = Literal["RUNNING", "COMPLETED", "ERROR", "LOST", "ABORTED"]
DataStatus = Literal["UNAVAILABLE", "AVAILABLE"]


# -- answers: the objects ------------------------------------------------------------------------------------
class Ok(Answer, kw_only=True):
    """What a removal or a logout answers."""

    ok: bool


class HostRemoved(Answer, kw_only=True):
    """``DELETE /hosts/{uid}``: the host is gone; ``released`` running tasks went back to the queue."""

    ok: bool
    released: Count


class Error(Answer, kw_only=True):
    """Every failure: a stable code (``not_found``, ``host_disabled``, …) and a message for people."""

    error: str
    message: str


class VersionInfo(Answer, kw_only=True):
    version: str
    api: Literal["v1"]
    #: the server's host:port
    server: str


class OpenApiDocument(Answer, kw_only=True):
    """``GET /openapi.json``: this API described as OpenAPI 3.1."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, dict[str, Any]]
    components: dict[str, Any]
    security: list[dict[str, list[str]]]
    servers: list[dict[str, str]] = []


class User(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    login: str
    rights: Level
    group_uid: Uid | None
    email: str
    #: credit of the hosts this identity owns: CPU seconds of valid results, and the counts
    credit_cpu_s: Seconds = 0.0
    valid_results: Count = 0
    invalid_results: Count = 0


class LoginAnswer(Answer, kw_only=True):
    """A bearer token for ``Authorization: Bearer …``, valid until ``expires_at``.

    ``host_uid``: the host the token acts as (only), when the login named one. ``host_key``:
    that host's new credential, when the login gave one (keep it; the old one is void)."""

    token: str
    expires_at: Timestamp
    user: User
    host_uid: Uid | None = None
    host_key: str | None = None


class UserGroup(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    label: str
    created_at: Timestamp
    members: Count


class Data(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    name: str
    size: Bytes
    sha256: Sha256
    status: DataStatus
    owner_uid: Uid
    access_rights: ShownRights
    created_at: Timestamp
    #: data by URL: where workers fetch it (the server stores nothing)
    url: str | None = None


class AppBinary(Answer, kw_only=True):
    """The binary of an app for one platform (os, cpu normalized: ``linux``, ``x86_64``, ``any``)."""

    os: str
    cpu: str
    data_uid: Uid
    sha256: Sha256
    size: Bytes
    #: the deployment signing key's signature (base64), None when unsigned
    signature: str | None = None


class App(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    name: str
    owner_uid: Uid
    access_rights: ShownRights
    created_at: Timestamp
    #: its jobs need the network (a job copies it at submission)
    needs_network: bool
    binaries: list[AppBinary]
    #: the replication its jobs get unless a job says otherwise, and how copies are compared
    min_quorum: Count = 1
    target_results: Count = 1
    max_error_results: Count = 3
    max_total_results: Count = 10
    delay_bound_s: Seconds | None = None
    volatile: list[str] = []
    comparator_uid: Uid | None = None
    tags: list[str] = []
    min_cores: Count = 0
    min_gpus: Count = 0


class Job(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    app_uid: Uid
    app_name: str
    owner_uid: Uid
    label: str | None
    args: list[str]
    stdin_uid: Uid | None
    env_uid: Uid | None
    status: JobStatus
    retry: Count
    max_retry: Count
    exit_code: int | None
    message: str | None
    result_uid: Uid | None
    result_sha256: Sha256 | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    #: its application's
    access_rights: ShownRights
    min_memory_bytes: Bytes
    min_disk_bytes: Bytes
    needs_network: bool
    session_uid: Uid | None
    group_uid: Uid | None
    expected_host_uid: Uid | None
    #: one job shown alone and PENDING: what keeps it from every connected worker, if anything
    pending_reason: str | None = None
    #: higher runs first (then fair share across owners, then submission order)
    priority: int = 0
    #: replication: results that must agree, copies sent at first, caps on failed copies and
    #: on copies in all; a copy running delay_bound_s after it was sent gets a twin elsewhere
    min_quorum: Count = 1
    target_results: Count = 1
    max_error_results: Count = 3
    max_total_results: Count = 10
    delay_bound_s: Seconds | None = None
    #: copies sent so far, and results received (of a replicated job)
    copies_sent: Count = 0
    results: Count = 0
    #: sent alone to a host trusted for its record of valid results (adaptive trust)
    trusted: bool = False
    #: what its host must offer: every one of these tags, and so many cores and GPUs
    tags: list[str] = []
    min_cores: Count = 0
    min_gpus: Count = 0


class TaskAccounting(Answer, kw_only=True):
    """What the worker reported its task used; a figure it did not report is null."""

    cpu_user_s: Seconds | None
    cpu_system_s: Seconds | None
    wall_s: Seconds | None
    max_rss_bytes: Bytes | None


class Task(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    job_uid: Uid
    host_uid: Uid
    status: TaskStatus
    started_at: Timestamp | None
    ended_at: Timestamp | None
    lease_expires_at: Timestamp | None
    exit_code: int | None
    #: null when the worker reported none
    accounting: TaskAccounting | None
    #: a replicated job's copy: "valid" (it agreed with the canonical result), "invalid", or
    #: null (not judged: a job of one copy, or no quorum yet)
    validity: Literal["valid", "invalid"] | None = None


class HostActivation(Answer, kw_only=True):
    """What the host's activation policy last said, and since when."""

    state: Literal["active", "suspended"]
    detail: str
    since: Timestamp | None


class HostGpu(Answer, kw_only=True):
    name: str
    memory_bytes: Bytes


class Host(Answer, kw_only=True):
    uid: Uid
    uri: Uri
    name: str
    os: str
    cpu: str
    cores: Count
    memory_bytes: Bytes
    disk_free_bytes: Bytes
    tags: list[str]
    version: str
    owner_uid: Uid
    enabled: bool
    #: disabled (by an administrator), lost (silent for several heartbeat intervals),
    #: suspended (by its activation policy) or active
    state: Literal["active", "suspended", "lost", "disabled"] = "active"
    access_rights: ShownRights
    registered_at: Timestamp
    last_seen_at: Timestamp
    #: null before the worker reported any
    activation: HostActivation | None
    gpus: list[HostGpu]
    #: credit: CPU seconds of its valid results; its valid and invalid results; and its
    #: record of valid results in a row (adaptive trust)
    credit_cpu_s: Seconds = 0.0
    valid_results: Count = 0
    invalid_results: Count = 0
    valid_streak: Count = 0


class JobSet(Answer, kw_only=True):
    """A session or a group of jobs; ``job_counts`` has one key per status its jobs are in."""

    uid: Uid
    uri: Uri
    name: str
    owner_uid: Uid
    access_rights: ShownRights
    created_at: Timestamp
    job_counts: dict[JobStatus, Count]


# -- answers: lists and results --------------------------------------------------------------------------------
class UserList(Answer, kw_only=True):
    users: list[User]


class UserGroupList(Answer, kw_only=True):
    usergroups: list[UserGroup]


class DataList(Answer, kw_only=True):
    data: list[Data]


class AppList(Answer, kw_only=True):
    apps: list[App]


class JobList(Answer, kw_only=True):
    """``GET /jobs``, and ``POST /jobs/bulk`` (the created jobs, in the order sent)."""

    jobs: list[Job]


class TaskList(Answer, kw_only=True):
    tasks: list[Task]


class HostList(Answer, kw_only=True):
    hosts: list[Host]


class SessionList(Answer, kw_only=True):
    sessions: list[JobSet]


class GroupList(Answer, kw_only=True):
    groups: list[JobSet]


class MissingJob(Answer, kw_only=True):
    uid: Uid
    reason: str


class JobsDeleted(Answer, kw_only=True):
    """``POST /jobs/delete``: the jobs removed, and those that were not with the reason."""

    deleted: list[Uid]
    missing: list[MissingJob]


class JobsAborted(Answer, kw_only=True):
    """``POST /jobs/abort``: those aborted, and the others (unknown, not the caller's, or over
    already) with the reason."""

    aborted: list[Uid]
    missing: list[MissingJob]


# ``GET /objects/{uid}`` and chmod: {"kind", "object"}, the object as its own endpoint shows it
class AppObject(Answer, kw_only=True, tag_field="kind", tag="app"):
    object: App


class DataObject(Answer, kw_only=True, tag_field="kind", tag="data"):
    object: Data


class JobObject(Answer, kw_only=True, tag_field="kind", tag="job"):
    object: Job


class TaskObject(Answer, kw_only=True, tag_field="kind", tag="task"):
    object: Task


class HostObject(Answer, kw_only=True, tag_field="kind", tag="host"):
    object: Host


class UserObject(Answer, kw_only=True, tag_field="kind", tag="user"):
    object: User


class UserGroupObject(Answer, kw_only=True, tag_field="kind", tag="usergroup"):
    object: UserGroup


class SessionObject(Answer, kw_only=True, tag_field="kind", tag="session"):
    object: JobSet


class GroupObject(Answer, kw_only=True, tag_field="kind", tag="group"):
    object: JobSet


ObjectAnswer = (
    AppObject
    | DataObject
    | JobObject
    | TaskObject
    | HostObject
    | UserObject
    | UserGroupObject
    | SessionObject
    | GroupObject
)


def _check_identifier(value: str, what: str) -> None:
    """What a pattern cannot say of a login or label: printable, and not a UID in any spelling."""
    if not value.isprintable():
        raise ValueError(f'"{what}" must be printable')
    if is_uid(value):
        raise ValueError(f'"{what}" must not look like a UID')


# -- requests ------------------------------------------------------------------------------------------------
class Login(Request, kw_only=True):
    """``POST /login``."""

    wire_name = "login"

    login: Annotated[str, msgspec.Meta(min_length=1)]
    password: str
    #: a worker's host: the token acts only as that host, which gets a new credential
    host_uid: Uid | None = None


class HostLogin(Request, kw_only=True):
    """``POST /login/host``: a worker logs in as its host with the host credential."""

    wire_name = "host login"

    login: Annotated[str, msgspec.Meta(min_length=1)]
    host_uid: Uid
    host_key: HostKey


class UserCreation(Request, kw_only=True):
    """``POST /users`` (SUPER)."""

    wire_name = "user"

    login: LoginName
    password: Password
    email: Email | None = None
    rights: Rights = "STANDARD"
    #: a user group's UID, URI or label; null or "" for none
    group: str | None = None

    def __post_init__(self) -> None:
        _check_identifier(self.login, "login")


class UserChange(Request, kw_only=True):
    """``PATCH /users/{key}`` (SUPER): some of rights, group, email."""

    wire_name = "user change"

    rights: Rights | msgspec.UnsetType = msgspec.UNSET
    #: a user group's UID, URI or label; null or "" leave the group
    group: str | None | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if all(v is msgspec.UNSET for v in (self.rights, self.group, self.email)):
            raise ValueError('give some of "rights", "group", "email"')


class PasswordChange(Request, kw_only=True):
    """``POST /users/{key}/password``: ``old_password`` is required to change one's own."""

    wire_name = "password change"

    password: Password
    old_password: str | None = None


class UserGroupCreation(Request, kw_only=True):
    """``POST /usergroups`` (SUPER)."""

    wire_name = "user group"

    label: Label

    def __post_init__(self) -> None:
        _check_identifier(self.label, "label")


class DataByUrl(Request, kw_only=True):
    """``POST /data/url``: data that stays where it is; workers fetch it from ``url``.

    Give ``sha256`` and ``size`` (what the document is: a worker refuses anything else), or
    not both: then the server fetches the URL once to learn them (and checks the one given),
    if its administrator allows it (``data.url_fetch``), and refuses the insertion otherwise.
    """

    wire_name = "data by URL"

    url: Annotated[
        str,
        msgspec.Meta(
            min_length=8,
            max_length=2048,
            pattern="^https?://[^\\x00-\\x20\\x7f]+$",
            description="an http:// or https:// URL, at most 2048 characters, no blanks",
        ),
    ]
    name: Name | None = None
    sha256: Sha256 | None = None
    size: Bytes | None = None
    access_rights: AccessRights | None = None


#: an Ed25519 signature (64 bytes) in standard padded base64
SIGNATURE_PATTERN = "^[A-Za-z0-9+/]{86}==$"
PATTERN_WORDS[SIGNATURE_PATTERN] = "an Ed25519 signature in standard base64 (88 characters)"


class BinarySpec(Request, kw_only=True):
    """One binary of an app: a data object the caller may read, for a platform."""

    os: OsName
    cpu: CpuName
    data_uid: UidRef
    #: ``xwsendapp --xwsign``: the signature of (sha256, app name, os, cpu) by the
    #: deployment's signing key, base64 (xwcommon/signing.py)
    signature: Annotated[str, msgspec.Meta(pattern=SIGNATURE_PATTERN)] | None = None


Quorum = Annotated[int, msgspec.Meta(ge=1, le=10)]
Copies = Annotated[int, msgspec.Meta(ge=1, le=100)]
ErrorCap = Annotated[int, msgspec.Meta(ge=0, le=100)]
DelayBound = Annotated[float, msgspec.Meta(ge=1, le=365 * 24 * 3600)]


RequiredTag = Annotated[str, msgspec.Meta(pattern="^[\\x21-\\x7e]{1,127}$")]
VolatileName = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern="^[^\\x00]+$")]


class AppInsert(Request, kw_only=True):
    """``POST /apps``: a new app, or binaries added to one of the caller's (by name).

    ``access_rights`` is chosen by ADVANCED and up (default 0755); anyone else's app is 0700.
    """

    wire_name = "application"

    #: not a UID (nor an xw:// URI): an app is named by either
    name: Name
    binaries: Annotated[list[BinarySpec], msgspec.Meta(min_length=1)]
    access_rights: AccessRights | None = None
    needs_network: bool | None = None
    # the replication its jobs get unless a job says otherwise (see JobSpec); null: 1 copy
    min_quorum: Quorum | None = None
    target_results: Copies | None = None
    max_error_results: ErrorCap | None = None
    max_total_results: Copies | None = None
    delay_bound_s: DelayBound | None = None
    #: result files (fnmatch patterns, e.g. "stderr.txt", "*.log") left out when copies' results are compared
    volatile: Annotated[list[VolatileName], msgspec.Meta(max_length=50)] | None = None
    #: a program (a data) that tells whether two results agree (fuzzy outputs): run by the
    #: server's validator in a sandbox as ``PROGRAM DIR_A DIR_B``, exit code 0 when they
    #: agree; ADVANCED users and above
    comparator_uid: UidRef | None = None
    #: what a host must offer to run its jobs (a job adds its own): tags, cores, GPUs
    tags: Annotated[list[RequiredTag], msgspec.Meta(max_length=64)] | None = None
    min_cores: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None
    min_gpus: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None

    def __post_init__(self) -> None:
        if is_uid(self.name):
            raise ValueError('"name": an application name must not look like a UID')


class JobSpec(Request, kw_only=True):
    """``POST /jobs`` (and each job of ``POST /jobs/bulk``)."""

    wire_name = "job"

    #: the application's name, UID or URI
    app: Annotated[str, msgspec.Meta(min_length=1)]
    #: a list, or one string split as a shell would (at most 64 Ki characters in all)
    args: list[Arg] | Arg | None = None
    stdin_uid: UidRef | None = None
    env_uid: UidRef | None = None
    label: Name | None = None
    #: null: the server's default
    max_retry: Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRY)] | None = None
    min_memory_bytes: Bytes | None = None
    min_disk_bytes: Bytes | None = None
    session_uid: UidRef | None = None
    group_uid: UidRef | None = None
    expected_host_uid: UidRef | None = None
    #: higher runs first; the range depends on the user's level (STANDARD up to 0, ADVANCED
    #: up to 100, SUPER up to 1000; anyone down to -1000)
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] | None = None
    # replication (null: the application's): results that must agree, copies sent at first,
    # and the caps on failed copies and on copies in all; a copy still running delay_bound_s
    # after it was sent is sent to another host as well
    min_quorum: Quorum | None = None
    target_results: Copies | None = None
    max_error_results: ErrorCap | None = None
    max_total_results: Copies | None = None
    delay_bound_s: DelayBound | None = None
    #: what its host must offer besides memory and disk (with its application's): every one
    #: of these tags (from the worker's ``worker.tags``), and at least so many cores and GPUs
    tags: Annotated[list[RequiredTag], msgspec.Meta(max_length=64)] | None = None
    min_cores: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None
    min_gpus: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None

    def __post_init__(self) -> None:
        args = self.args
        if isinstance(args, str):
            try:
                args = shlex.split(args)
            except ValueError as exc:
                raise ValueError(f'"args": cannot split {args[:64]!r}: {exc}') from None
        if args and sum(len(a) for a in args) > MAX_ARG_CHARS:
            raise ValueError(f'"args" are longer than {MAX_ARG_CHARS} characters in all')


class JobBulk(Request, kw_only=True):
    """``POST /jobs/bulk``: all or nothing."""

    wire_name = "bulk submission"

    jobs: Annotated[list[JobSpec], msgspec.Meta(max_length=MAX_BULK_JOBS)]


class JobDeletion(Request, kw_only=True):
    """``POST /jobs/delete``."""

    wire_name = "bulk removal"

    uids: Annotated[list[UidRef], msgspec.Meta(max_length=MAX_BULK_JOBS)]


class JobSetCreation(Request, kw_only=True):
    """``POST /sessions``, ``POST /groups``: private (0700) unless ``access_rights`` says."""

    wire_name = "job set"

    name: Name
    access_rights: AccessRights | None = None


class Chmod(Request, kw_only=True):
    """``POST /objects/{uid}/chmod``: of data, a host, a session or a group of jobs."""

    wire_name = "chmod"

    rights: AccessRights


assert MAX_BYTES == 2**62
