"""Database.reads: read-only work without BEGIN and COMMIT on PostgreSQL, and the pooled
connection's transactions as before once it is back in the pool."""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import func, select

from besmart_server.server.db import Database
from besmart_server.server.users import service
from besmart_server.server.users.tables import clients


def _named(db: Database, name: str) -> int:
    with db.reads() as conn:
        return int(conn.execute(select(func.count()).where(clients.c.name == name)).scalar_one())


def _write_then_fail(db: Database, raw: object) -> None:
    with db.transaction() as conn:
        service.create_client(conn, name="pgday rolled back")
        if db.dialect == "postgresql":
            assert conn.connection.driver_connection is raw
            assert not conn.connection.driver_connection.autocommit
        raise RuntimeError("roll back")


def test_reads_leave_transactions_as_they_were(database_url: str) -> None:
    db = Database(database_url)  # its own pool: the same connection serves every block below
    try:
        with db.reads() as conn:
            conn.execute(select(func.count()).select_from(clients)).scalar_one()
            raw = conn.connection.driver_connection
            if db.dialect == "postgresql":
                # Autocommit: the statement ran and ended, no transaction is left open.
                assert raw.info.transaction_status == TransactionStatus.IDLE
                assert raw.autocommit
        with pytest.raises(RuntimeError, match="roll back"):
            _write_then_fail(db, raw)
        assert _named(db, "pgday rolled back") == 0
        with db.transaction() as conn:
            cid = service.create_client(conn, name="pgday committed")
        assert _named(db, "pgday committed") == 1
        with db.transaction() as conn:
            conn.execute(clients.delete().where(clients.c.cid == cid))
    finally:
        db.dispose()
