"""The graphs pages: list with template parameters, a graph's run form, runs in the request
and queued (state polled), CSRF, and runs visible only to who made them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from besmart_server.web.graphs import body_skeleton, template_params
from tests.api.signal_helpers import moid, put
from tests.factories import make_tenant
from tests.web.test_pages import grid_of, page_csrf, web_login

T0 = 1_767_225_600_000


def test_template_params_and_body_skeleton() -> None:
    definition = {
        "nodes": [
            {
                "function": "a",
                "params": {"x": {"$param": "client_cid"}, "y": [{"$param": "p.k", "default": 3}]},
            },
            {"function": "b", "params": {"z": {"$param": "p.k", "default": 3}}},
        ]
    }
    params = template_params(definition)
    assert params == [
        {"path": "client_cid", "required": True, "default": None},
        {"path": "p.k", "required": False, "default": 3},
    ]
    assert body_skeleton(params) == {"client_cid": None, "p": {"k": 3}}


def test_graphs_list_and_form(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    web_login(client, actor)
    page = client.get("/graphs")
    assert page.status_code == 200
    for name in ("balance", "pv_forecast", "load_forecast"):
        assert f'href="/graphs/{name}"' in page.text
    assert "<code>node_mid</code> <strong>required</strong>" in page.text
    form = client.get("/graphs/balance")
    assert form.status_code == 200
    assert f"&#34;client_cid&#34;: {cid}" in form.text  # prefilled with the user's client
    assert 'hx-post="/graphs/balance/run"' in form.text
    assert client.get("/graphs/no-such-graph").status_code == 404


def test_run_in_the_request_and_queued(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    g = grid_of(client, actor, cid)
    station, meter = g["station"]["sensor_mid"], g["meter"]["sensor_mid"]
    times = [T0 + i * 900_000 for i in range(8)]
    put(client, actor.headers, cid, station, moid("P+"), {"time": times, "value": [3.0] * 8})
    put(client, actor.headers, cid, meter, moid("P+"), {"time": times, "value": [2.0] * 8})
    residual = client.post(
        "/api/sensors", params={"client_cid": cid, "name": "residual"}, headers=actor.headers
    ).json()["sensor_mid"]
    web_login(client, actor)
    body = (
        f'{{"client_cid": {cid}, "node_mid": {station}, "residual_sensor_mid": {residual}, '
        f'"moid": {moid("P+")}}}'
    )
    form = {"since": "2026-01-01T00:00", "till": "2026-01-01T02:00", "body": body, "mode": "sync"}
    res = client.post("/graphs/balance/run", data=form)
    assert res.status_code == 403  # no CSRF token
    csrf = page_csrf(client)
    res = client.post("/graphs/balance/run", data=form, headers={"X-CSRF-Token": csrf})
    assert res.status_code == 201, res.text
    assert 'data-state="done"' in res.text
    # the residual sensor was written; its page over the run's window is one click away
    link = re.search(rf'href="(/sensors/{cid}\.{residual}\?period=custom[^"]*)"', res.text)
    assert link
    # the run's window is in UTC, whatever the client's time zone
    assert link.group(1).startswith(
        f"/sensors/{cid}.{residual}?period=custom&amp;since=2026-01-01T00:00"
    )
    assert link.group(1).endswith("&amp;tz=UTC")
    res = client.post(
        "/graphs/balance/run", data={**form, "body": "{not json"}, headers={"X-CSRF-Token": csrf}
    )
    assert res.status_code == 422
    assert "not JSON" in res.text
    res = client.post(
        "/graphs/balance/run", data={**form, "mode": "async"}, headers={"X-CSRF-Token": csrf}
    )
    assert res.status_code == 202, res.text
    run_id = re.search(r'hx-get="/graphs/runs/(\d+)"', res.text) or re.search(
        r"run #(\d+)", res.text
    )
    assert run_id
    runs = client.get("/graphs").text
    assert f'href="/graphs/runs/{run_id.group(1)}"' in runs
    state = client.get(f"/graphs/runs/{run_id.group(1)}")
    assert state.status_code == 200
    assert re.search(r'data-state="(queued|running|done)"', state.text)
    # another user does not see the run
    _, other = make_tenant(db)
    client.cookies.clear()
    web_login(client, other)
    assert client.get(f"/graphs/runs/{run_id.group(1)}").status_code == 404
    assert f"/graphs/runs/{run_id.group(1)}" not in client.get("/graphs").text


def test_a_run_id_beyond_the_ids_is_422_not_500(client: TestClient, db: Database) -> None:
    """The run page's id is bounded as the API's is (2**70 reached the database: a 500)."""
    _, actor = make_tenant(db)
    web_login(client, actor)
    for run_id in ("99999999999999999999", "-1", "2147483648"):
        res = client.get(f"/graphs/runs/{run_id}")
        assert res.status_code == 422, (run_id, res.text[:200])
    assert client.get("/graphs/runs/2147483647").status_code == 404
