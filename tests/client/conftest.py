"""Fixtures for the client tests: `Client` against the real app and database, in process.

`AppTransport` hands each httpx request to the app through Starlette's TestClient (which
speaks httpx2), so the client's own HTTP code, the app and the database all run for real."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from besmart_server.client import Client
from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.factories import Actor, make_tenant

BASE = "http://testserver"


class AppTransport(httpx.BaseTransport):
    """An httpx transport that answers from the ASGI app behind a TestClient."""

    def __init__(self, test_client: TestClient) -> None:
        self.test_client = test_client
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        res = self.test_client.request(
            request.method,
            str(request.url),
            content=request.read(),
            headers=list(request.headers.multi_items()),
        )
        return httpx.Response(
            res.status_code, headers=list(res.headers.multi_items()), content=res.content
        )


@pytest.fixture
def transport(client: TestClient) -> AppTransport:
    return AppTransport(client)


@pytest.fixture
def tenant(db: Database) -> tuple[int, Actor]:
    return make_tenant(db, Role.owner)


@pytest.fixture
def bs(transport: AppTransport, tenant: tuple[int, Actor]) -> Iterator[Client]:
    """A client logged in (on first use) as the owner of `tenant`."""
    _, actor = tenant
    with Client(
        BASE, login=actor.login, password=actor.password, transport=transport, backoff=0
    ) as c:
        yield c
