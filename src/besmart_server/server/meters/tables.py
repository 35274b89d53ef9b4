"""The meter type catalog: the types a sensor state's `meter_type_id` names."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, Text

from besmart_server.server.db import metadata

meter_types = Table(
    "meter_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # NULL: a system type everybody sees; else the client that owns it.
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=True),
    Column("meter_type_name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("number_of_phases", Integer, nullable=True),
    Column("is_ami", Boolean, nullable=False, default=False),
    Column("is_dcu", Boolean, nullable=False, default=False),
    Column("is_balance", Boolean, nullable=False, default=False),
    sqlite_autoincrement=True,
)
