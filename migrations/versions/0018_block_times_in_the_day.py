"""The capture times a block row keeps beside its body (`t_last`, `num_first`, `num_last`)
become ms into the block's UTC day: 4-byte integers where a time since 1970 takes 6 bytes in
SQLite and 8 in PostgreSQL (6 and 12 bytes a row; 55,000 rows of the benchmark's year).

Upgrade and downgrade rewrite the three columns of every row in one statement (SQLite: an
UPDATE; PostgreSQL: one ALTER of their type, one rewrite of the table).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_DAY_MS = 86_400_000  # blocks.DAY_MS, written out: a migration keeps its meaning
_COLUMNS = ("t_last", "num_first", "num_last")


def _rewrite(sign: str, pg_type: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        alters = ", ".join(
            f"ALTER COLUMN {c} TYPE {pg_type} USING ({c} {sign} day * {_DAY_MS})::{pg_type}"
            for c in _COLUMNS
        )
        op.execute(f"ALTER TABLE blocks {alters}")
        return
    # SQLite keeps every integer in as few bytes as it needs, whatever the declared type.
    op.execute(
        "UPDATE blocks SET " + ", ".join(f"{c} = {c} {sign} day * {_DAY_MS}" for c in _COLUMNS)
    )


def upgrade() -> None:
    _rewrite("-", "integer")


def downgrade() -> None:
    _rewrite("+", "bigint")
