"""hosts carry access rights (owner/group/other bits, as apps, data and jobs)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PUBLIC = 0o755
PRIVATE = 0o700
STANDARD = 20  # xwcommon.levels.UserLevel.STANDARD, frozen here as a migration must be


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("access_rights", sa.Integer(), nullable=False, server_default=str(PUBLIC))
        )
    # a host registered by a STANDARD or higher identity is a private worker's: private
    hosts = sa.table("hosts", sa.column("owner_id", sa.Integer()), sa.column("access_rights", sa.Integer()))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("rights", sa.Integer()))
    op.execute(
        hosts.update()
        .where(hosts.c.owner_id.in_(sa.select(users.c.id).where(users.c.rights >= STANDARD)))
        .values(access_rights=PRIVATE)
    )


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("access_rights")
