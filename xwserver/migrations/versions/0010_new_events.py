"""the newest events, appended without indexes and moved to the history in batches; the
history's owner index, which no query could use, goes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-13 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_owner")
    op.create_table(
        "events_new",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_uid", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("job_uid", sa.String(length=36), nullable=True),
        sa.Column("host_uid", sa.String(length=36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # the ids go on from the history's: an event keeps its id when it is moved there.
    # SQLite numbers rows one past the highest in the table, so the history's newest event
    # is put there too (already moved, as events.settle leaves the newest); a sequence is
    # set past it (PostgreSQL, MariaDB).
    bind = op.get_bind()
    last = bind.execute(sa.text("SELECT MAX(id) FROM events")).scalar()
    if last:
        columns = "id, at, kind, object_uid, action, actor_id, address, owner_id, job_uid, host_uid, detail"
        op.execute(
            sa.text(
                f"INSERT INTO events_new ({columns}) SELECT {columns} FROM events WHERE id = :n"
            ).bindparams(n=last)
        )
        dialect = bind.dialect.name
        if dialect == "postgresql":
            op.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('events_new', 'id'), :n)").bindparams(n=last)
            )
        elif dialect != "sqlite":
            op.execute(sa.text(f"ALTER TABLE events_new AUTO_INCREMENT = {int(last) + 1}"))


def downgrade() -> None:
    op.drop_table("events_new")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_owner", ["owner_id", "id"], unique=False)
