"""deps.reading: the caller's check and a read-only connection for a route, which is ended
by the route's Reading.run or, when the route never ran, by the dependency itself."""

from __future__ import annotations

import asyncio

import pytest

from besmart_server.server import deps
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.errors import Unauthorized
from tests.factories import make_tenant


async def _route_never_runs(db: Database, settings: Settings, token: str) -> None:
    gen = deps.reading(db, settings, token)
    held = await gen.__anext__()  # held: the connection would stay out were it not ended
    assert held.open
    assert held.user.login is not None
    assert db.engine.pool.checkedout() == 1
    await gen.aclose()  # as FastAPI ends it after a 422 of the route's own parameters
    assert not held.open
    assert db.engine.pool.checkedout() == 0


@pytest.mark.usefixtures("db")  # deletes the rows made here afterwards
def test_the_dependency_ends_what_no_route_ran_on(database_url: str, settings: Settings) -> None:
    db = Database(database_url)  # its own pool, so checkedout() counts this test's alone
    try:
        _, actor = make_tenant(db)
        asyncio.run(_route_never_runs(db, settings, actor.token))
    finally:
        db.dispose()


@pytest.mark.usefixtures("db")
def test_run_ends_the_connection_and_a_bad_token_takes_none(
    database_url: str, settings: Settings
) -> None:
    db = Database(database_url)
    try:
        _, actor = make_tenant(db)
        held = deps._open_reading(db, settings, actor.token)
        assert held.run(lambda conn, user: user.login) == actor.login
        assert not held.open
        assert db.engine.pool.checkedout() == 0
        failing = deps._open_reading(db, settings, actor.token)
        with pytest.raises(ZeroDivisionError):
            failing.run(lambda conn, user: 1 // 0)
        assert db.engine.pool.checkedout() == 0
        with pytest.raises(Unauthorized):
            deps._open_reading(db, settings, actor.token + "x")
        assert db.engine.pool.checkedout() == 0
    finally:
        db.dispose()
