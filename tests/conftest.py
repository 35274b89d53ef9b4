"""Fixtures: one migrated database per test session (SQLite file or a fresh PostgreSQL
database), emptied after every test; an app and a TestClient per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from besmart_server.server import migrate
from besmart_server.server.all_tables import CATALOG_TABLES, metadata
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, psycopg_dsn
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.sensors.tables import sensor_types
from besmart_server.server.users import security


def pytest_configure(config: pytest.Config) -> None:
    # Still argon2id, with the smallest cost: hashing at the production cost (~0.1 s each)
    # for every user a test makes would dominate the suite's time. Production parameters are
    # covered by the CLI's `serve` test, which runs in its own process.
    security.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-url",
        default=os.environ.get("BESMART_TEST_DATABASE_URL", "sqlite"),
        help="'sqlite' (a temporary file) or a postgresql:// URL of a server on which a fresh "
        "database is created for this run and dropped after it",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"besmart database: {config.getoption('--db-url')}"


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database that only this test process uses."""
    option: str = request.config.getoption("--db-url")
    if option == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "besmart.db"
        url = f"sqlite:///{path}"
        db = Database(url)
        migrate.upgrade(db)
        db.dispose()
        yield url
        return
    name = f"besmart_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg_dsn(option)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(option).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def session_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def db(session_db: Database) -> Iterator[Database]:
    """The test database; every row a test made is deleted after it (catalogs stay)."""
    yield session_db
    with session_db.transaction() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name in CATALOG_TABLES:
                continue
            if table is sensor_types:
                conn.execute(delete(table).where(table.c.is_system_type.is_(False)))
            elif table is meter_types:
                conn.execute(delete(table).where(table.c.client_cid.is_not(None)))
            else:
                conn.execute(delete(table))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, demo=False)


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
