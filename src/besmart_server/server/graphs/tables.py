"""Stored graphs (by name) and graph runs (their state and run record)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from besmart_server.server.db import metadata

graphs = Table(
    "graphs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Unique per owner: a tenant's names never collide with, or reveal, another tenant's.
    Column("name", String(200), nullable=False),
    Column("definition", Text, nullable=False),  # JSON: {"nodes": [...], "edges": [...]}
    # The tenant that owns the graph; NULL for system graphs an admin stored.
    Column("owner_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("owner_cid", "name"),
    sqlite_autoincrement=True,  # ids are never handed out again (as every surrogate key)
)

graph_runs = Table(
    "graph_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("graph_name", String(200), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("till", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # JSON: the run's template parameters
    Column("state", String(10), nullable=False),  # queued, running, done, failed
    Column("executor", String(20), nullable=False),
    Column("record", Text, nullable=True),  # JSON run record once done
    Column("error", Text, nullable=True),
    # Who started it (NULL: the CLI); they, admins and readers of its clients may see it.
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    # While running: the time its worker's lease ends (renewed by a heartbeat). A run still
    # `running` past it lost its worker; the reaper queues it again or fails it.
    Column("lease_until", BigInteger, nullable=True),
    # How many times a worker claimed it: fences a late writer whose lease was taken over.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # JSON: the principal it runs for, so that a reaped run can be queued again.
    Column("acting_for", Text, nullable=True),
    # The process of its latest claim (host:pid): which worker to look at when it stalls.
    Column("claimed_by", String(100), nullable=True),
    Index("ix_graph_runs_user_id", "user_id"),
    Index("ix_graph_runs_state_lease", "state", "lease_until"),
    sqlite_autoincrement=True,
)

# The clients a run writes to (from its write targets, when it is created): readers of every
# one of them may see the run; running one needs the write role on each.
graph_run_clients = Table(
    "graph_run_clients",
    metadata,
    Column("run_id", Integer, ForeignKey("graph_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), primary_key=True),
    Index("ix_graph_run_clients_client_cid", "client_cid"),
)
