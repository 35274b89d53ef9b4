"""Day blocks in format 3 (signals/blocks.py): a scaled block's value differences may be
packed in as many bits as their spread needs, less their least (frame of reference), where
format 2 kept them in whole-byte planes; a tenth to a quarter fewer bytes for the 15-minute
meter readings of the benchmark.

Upgrade re-encodes every format 2 block (body and latest) in format 3 (format 1 blocks,
which 0011 left none of, too); downgrade re-encodes every block in format 2, which the code
before reads (signals/reformat.py). The summary columns stay.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from besmart_server.server.signals.reformat import migration_chunk, reencode

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_FORMAT_3 = 3  # blocks.FORMAT when written; a migration keeps its meaning
_FORMAT_2 = 2


def upgrade() -> None:
    reencode(op.get_bind(), _FORMAT_3, migration_chunk())


def downgrade() -> None:
    reencode(op.get_bind(), _FORMAT_2, migration_chunk())
