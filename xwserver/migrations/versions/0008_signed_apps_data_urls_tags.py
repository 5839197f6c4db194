"""signed applications, data by URL, host and job requirements (tags, cores, GPUs)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-13 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # signed applications: a binary's signature by the deployment's signing key
    with op.batch_alter_table("app_binaries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.String(length=128), nullable=True))
    # data by URL: where workers fetch it
    with op.batch_alter_table("data", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url", sa.String(length=2048), nullable=True))
    # requirements: tags, cores and GPUs a host must offer (an app's, and a job's own)
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("required_tags", sa.Text(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("min_cores", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("min_gpus", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("min_cores", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("min_gpus", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("tag_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=127), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "tag"),
    )


def downgrade() -> None:
    op.drop_table("job_tags")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for name in ("tag_count", "min_gpus", "min_cores"):
            batch_op.drop_column(name)
    with op.batch_alter_table("apps", schema=None) as batch_op:
        for name in ("min_gpus", "min_cores", "required_tags"):
            batch_op.drop_column(name)
    with op.batch_alter_table("data", schema=None) as batch_op:
        batch_op.drop_column("url")
    with op.batch_alter_table("app_binaries", schema=None) as batch_op:
        batch_op.drop_column("signature")
