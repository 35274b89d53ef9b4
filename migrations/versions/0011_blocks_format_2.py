"""Day blocks in format 2 (signals/blocks.py): exact decimals as scaled integers, narrow
byte-planed differences; about a third of format 1's bytes for meter readings.

Upgrade re-encodes every format 1 block (body and latest) in format 2; downgrade re-encodes
every format 2 block in format 1, the only one the code before reads (signals/reformat.py).

On PostgreSQL, upgrade also leaves a tenth of each heap page free (fillfactor 90): a block
is rewritten whole by every write that touches it, and a rewrite that fits on its page is a
HOT update — no new index entries, and the page drops the dead versions itself, without
waiting for vacuum. Downgrade restores the default.

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from besmart_server.server.signals.blocks import FORMAT_2, LEGACY_FORMAT
from besmart_server.server.signals.reformat import migration_chunk, reencode

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    reencode(op.get_bind(), FORMAT_2, migration_chunk())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blocks SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blocks RESET (fillfactor)")
    reencode(op.get_bind(), LEGACY_FORMAT, migration_chunk())
