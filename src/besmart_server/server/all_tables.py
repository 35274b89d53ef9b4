"""Imports every table module so `metadata` knows the whole schema (tests, tooling)."""

from __future__ import annotations

from besmart_server.server.db import metadata
from besmart_server.server.graphs import tables as graph_tables
from besmart_server.server.meters import tables as meter_tables
from besmart_server.server.mqtt import tables as mqtt_tables
from besmart_server.server.sensors import tables as sensor_tables
from besmart_server.server.signals import tables as signal_tables
from besmart_server.server.states import tables as state_tables
from besmart_server.server.users import tables as user_tables
from besmart_server.server.vee import tables as vee_tables

# Catalog tables the migrations seed; tests keep their system rows between tests.
CATALOG_TABLES = frozenset({"units", "signal_types"})

__all__ = [
    "CATALOG_TABLES",
    "graph_tables",
    "metadata",
    "meter_tables",
    "mqtt_tables",
    "sensor_tables",
    "signal_tables",
    "state_tables",
    "user_tables",
    "vee_tables",
]
