"""Property-based fuzzing of every route of our own OpenAPI document (schemathesis).

Each operation is one test: a tenant with sensors, states, signal states, a meter type and
signal data is seeded, then schemathesis generates valid and invalid requests, sent as that
tenant's owner. Half of the examples have their ids swapped for the tenant's real ones, so
the generated requests reach existing rows instead of 404s. Checks on every response: no
server error, the status code is one the route declares, the body matches the declared
schema, and the content type is the declared one.

BESMART_FUZZ_EXAMPLES sets the examples per operation and generation mode (CI: 10; a long
run: `BESMART_FUZZ_EXAMPLES=500 BESMART_FUZZ_LOG=fuzz.jsonl .venv/bin/pytest
tests/reliability/test_fuzz.py -n 2`, with `--db-url postgresql://...` for PostgreSQL).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.users import service as users
from tests.reliability.world import T0, Tenant, seed_tenant

EXAMPLES = int(os.environ.get("BESMART_FUZZ_EXAMPLES", "10"))
# A file to which each operation's run appends a JSON line: requests sent, statuses seen.
LOG = os.environ.get("BESMART_FUZZ_LOG")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


def _openapi() -> dict[str, Any]:
    # The document does not depend on the database: the app is only built, never started.
    return create_app(Settings(database_url="sqlite://", demo=False)).openapi()


SCHEMA = schemathesis.openapi.from_dict(_openapi())
OPERATIONS = sorted(
    ((op.method.upper(), op.path) for op in (r.ok() for r in SCHEMA.get_all_operations())),
    key=lambda mp: (mp[1], mp[0]),
)


@dataclass
class Counter:
    """Requests sent and statuses seen by one operation's run."""

    requests: int = 0
    statuses: dict[int, int] | None = None

    def add(self, status: int) -> None:
        self.requests += 1
        self.statuses = self.statuses or {}
        self.statuses[status] = self.statuses.get(status, 0) + 1


@pytest.fixture
def fuzz_client(app: FastAPI) -> Iterator[TestClient]:
    """A client that returns 500s as responses (the check reports them) instead of raising."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def tenant(fuzz_client: TestClient, db: Database) -> Tenant:
    return seed_tenant(fuzz_client, db, marker="fuzz", rng=random.Random(7))


def _real_ids(t: Tenant, choice: int) -> dict[str, Any]:
    mid = t.sensor_mids[choice % len(t.sensor_mids)]
    return {
        "client_cid": t.cid,
        "sensor_mid": mid,
        "signal_type_moid": t.series[0][1],
        "sensor_state_id": t.state_ids[choice % len(t.state_ids)],
        "signal_state_id": t.signal_state_ids[choice % len(t.signal_state_ids)],
        "meter_type_id": t.meter_type_ids[0] if t.meter_type_ids else 1,
        "meter_dev": t.meter_eids[choice % len(t.meter_eids)],
        "name": t.graph_names[0] if choice % 2 else "balance",
        "graph_name": t.graph_names[0] if choice % 2 else "balance",
        "run_id": t.run_ids[0],
        "lat": 50.0,
        "lon": 20.0,
        "since": T0,
        "till": T0 + 86_400_000,
    }


def _use_real_ids(case: Any, ids: dict[str, Any], mask: int) -> None:
    """Each id the request names becomes a real one where its bit in `mask` is set, so a
    real client with a generated sensor, or a real sensor with a generated window, is tried."""
    bit = {name: 1 << i for i, name in enumerate(sorted(ids))}

    def swap(container: dict[str, Any]) -> None:
        for name in list(container):
            if name in ids and mask & bit[name]:
                container[name] = ids[name]

    for container in (case.path_parameters, case.query):
        if container:
            swap(container)
    body = case.body
    if isinstance(body, list):
        for item in body:
            if isinstance(item, dict):
                swap(item)


def _send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    method, url = kw.pop("method"), kw.pop("url")
    data = kw.pop("data", None)
    if isinstance(data, bytes | str):
        kw["content"] = data
    elif data is not None:
        kw["data"] = data
    files = kw.pop("files", None)
    if files:
        kw["files"] = files
    allowed = {"params", "headers", "json", "content", "data", "files"}
    return client.request(method, url, **{k: v for k, v in kw.items() if k in allowed})


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(
    method: str, path: str, fuzz_client: TestClient, db: Database, tenant: Tenant
) -> None:
    """Valid and invalid requests to one route: no 500, declared statuses, declared schemas."""
    operation = SCHEMA[path][method]
    counter = Counter()
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=2 * EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, mask=st.integers(0, 2**16 - 1), choice=st.integers(0, 3))
    def run(case: Any, mask: int, choice: int) -> None:
        if choice:  # three in four examples name some of the tenant's real ids
            _use_real_ids(case, _real_ids(tenant, choice), mask)
        token = tenant.owner.token
        if method == "DELETE" and path == "/api/users/token":
            # Revoking would log the tenant out for the rest of the run: a throwaway token.
            with db.transaction() as conn:
                token = users.issue_token(conn, user_id=tenant.owner.user_id, ttl_seconds=600).token
        headers = {"Authorization": f"Bearer {token}"}
        if "/api/weather/" in path and mask % 3 == 0:
            headers = {"X-Auth": tenant.api_key}
        try:
            response = _send(fuzz_client, case, headers)
        except Exception as exc:
            # The HTTP client itself refuses some generated requests (a URL over 64 KiB).
            if type(exc).__name__ == "InvalidURL":
                reject()
            raise
        counter.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    print(f"fuzz {method} {path}: {counter.requests} requests, statuses {counter.statuses}")
    if LOG:
        line = {"op": f"{method} {path}", "requests": counter.requests, **(counter.statuses or {})}
        with open(LOG, "a") as f:
            f.write(json.dumps(line) + "\n")


H = 2**64
FOUND: list[tuple[str, str, dict[str, Any], Any, int]] = [
    # (method, url with {cid}/{mid}, query, json body, status): each answered 500 once.
    ("POST", "/api/users/token", {}, "not an object", 422),  # undeclared 422
    ("POST", "/api/sensors/signals/data/v2", {}, {"not": "a list"}, 422),  # undeclared 422
    ("PUT", "/api/sensors/{cid}.{mid}/signals/32/data/v2", {}, {"time": [-(2.0**63)]}, 422),
    ("GET", f"/api/tasks/runs/{H}", {}, None, 422),
    ("GET", f"/api/sensors/{{cid}}.{H}/signals/{H}/data", {"since": 0, "till": 9}, None, 422),
    ("GET", "/api/sensors/{cid}.{mid}/signals/cap", {"signal_type_moid": H}, None, 422),
    ("GET", "/api/sensors/{cid}.{mid}/signals/32/data", {"since": -H - 9, "till": -H}, None, 422),
    (
        "GET",
        "/api/sensors/{cid}.{mid}/signals/32/data",
        {"since": 2**63 - 5, "till": 2**63 - 1, "delta_t": 1},
        None,
        422,
    ),
    (
        "POST",
        "/api/sensors/signals/data/v2",
        {},
        [{"client_cid": "{cid}", "sensor_mid": "{mid}", "signal_type_moid": 32, "since": H}],
        422,
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "query", "body", "status"),
    FOUND,
    ids=[f"{m} {u} {q}" for m, u, q, _b, _s in FOUND],
)
def test_found_by_fuzzing(
    fuzz_client: TestClient,
    tenant: Tenant,
    method: str,
    url: str,
    query: dict[str, Any],
    body: Any,
    status: int,
) -> None:
    """Each request that once answered 500 (or an undeclared status) now answers `status`."""
    ids = {"cid": tenant.cid, "mid": tenant.sensor_mids[0]}
    url = url.format(**ids)
    if isinstance(body, list):
        body = [
            {k: int(str(v).format(**ids)) if isinstance(v, str) else v for k, v in item.items()}
            for item in body
        ]
    if isinstance(body, list) and body and "since" in body[0]:
        body[0]["till"] = body[0]["since"] + 5
    res = fuzz_client.request(method, url, params=query, json=body, headers=tenant.owner.headers)
    assert res.status_code == status, res.text
    path = next(
        p for p in SCHEMA.raw_schema["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), url)
    )
    assert str(status) in SCHEMA.raw_schema["paths"][path][method.lower()]["responses"]
