"""the claim's index holds PENDING jobs only, and jobs have no index by app (PostgreSQL and SQLite)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'PENDING'")


def _partial() -> bool:
    """MariaDB has no partial index: it keeps ``(status, id)``."""
    return op.get_bind().dialect.name in ("postgresql", "sqlite")


def upgrade() -> None:
    if not _partial():
        return
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_id")
        batch_op.drop_index("ix_jobs_app_id")
        batch_op.create_index(
            "ix_jobs_pending", ["id"], unique=False, postgresql_where=PENDING, sqlite_where=PENDING
        )


def downgrade() -> None:
    if not _partial():
        return
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_pending")
        batch_op.create_index("ix_jobs_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_jobs_app_id", ["app_id"], unique=False)
