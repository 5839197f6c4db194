"""replication, quorum, adaptive trust, priorities, fair share, deadlines

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-13 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'PENDING'")


def _replication(batch_op: object) -> None:
    add = batch_op.add_column  # type: ignore[attr-defined]
    add(sa.Column("min_quorum", sa.Integer(), server_default="1", nullable=False))
    add(sa.Column("target_results", sa.Integer(), server_default="1", nullable=False))
    add(sa.Column("max_error_results", sa.Integer(), server_default="3", nullable=False))
    add(sa.Column("max_total_results", sa.Integer(), server_default="10", nullable=False))
    add(sa.Column("delay_bound_s", sa.Double(), nullable=True))


def upgrade() -> None:
    partial = op.get_bind().dialect.name in ("postgresql", "sqlite")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("share_vtime", sa.Double(), server_default="0", nullable=False))
    with op.batch_alter_table("apps", schema=None) as batch_op:
        _replication(batch_op)
        batch_op.add_column(sa.Column("volatile", sa.Text(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("comparator_data_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_apps_comparator_data_id_data", "data", ["comparator_data_id"], ["id"])
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_streak", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("validity", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("overdue", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nice", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("share_key", sa.Double(), server_default="0", nullable=False))
        _replication(batch_op)
        batch_op.add_column(sa.Column("unsent", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("sent", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("done", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("trusted", sa.Boolean(), server_default=sa.false(), nullable=False))
        if partial:
            batch_op.drop_index("ix_jobs_pending")
            batch_op.create_index(
                "ix_jobs_pending",
                ["nice", "share_key", "id"],
                unique=False,
                postgresql_where=PENDING,
                sqlite_where=PENDING,
            )
        else:
            batch_op.drop_index("ix_jobs_status_id")
            batch_op.create_index("ix_jobs_status_queue", ["status", "nice", "share_key", "id"], unique=False)
    # a job not waiting for a copy to be sent has none unsent; one that ran has sent one
    jobs = sa.table("jobs", sa.column("status", sa.String()), sa.column("unsent"), sa.column("sent"))
    op.execute(jobs.update().where(jobs.c.status != "PENDING").values(unsent=0, sent=1))


def downgrade() -> None:
    partial = op.get_bind().dialect.name in ("postgresql", "sqlite")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        if partial:
            batch_op.drop_index("ix_jobs_pending")
            batch_op.create_index(
                "ix_jobs_pending", ["id"], unique=False, postgresql_where=PENDING, sqlite_where=PENDING
            )
        else:
            batch_op.drop_index("ix_jobs_status_queue")
            batch_op.create_index("ix_jobs_status_id", ["status", "id"], unique=False)
        for name in (
            "trusted",
            "done",
            "sent",
            "unsent",
            "delay_bound_s",
            "max_total_results",
            "max_error_results",
            "target_results",
            "min_quorum",
            "share_key",
            "nice",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        for name in ("overdue", "validity", "digest"):
            batch_op.drop_column(name)
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("valid_streak")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        for name in (
            "volatile",
            "delay_bound_s",
            "max_total_results",
            "max_error_results",
            "target_results",
            "min_quorum",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("share_vtime")
