"""Demo data for a newcomer: a client, a user whose password is printed once, and more."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.demo_info import DAY_MS, DemoInfo, DemoLoader
from besmart_server.server.graphs import demo as graphs_demo
from besmart_server.server.sensors import demo as sensors_demo
from besmart_server.server.signals import demo as signals_demo
from besmart_server.server.users import service as users
from besmart_server.server.users.tables import clients
from besmart_server.server.vee import demo as vee_demo
from besmart_server.server.weather import demo as weather_demo

DEMO_LOGIN = "demo"
DEMO_CLIENT = "Demo Energy Community"


def loaders() -> list[DemoLoader]:
    """Each part's loader, in dependency order (data needs sensors)."""
    return [
        sensors_demo.load,
        signals_demo.load,
        vee_demo.load,
        weather_demo.load,
        graphs_demo.load,
    ]


def is_empty(db: Database) -> bool:
    """True when no tenant exists yet (the first serve of a new database); system clients
    such as the weather grid's, made by an earlier `besmart weather import`, do not count."""
    with db.transaction(write=False) as conn:
        query = select(clients.c.cid).where(clients.c.is_system.is_(False)).limit(1)
        return conn.scalar(query) is None


def load_demo(db: Database, *, password: str | None = None, today: int | None = None) -> DemoInfo:
    """Create the demo client and user (and what the loaders add) in one transaction; its data
    runs up to the UTC day `today` (ms at 00:00; default the current day)."""
    password = password or secrets.token_urlsafe(12)
    with db.transaction() as conn:
        cid = users.create_client(conn, name=DEMO_CLIENT)
        uid = users.create_user(conn, login=DEMO_LOGIN, password=password)
        users.grant_role(conn, user_id=uid, client_cid=cid, role=Role.owner)
        info = DemoInfo(client_cid=cid, login=DEMO_LOGIN, password=password)
        if today is not None:
            info.today = today // DAY_MS * DAY_MS
        for loader in loaders():
            loader(conn, info)
    return info
