"""Alembic environment: runs on the connection the server hands over (or a URL offline)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from xwserver.db.models import Base, exists_on

config = context.config
target_metadata = Base.metadata


def _include(obj: object, name: object, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate: an index made for other databases (``ddl_if``) is not missing here."""
    return reflected or exists_on(obj, context.get_bind().dialect.name)


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=_include,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(str(url))
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=target_metadata, render_as_batch=True, include_object=_include
        )
        with context.begin_transaction():
            context.run_migrations()


run()
