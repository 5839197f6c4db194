"""host credentials (a key's hash on the host, tokens bound to a host) and unique host names

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12 01:00:00
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: the longest host name (the column's length)
_NAME_CHARS = 255


def _unique_names() -> None:
    """Names shared by several hosts get a suffix, the oldest host keeping the bare name
    (as a new registration would have been named)."""
    bind = op.get_bind()
    hosts = sa.table("hosts", sa.column("id", sa.Integer()), sa.column("name", sa.String()))
    rows = bind.execute(sa.select(hosts.c.id, hosts.c.name).order_by(hosts.c.id)).all()
    taken = {name for _, name in rows}
    seen: set[str] = set()
    for host_id, name in rows:
        if name not in seen:
            seen.add(name)
            continue
        base = re.sub(r"-\d+$", "", name) or name
        n = 2
        while True:
            suffix = f"-{n}"
            candidate = base[: _NAME_CHARS - len(suffix)] + suffix
            if candidate not in taken:
                break
            n += 1
        taken.add(candidate)
        seen.add(candidate)
        bind.execute(sa.update(hosts).where(hosts.c.id == host_id).values(name=candidate))


def upgrade() -> None:
    _unique_names()
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("key_issued_at", sa.Double(), nullable=True))
        batch_op.create_unique_constraint("uq_hosts_name", ["name"])
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_tokens_host_id_hosts", "hosts", ["host_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index(batch_op.f("ix_tokens_host_id"), ["host_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        # the foreign key first: MariaDB keeps an index while a foreign key needs it
        batch_op.drop_constraint("fk_tokens_host_id_hosts", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tokens_host_id"))
        batch_op.drop_column("host_id")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_hosts_name", type_="unique")
        batch_op.drop_column("key_issued_at")
        batch_op.drop_column("key_hash")
