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


def _schema(sync_conn: Any) -> dict[str, Any]:
    """Everything the database says of its tables, in comparable form."""
    from sqlalchemy import inspect

    inspector = inspect(sync_conn)

    def plain(value: Any) -> str:
        if isinstance(value, dict):  # dialect options: a partial index's condition is a clause
            return repr(sorted((k, plain(v)) for k, v in value.items()))
        return str(value) if hasattr(value, "compile") else repr(value)

    def clean(items: list[dict[str, Any]]) -> list[Any]:
        return sorted(repr(sorted((k, plain(v)) for k, v in item.items())) for item in items)

    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [
            {**c, "type": str(c["type"]), "default": c.get("default")} for c in inspector.get_columns(table)
        ]
        schema[table] = {
            "columns": clean(columns),
            "primary key": inspector.get_pk_constraint(table).get("constrained_columns"),
            "foreign keys": clean([_numberless(fk) for fk in inspector.get_foreign_keys(table)]),
            "indexes": clean(inspector.get_indexes(table)),
            "unique": clean(inspector.get_unique_constraints(table)),
            "checks": clean(inspector.get_check_constraints(table)),
            # MariaDB's charset and collation (how names compare), PostgreSQL's none
            "options": sorted((k, str(v)) for k, v in inspector.get_table_options(table).items()),
        }
    return schema


def _numberless(fk: dict[str, Any]) -> dict[str, Any]:
    """A foreign key without the number MariaDB gives an unnamed one (``jobs_ibfk_3``): it
    counts in the order the keys were made, which no script names (they name their keys)."""
    import re

    return {**fk, "name": re.sub(r"_ibfk_\d+$", "_ibfk_N", fk["name"] or "")}


def _drop_everything(sync_conn: Any) -> None:
    from sqlalchemy import MetaData

    tables = MetaData()
    tables.reflect(sync_conn)
    tables.drop_all(sync_conn)


async def test_the_scripts_and_the_models_build_the_same_schema(domain: Server) -> None:
    """An empty database gets the models' tables at once (``create_schema``), one being
    upgraded runs the scripts: both ways end at the same tables, columns, types, defaults,
    keys and indexes (partial ones with their conditions), and the same revision."""
    from xwserver.db.engine import SCHEMA_REVISION, migrate, schema_revision

    async with domain.engine.begin() as conn:
        await conn.run_sync(_drop_everything)
    await migrate(domain.engine)  # an empty database: the models' schema
    async with domain.engine.connect() as conn:
        created = await conn.run_sync(_schema)
        assert await conn.run_sync(schema_revision) == SCHEMA_REVISION
        assert await conn.run_sync(_differences) == []
    async with domain.engine.begin() as conn:
        await conn.run_sync(_drop_everything)
        await conn.run_sync(_to("head"))  # the scripts, one by one, from nothing
    async with domain.engine.connect() as conn:
        upgraded = await conn.run_sync(_schema)
        assert await conn.run_sync(schema_revision) == SCHEMA_REVISION
        assert await conn.run_sync(_differences) == []
    assert set(created) == set(upgraded)
    differences = [
        f"{table} {part}: {sorted(set(c) ^ set(u)) if isinstance(c, list) else (c, u)}"
        for table in created
        for part, c in created[table].items()
        if c != (u := upgraded[table][part])
    ]
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
