"""task accounting; host activation and GPUs; declared needs; sessions and groups of jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _job_set_table(name: str) -> None:
    """``sessions`` and ``jobgroups`` share one shape (XWHEP's sessions and groups)."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("access_rights", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
        # MariaDB: binary collation without padding, as every other table
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_nopad_bin",
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_owner_id"), ["owner_id"], unique=False)


def upgrade() -> None:
    _job_set_table("sessions")
    _job_set_table("jobgroups")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cpu_user_s", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("cpu_system_s", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("wall_s", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("max_rss_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activation_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("activation_detail", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("activation_since", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("gpus", sa.Text(), nullable=False, server_default="[]"))
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("needs_network", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("min_memory_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("min_disk_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("needs_network", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expected_host_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_jobs_session_id_sessions", "sessions", ["session_id"], ["id"])
        batch_op.create_foreign_key("fk_jobs_group_id_jobgroups", "jobgroups", ["group_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_jobs_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # the foreign keys first: MariaDB keeps an index while a foreign key needs it
        batch_op.drop_constraint("fk_jobs_group_id_jobgroups", type_="foreignkey")
        batch_op.drop_constraint("fk_jobs_session_id_sessions", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_group_id"))
        batch_op.drop_index(batch_op.f("ix_jobs_session_id"))
        for column in ("expected_host_id", "group_id", "session_id", "needs_network"):
            batch_op.drop_column(column)
        batch_op.drop_column("min_disk_bytes")
        batch_op.drop_column("min_memory_bytes")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("needs_network")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        for column in ("gpus", "activation_since", "activation_detail", "activation_state"):
            batch_op.drop_column(column)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        for column in ("max_rss_bytes", "wall_s", "cpu_system_s", "cpu_user_s"):
            batch_op.drop_column(column)
    for name in ("jobgroups", "sessions"):
        op.drop_table(name)  # with its indexes
