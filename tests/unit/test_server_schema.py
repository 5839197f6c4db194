"""The migrations build exactly the schema the models describe, on every database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from xwserver.db.models import Base, exists_on

if TYPE_CHECKING:
    from xwserver.state import Server


def _differences(sync_conn: Any) -> list[Any]:
    dialect = sync_conn.dialect.name

    def include(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        return reflected or exists_on(obj, dialect)

    context = MigrationContext.configure(sync_conn, opts={"compare_type": False, "include_object": include})
    return [d for d in compare_metadata(context, Base.metadata) if not _ignored(d)]


def _ignored(diff: Any) -> bool:
    # alembic's own bookkeeping table is not a model
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


async def test_the_migrated_schema_is_the_models_schema(domain: Server) -> None:
    async with domain.engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []
