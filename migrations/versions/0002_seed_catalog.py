"""Seed the system catalogs: sensor types, meter types, units, signal types.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from besmart_server.server.seed import seed_catalog

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The catalog modules are upserted, so a later migration that calls seed_catalog again
    # brings existing installations up to date with new or changed catalog rows.
    seed_catalog(op.get_bind())


def downgrade() -> None:
    for table in ("signal_types", "units", "meter_types", "sensor_types"):
        op.execute(f"DELETE FROM {table}")
