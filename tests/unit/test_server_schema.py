"""The migrations build exactly the schema the models describe, on every database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
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


def _to(revision: str) -> Any:
    from alembic import command
    from alembic.config import Config

    from xwserver.db.engine import MIGRATIONS_DIR

    def run(sync_conn: Any) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = sync_conn
        if revision == "head":
            command.upgrade(cfg, "head")
        else:
            command.downgrade(cfg, revision)

    return run


async def test_an_upgraded_history_goes_on_numbering_its_events_past_the_ones_it_had(
    domain: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0010 adds the table of the newest events: on a database that already holds
    a history, the new events' ids start past it, so that moving them keeps every id."""
    from sqlalchemy import insert, select

    from xwserver import events

    monkeypatch.setattr(events, "ENABLED", True)  # a server started before may have set it off
    from xwserver.db.engine import transaction
    from xwserver.db.models import Event

    async with domain.engine.begin() as conn:
        await conn.run_sync(_to("0009"))
        await conn.execute(
            insert(Event),
            [
                {"id": i, "at": float(i), "kind": "job", "object_uid": f"old-{i}", "action": "created"}
                for i in (1, 7)
            ],
        )
    async with domain.engine.begin() as conn:
        await conn.run_sync(_to("head"))

    async def record(conn: Any) -> None:
        await events.record(conn, [events.event("job", "new-1", "created")])

    await transaction(domain.engine, record)
    assert await events.settle(domain) == 1
    async with domain.engine.connect() as conn:
        rows = (await conn.execute(select(Event.id, Event.object_uid).order_by(Event.id))).all()
    assert [tuple(r) for r in rows][:2] == [(1, "old-1"), (7, "old-7")]
    assert rows[-1].object_uid == "new-1" and rows[-1].id > 7


def test_the_revision_the_server_checks_at_start_is_the_newest_migration() -> None:
    """``migrate`` skips Alembic for a database at ``SCHEMA_REVISION``: a new migration
    must move it, else a database left at the old revision would never be upgraded."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from xwserver.db.engine import MIGRATIONS_DIR, SCHEMA_REVISION

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_heads() == [SCHEMA_REVISION]


async def test_a_database_behind_the_newest_migration_is_upgraded_at_start(domain: Server) -> None:
    from xwserver.db.engine import SCHEMA_REVISION, migrate, schema_revision

    async with domain.engine.begin() as conn:
        await conn.run_sync(_to("0009"))
        assert await conn.run_sync(schema_revision) == "0009"
    await migrate(domain.engine)
    async with domain.engine.connect() as conn:
        assert await conn.run_sync(schema_revision) == SCHEMA_REVISION
        assert await conn.run_sync(_differences) == []
