"""The schema. Times are epoch seconds (portable, cheap to compare on the hot path)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UID = String(36)
NAME = String(255)


class Base(DeclarativeBase):
    pass


def exists_on(obj: object, dialect: str) -> bool:
    """Whether a schema item exists on ``dialect``: an index built with ``.ddl_if(dialect=…)``
    exists only there (autogenerate's comparison does not know ``ddl_if``: it asks this)."""
    condition = getattr(obj, "_ddl_if", None)
    if condition is None or condition.dialect is None:
        return True
    names = (condition.dialect,) if isinstance(condition.dialect, str) else condition.dialect
    return dialect in names


class UserGroup(Base):
    __tablename__ = "usergroups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    label: Mapped[str] = mapped_column(NAME, unique=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Double)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    login: Mapped[str] = mapped_column(NAME, unique=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    email: Mapped[str] = mapped_column(NAME, default="")
    rights: Mapped[int] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("usergroups.id"), nullable=True)
    created_at: Mapped[float] = mapped_column(Double)
    #: fair share (migration 0007): the virtual time the owner's queued jobs reach; a
    #: submission's jobs take the next keys from max(this, the queue's head): see jobs.share_keys
    share_vtime: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    #: set on a token got with a host credential (migration 0006): it acts only as that host
    host_id: Mapped[int | None] = mapped_column(
        ForeignKey("hosts.id", name="fk_tokens_host_id_hosts", ondelete="CASCADE"), nullable=True, index=True
    )


class Data(Base):
    __tablename__ = "data"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    name: Mapped[str] = mapped_column(NAME)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    access_rights: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    #: set on a result archive: the task that uploaded it (only that task may report it)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    #: data by URL (migration 0008): where workers fetch it (nothing is in the store); its
    #: size and sha256 are the document's when it was inserted
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    access_rights: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    #: its jobs need the network (migration 0004); a job copies it at submission
    needs_network: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # migration 0007: the replication its jobs get unless a job says otherwise (see Job)
    min_quorum: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    target_results: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_error_results: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    max_total_results: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    delay_bound_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: JSON list of result file names (fnmatch patterns) left out when copies are compared
    volatile: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    #: a program (a data object) that tells whether two results agree, for fuzzy outputs
    #: (floating point); null: results agree when their digests do. See xwserver/comparing.py
    comparator_data_id: Mapped[int | None] = mapped_column(
        ForeignKey("data.id", name="fk_apps_comparator_data_id_data"), nullable=True
    )
    # migration 0008: what a host must offer to run its jobs (a job adds its own): tags (a
    # JSON list: OMERO.grid's roles, "gpu", a site name), cores and GPUs
    required_tags: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    min_cores: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    min_gpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AppBinary(Base):
    __tablename__ = "app_binaries"
    __table_args__ = (UniqueConstraint("app_id", "os", "cpu", name="uq_app_binaries_platform"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    os: Mapped[str] = mapped_column(String(32))
    cpu: Mapped[str] = mapped_column(String(32))
    data_id: Mapped[int] = mapped_column(ForeignKey("data.id"))
    #: the deployment signing key's Ed25519 signature of (sha256, app name, os, cpu), base64
    #: (migration 0008; xwcommon/signing.py); null: unsigned
    signature: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Host(Base):
    __tablename__ = "hosts"
    #: one name per host in a deployment (migration 0006): a clash gets a suffix ("vm-2")
    __table_args__ = (UniqueConstraint("name", name="uq_hosts_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    name: Mapped[str] = mapped_column(NAME)
    os: Mapped[str] = mapped_column(String(32))
    cpu: Mapped[str] = mapped_column(String(32))
    cores: Mapped[int] = mapped_column(Integer)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_free_bytes: Mapped[int] = mapped_column(BigInteger)
    tags: Mapped[str] = mapped_column(Text, default="[]")
    version: Mapped[str] = mapped_column(String(64), default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: 0700 for a private worker's host (a STANDARD or higher identity), 0755 otherwise (migration 0003)
    access_rights: Mapped[int] = mapped_column(Integer, default=0o755, server_default="493")
    registered_at: Mapped[float] = mapped_column(Double)
    last_seen_at: Mapped[float] = mapped_column(Double)
    #: what the worker's activation policy last said (migration 0004): "active" or "suspended",
    #: its description, and since when the state holds (null before any report)
    activation_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    activation_detail: Mapped[str | None] = mapped_column(String(255), nullable=True)
    activation_since: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: JSON list of {"name", "memory_bytes"}
    gpus: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    #: the host credential (migration 0006): the sha256 of a random key the worker keeps, and
    #: when it was issued (an old one is replaced at its next use); null: none (a password
    #: login gives one)
    key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_issued_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: adaptive trust (migration 0007): valid results in a row since its last invalid one
    valid_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class _JobSet:
    """The columns of XWHEP's two named sets of jobs (one shape, see xwserver/jobsets.py)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    name: Mapped[str] = mapped_column(NAME)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    access_rights: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)


class JobSession(_JobSet, Base):
    """XWHEP's session: jobs submitted together, removed together."""

    __tablename__ = "sessions"


class JobGroup(_JobSet, Base):
    """XWHEP's group of jobs (not a user group: see UserGroup)."""

    __tablename__ = "jobgroups"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # the claim: PENDING jobs by priority, then fair share, then submission order. A
        # partial index where the database has them: a claimed job leaves it (no entry for
        # RUNNING or COMPLETED rows to maintain or to walk past), and scans of it kill the
        # entries of claimed jobs. MariaDB has none: its index leads with the status.
        Index(
            "ix_jobs_pending",
            "nice",
            "share_key",
            "id",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ).ddl_if(dialect=("postgresql", "sqlite")),  # type: ignore[arg-type]  # a tuple is documented
        Index("ix_jobs_status_queue", "status", "nice", "share_key", "id").ddl_if(dialect="mysql"),
        Index("ix_jobs_app_id", "app_id").ddl_if(dialect="mysql"),
        Index("ix_jobs_owner_status", "owner_id", "status"),
        Index("ix_jobs_owner_label", "owner_id", "label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    label: Mapped[str | None] = mapped_column(NAME, nullable=True)
    args: Mapped[str] = mapped_column(Text, default="[]")
    stdin_data_id: Mapped[int | None] = mapped_column(ForeignKey("data.id"), nullable=True)
    env_data_id: Mapped[int | None] = mapped_column(ForeignKey("data.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    retry: Mapped[int] = mapped_column(Integer, default=0)
    max_retry: Mapped[int] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_data_id: Mapped[int | None] = mapped_column(ForeignKey("data.id"), nullable=True)
    access_rights: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    # migration 0004: what the job declares it needs (the claim matches them to the host's
    # free memory, free disk and network), and where it belongs
    min_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    min_disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: its app's, copied at submission (as access_rights)
    needs_network: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", name="fk_jobs_session_id_sessions"), nullable=True, index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobgroups.id", name="fk_jobs_group_id_jobgroups"), nullable=True, index=True
    )
    #: the one host that may run it; no foreign key: a job outlives a removed host (it then
    #: stays PENDING until its owner removes it)
    expected_host_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # migration 0007: the queue's order: priority first (stored as ``nice`` = -priority, so
    # one ascending index serves the claim on every database), then fair share across owners
    nice: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    share_key: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    # replication (its app's unless the job says otherwise): results that must agree, copies
    # sent at first, and the caps on errors and on copies in all
    min_quorum: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    target_results: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_error_results: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    max_total_results: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    #: copies still to send (a PENDING job has at least one), copies sent, results received
    unsent: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: sent alone to a host with a long record of valid results (adaptive trust)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: a copy running this long after it was sent is sent to another host as well
    delay_bound_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    # migration 0008: what a host must offer (its app's requirements and its own): cores,
    # GPUs, and the tags in job_tags (tag_count of them: 0 lets the claim skip the lookup)
    min_cores: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    min_gpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tag_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JobTag(Base):
    """A tag a job's host must carry (hosts carry theirs in ``hosts.tags``)."""

    __tablename__ = "job_tags"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(127), primary_key=True)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # the reaper: live tasks by lease end
        Index("ix_tasks_status_lease", "status", "lease_expires_at"),
        # heartbeats: live tasks of one host
        Index("ix_tasks_host_status", "host_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(UID, unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Double)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # migration 0004: what the worker accounted for the attempt (null when not reported)
    cpu_user_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    cpu_system_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    wall_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_rss_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # migration 0007: a replicated job's copy: what its result's files hash to (the volatile
    # ones left out), whether it agreed with the canonical result, and whether it ran past
    # its job's delay bound (another copy was sent)
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    validity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class _EventColumns:
    """The columns of an event, shared by the history and its newest part."""

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[float] = mapped_column(Double)
    #: job, task, host, user, usergroup, app
    kind: Mapped[str] = mapped_column(String(16))
    object_uid: Mapped[str] = mapped_column(UID)
    #: created, assigned, completed, error, lost, retried, released, validated, invalid, ...
    action: Mapped[str] = mapped_column(String(32))
    #: who (a user id; null: the server itself) and from which address
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the object's owner (who may read the event besides SUPER users and the actor)
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: a task's (or job's) job, and the host involved, when there is one
    job_uid: Mapped[str | None] = mapped_column(UID, nullable=True)
    host_uid: Mapped[str | None] = mapped_column(UID, nullable=True)
    #: why, in words
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(_EventColumns, Base):
    """The history: every change of a job, task, host, user, group or app (migration 0009),
    indexed for its lookups. A change appends its events to :class:`NewEvent` in its
    own transaction; they are moved here in batches (xwserver/events.py)."""

    __tablename__ = "events"
    __table_args__ = (
        # two lookups: a job's history (a job's own events carry its uid as job_uid too)
        # and a host's (likewise). A user's own events (owner or actor) are a scan in id
        # order that stops at the limit: an index on either column alone cannot serve that
        # OR, and no database used the owner index 0009 made (migration 0010 drops it).
        # Pruning walks the primary key (events are appended in time order).
        Index("ix_events_job", "job_uid", "id"),
        Index("ix_events_host", "host_uid", "id"),
    )


class NewEvent(_EventColumns, Base):
    """The newest events, appended by the transactions that made the changes (migration
    0010). No index but the primary key: an append here costs the hot path next to nothing,
    where maintaining the history's indexes in each claim and report cost the full cycle a
    quarter of its server CPU. The server moves them to :class:`Event` in batches in its
    quiet moments (xwserver/events.py); readers read both."""

    __tablename__ = "events_new"
    # no AUTOINCREMENT on SQLite (it updates sqlite_sequence with every insert, a page more
    # in each transaction's commit: that, not the append, was the hot path's cost); ids
    # are kept from going back by never emptying the table (events.settle)


class UsageLedger(Base):
    """What removed jobs had used, kept for usage reports (migration 0009): removing a job
    (as xwresults does once it fetched the result) takes its tasks and result with it, so
    their sums are kept here first, per owner and hour (``at``: the hour's start)."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_owner_at", "owner_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Double)
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    tasks: Mapped[int] = mapped_column(Integer, default=0)
    cpu_s: Mapped[float] = mapped_column(Double, default=0.0)
    wall_s: Mapped[float] = mapped_column(Double, default=0.0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)


#: MariaDB: every table has a binary collation without padding (migrations 0001, 0004 and
#: 0011), so that names, logins, tags and UIDs compare exactly as on the other databases
#: (case and trailing spaces count). An empty database gets the same
#: (``engine.create_schema``; tests/unit/test_server_schema.py)
for _table in Base.metadata.tables.values():
    _table.dialect_kwargs.update(mysql_charset="utf8mb4", mysql_collate="utf8mb4_nopad_bin")
