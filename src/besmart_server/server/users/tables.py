"""Clients (tenants), users, their roles, tokens, API keys and failed logins."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from besmart_server.server.db import metadata

clients = Table(
    "clients",
    metadata,
    Column("cid", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("is_system", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    # IANA zone the CLI counts calendar buckets in when a read names no tz (migration 0008).
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    sqlite_autoincrement=True,
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), primary_key=True),
    Column("role", String(10), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(10), nullable=False),  # "session" (login) or "device" (admin-issued)
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    sqlite_autoincrement=True,
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(200), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_login_failures_login_at", "login", "at"),
    Index("ix_login_failures_address_at", "address", "at"),
    sqlite_autoincrement=True,
)
