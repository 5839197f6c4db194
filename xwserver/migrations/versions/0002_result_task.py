"""a result archive names the task that uploaded it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_data_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("data", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_task_id"))
        batch_op.drop_column("task_id")
