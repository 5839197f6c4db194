"""MariaDB: the tables of migrations 0008-0010 compare as exactly as the others

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 00:00:00

``job_tags``, ``events``, ``events_new`` and ``usage_ledger`` were made with the database's
default collation, on MariaDB usually case-insensitive and padding: a job requiring ``gpu``
and ``GPU`` broke the tags' primary key, and a host tagged ``GPU`` got jobs requiring ``gpu``,
unlike on SQLite and PostgreSQL. They get the binary collation without padding of the other
tables. Nothing changes on the other databases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("job_tags", "events", "events_new", "usage_ledger")


def upgrade() -> None:
    if op.get_bind().dialect.name != "mysql":
        return
    for table in TABLES:
        op.execute(sa.text(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "mysql":
        return
    default = bind.execute(
        sa.text(
            "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
        )
    ).scalar_one()
    charset = default.split("_", 1)[0]
    for table in TABLES:
        op.execute(sa.text(f"ALTER TABLE {table} CONVERT TO CHARACTER SET {charset} COLLATE {default}"))
