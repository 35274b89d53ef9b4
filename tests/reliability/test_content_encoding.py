"""Content-Encoding: gzip bodies are decoded (meters on slow links send them) within
max_body_bytes, compressed and decompressed; a gzip bomb is a 413 without being inflated;
any other coding is a 415."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from tests.api.signal_helpers import T0, Q, data_url, make_sensor, moid
from tests.factories import Actor, make_tenant

LIMIT = 65_536


@pytest.fixture
def app_client(database_url: str, db: Database) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, demo=False, max_body_bytes=LIMIT)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db)
    return cid, make_sensor(db, cid), actor


def _series(n: int) -> dict[str, list[Any]]:
    return {"time": [T0 + i * Q for i in range(n)], "value": [float(i) for i in range(n)]}


def _put(c: TestClient, owner: tuple[int, int, Actor], body: bytes, coding: str) -> Any:
    cid, mid, actor = owner
    headers = {**actor.headers, "Content-Type": "application/json", "Content-Encoding": coding}
    return c.put(data_url(cid, mid, moid("P+")), content=body, headers=headers)


def _stored(c: TestClient, owner: tuple[int, int, Actor]) -> list[float]:
    cid, mid, actor = owner
    res = c.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + 10_000 * Q},
        headers=actor.headers,
    )
    assert res.status_code == 200, res.text
    values: list[float] = res.json()["data"]["value"]
    return values


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZIP", "identity, gzip"])
def test_gzip_body_is_decoded_and_stored(
    app_client: TestClient, owner: tuple[int, int, Actor], coding: str
) -> None:
    res = _put(app_client, owner, gzip.compress(orjson.dumps(_series(96))), coding)
    assert res.status_code == 200, res.text
    assert _stored(app_client, owner) == [float(i) for i in range(96)]


def test_gzip_login(app_client: TestClient, db: Database) -> None:
    _cid, actor = make_tenant(db)
    body = gzip.compress(orjson.dumps({"login": actor.login, "password": actor.password}))
    res = app_client.post("/api/users/token", content=body, headers={"Content-Encoding": "gzip"})
    assert res.status_code == 200, res.text
    assert res.json()["token"]


def test_several_gzip_members_are_one_body(
    app_client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    raw = orjson.dumps(_series(50))
    res = _put(app_client, owner, gzip.compress(raw[:100]) + gzip.compress(raw[100:]), "gzip")
    assert res.status_code == 200, res.text
    assert len(_stored(app_client, owner)) == 50


def test_decompressed_size_over_the_limit_is_413(
    app_client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    raw = orjson.dumps(_series(5000))
    assert len(raw) > LIMIT
    body = gzip.compress(raw)
    assert len(body) < LIMIT
    res = _put(app_client, owner, body, "gzip")
    assert res.status_code == 413, res.text
    assert res.json()["detail"] == f"Decompressed request body larger than {LIMIT} bytes " + (
        "(max_body_bytes)"
    )
    assert _stored(app_client, owner) == []


def _bomb(zeros: int) -> bytes:
    """gzip of `zeros` zero bytes, made without holding them (about zeros / 1000 bytes)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(zeros >> 20)]
    return b"".join([*parts, c.flush()])


def test_gzip_bomb_is_413_without_inflating_it(
    app_client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    body = _bomb(60 << 20)  # 60 MiB of zeros in ~60 KiB
    assert len(body) < LIMIT
    tracemalloc.start()
    try:
        res = _put(app_client, owner, body, "gzip")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.status_code == 413, res.text
    assert "Decompressed request body larger than" in res.json()["detail"]
    # At most the limit is inflated: far below the bomb's 60 MiB.
    assert peak < 8 * LIMIT + (2 << 20), peak


def test_compressed_body_over_the_limit_is_413(
    app_client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    body = _bomb(80 << 20)
    assert len(body) > LIMIT
    res = _put(app_client, owner, body, "gzip")
    assert res.status_code == 413, res.text
    assert res.json()["detail"] == f"Request body larger than {LIMIT} bytes (max_body_bytes)"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"time": [], "value": []}', "body is not gzip"),
        (gzip.compress(b'{"time": [], "value": []}')[:-12], "body is truncated"),
    ],
    ids=["plain", "truncated"],
)
def test_broken_gzip_is_400(
    app_client: TestClient, owner: tuple[int, int, Actor], body: bytes, why: str
) -> None:
    res = _put(app_client, owner, body, "gzip")
    assert res.status_code == 400, res.text
    assert why in res.json()["detail"]


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, gzip", "gzip, br"])
def test_other_codings_are_415(
    app_client: TestClient, owner: tuple[int, int, Actor], coding: str
) -> None:
    res = _put(app_client, owner, orjson.dumps(_series(4)), coding)
    assert res.status_code == 415, res.text
    assert res.json()["detail"].startswith("Content-Encoding ")
    assert "not supported" in res.json()["detail"]
    assert _stored(app_client, owner) == []
