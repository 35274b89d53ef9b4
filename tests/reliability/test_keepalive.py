"""An unexpected error answers a JSON 500 and leaves the keep-alive connection usable, under a
real uvicorn over a real socket: the server once closed it after the 500 without saying
`Connection: close`, so a client's next pooled request died with a reset."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from tests.factories import Actor, make_tenant
from tests.processes import free_port


def _failing_app(settings: Settings) -> FastAPI:
    """The app plus test-only routes that fail unexpectedly (never in production routes)."""
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("boom: a secret detail")

    async def boom_async() -> None:
        raise LookupError("boom")

    app.add_api_route("/api/test/boom", boom)
    app.add_api_route("/api/test/boom-async", boom_async, methods=["POST"])
    return app


@pytest.fixture(params=["httptools", "h11"])
def served(
    request: pytest.FixtureRequest, settings: Settings, db: Database
) -> Iterator[tuple[int, Actor]]:
    """The failing app under uvicorn on a free port, with either HTTP implementation
    (`besmart serve` picks httptools when installed, else h11)."""
    port = free_port()
    config = uvicorn.Config(
        _failing_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        http=request.param,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        _cid, actor = make_tenant(db)
        yield port, actor
    finally:
        server.should_exit = True
        thread.join(30)


def test_500_keeps_the_connection(served: tuple[int, Actor]) -> None:
    port, actor = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/clients", headers=actor.headers)
        first = conn.getresponse()
        assert first.status == 200
        first.read()
        sock = conn.sock
        assert sock is not None
        for method, path in [("GET", "/api/test/boom"), ("POST", "/api/test/boom-async")]:
            conn.request(method, path, body=b'{"x": 1}', headers=actor.headers)
            res = conn.getresponse()
            body = res.read()
            assert res.status == 500
            assert res.getheader("content-type") == "application/json"
            assert orjson.loads(body) == {"detail": "Internal server error"}
            assert res.getheader("x-content-type-options") == "nosniff"
            if res.getheader("connection", "").lower() == "close":
                pytest.fail("the 500 closes the connection")  # allowed, but not what we do
            # The next request goes over the very same socket and is answered.
            conn.request("GET", "/api/clients", headers=actor.headers)
            again = conn.getresponse()
            assert again.status == 200, again.read()
            assert orjson.loads(again.read())
            assert conn.sock is sock
    finally:
        conn.close()
