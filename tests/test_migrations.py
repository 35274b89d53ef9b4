"""The one Alembic history on an empty database of the engine under test: up, down, up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from besmart_server.server import migrate
from besmart_server.server.all_tables import metadata
from besmart_server.server.db import Database
from besmart_server.server.signals.catalog import SIGNAL_TYPES
from besmart_server.server.signals.tables import signal_types


@pytest.fixture
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    option: str = request.config.getoption("--db-url")
    if option == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield db
        db.dispose()
        return
    name = f"besmart_mig_{uuid.uuid4().hex[:10]}"
    admin = make_url(option).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(make_url(option).set(database=name).render_as_string(hide_password=False))
    try:
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_creates_every_table_and_seeds(empty_db: Database) -> None:
    assert migrate.current_revision(empty_db) is None
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision(empty_db)
    assert _tables(empty_db) == {t.name for t in metadata.sorted_tables}
    with empty_db.transaction(write=False) as conn:
        moids = set(conn.scalars(select(signal_types.c.moid)))
    assert moids == {s.moid for s in SIGNAL_TYPES}
    assert {32, 34, 139} <= moids


def test_downgrade_to_base_and_upgrade_again(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    migrate.upgrade(empty_db)  # idempotent at head
    from alembic import command

    cfg = migrate.alembic_config(empty_db)
    with empty_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert _tables(empty_db) == set()
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision(empty_db)


def test_schema_columns_match_the_table_definitions(empty_db: Database) -> None:
    """The hand-written migrations and the tables the code queries must not drift apart."""
    migrate.upgrade(empty_db)
    inspector = inspect(empty_db.engine)
    for table in metadata.sorted_tables:
        actual = {c["name"] for c in inspector.get_columns(table.name)}
        assert actual == {c.name for c in table.columns}, table.name
        pk = set(inspector.get_pk_constraint(table.name)["constrained_columns"])
        assert pk == {c.name for c in table.primary_key.columns}, table.name


def test_deleted_ids_are_never_handed_out_again(empty_db: Database) -> None:
    """sensor_mid is unique in the installation for good: a deleted sensor's id is not reused
    (SQLite would reuse the highest rowid without AUTOINCREMENT)."""
    from sqlalchemy import delete, insert

    from besmart_server.server.sensors.tables import sensors
    from besmart_server.server.users.tables import clients

    migrate.upgrade(empty_db)
    with empty_db.transaction() as conn:
        cid = conn.execute(
            insert(clients).values(name="c", is_system=False, created_at=0).returning(clients.c.cid)
        ).scalar_one()
        row = {"client_cid": cid, "name": "s", "created_at": 0}
        first = conn.execute(insert(sensors).values(**row).returning(sensors.c.mid)).scalar_one()
        conn.execute(delete(sensors).where(sensors.c.mid == first))
        second = conn.execute(insert(sensors).values(**row).returning(sensors.c.mid)).scalar_one()
    assert second > first
