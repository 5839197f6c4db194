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


def downgrade() -> None:
    with op.batch_alter_table("data", schema=None) as batch_op:
        batch_op.drop_column("url")
    with op.batch_alter_table("app_binaries", schema=None) as batch_op:
        batch_op.drop_column("signature")
