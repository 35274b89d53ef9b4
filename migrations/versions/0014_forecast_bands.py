"""Catalog: signal types for the forecasts' P10/P90 bands (EA+_P10/P90, P_PV_P10/P90).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from besmart_server.server.seed import seed_catalog

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BAND_MOIDS = (1013, 1014, 1071, 1072)


def upgrade() -> None:
    # seed_catalog upserts, so calling it again adds the new rows and leaves the rest as they are.
    seed_catalog(op.get_bind())


def downgrade() -> None:
    # A band type that a series or a sensor state still names stays (its rows would lose
    # their meaning, and the foreign keys forbid it); the unused ones go. Upgrading again
    # re-seeds them either way.
    op.get_bind().execute(
        sa.text(
            "DELETE FROM signal_types WHERE moid IN :moids "
            "AND moid NOT IN (SELECT signal_type_moid FROM series) "
            "AND moid NOT IN (SELECT signal_type_moid FROM signal_states)"
        ).bindparams(sa.bindparam("moids", expanding=True)),
        {"moids": list(BAND_MOIDS)},
    )
