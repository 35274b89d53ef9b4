"""VEE tables: quality events, thresholds per client and sensor type, the queue of windows
written since the rules last ran, and the audit of estimated and corrected writes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from besmart_server.server.db import metadata

# What a rule found in a stretch [since, till) of one series; `state` moves from open to
# accepted (by `accepted_by`, with `note`), estimated or corrected.
quality_events = Table(
    "quality_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("till", BigInteger, nullable=False),
    Column("rule", String(40), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Column("found_at", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),
    Column("accepted_by", String(200), nullable=True),
    Column("accepted_at", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_quality_events_series_since", "series_id", "since"),
    sqlite_autoincrement=True,
)

# Threshold overrides (JSON, rules.Thresholds' fields) of a client, for one sensor type or,
# with sensor_type_id 0, for all its sensors; a sensor type's overrides win over the client's.
vee_thresholds = Table(
    "vee_thresholds",
    metadata,
    Column(
        "client_cid",
        Integer,
        ForeignKey("clients.cid", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("sensor_type_id", Integer, primary_key=True, autoincrement=False),
    Column("overrides", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Windows written and not yet validated: the write path adds a row after its commit, a
# worker claims rows (`claimed_at`), runs the rules and the audit for them, and deletes them.
vee_queue = Table(
    "vee_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_cid", Integer, nullable=False),
    Column("sensor_mid", Integer, nullable=False),
    Column("signal_type_moid", Integer, nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("till", BigInteger, nullable=False),  # exclusive
    Column("origins", String(20), nullable=False),  # the origins written, "1,5"
    Column("points", Integer, nullable=False),
    Column("who", String(200), nullable=True),
    Column("method", String(40), nullable=True),
    Column("reason", Text, nullable=True),
    Column("enqueued_at", BigInteger, nullable=False),
    Column("claimed_at", BigInteger, nullable=True),
    sqlite_autoincrement=True,
)

# Every write of origin 4 (estimated) or 5 (corrected): who, when (the version's acquisition
# time), the method and the reason. Rows are only ever added.
vee_audit = Table(
    "vee_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("till", BigInteger, nullable=False),
    Column("origin", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("acq_time", BigInteger, nullable=False),
    Column("who", String(200), nullable=False),
    Column("method", String(40), nullable=True),
    Column("reason", Text, nullable=True),
    Index("ix_vee_audit_series_since", "series_id", "since"),
    sqlite_autoincrement=True,
)
