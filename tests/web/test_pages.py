"""The web pages over HTTP: login/logout with CSRF, session cookie flags, tenancy (404, no
leak), the grid tree and its partials, the sensor page, and no secret in any page."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database, now_ms
from besmart_server.server.users import security
from tests.api.sensor_helpers import ENERGY_METER, STATION, new_sensor, new_state
from tests.api.signal_helpers import moid, put
from tests.factories import Actor, make_client, make_tenant, make_user

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def web_login(client: TestClient, actor: Actor, next_: str = "/grid") -> str:
    """Log in through the form; returns the session cookie's token."""
    page = client.get("/login")
    assert page.status_code == 200
    match = CSRF_FIELD.search(page.text)
    assert match
    res = client.post(
        "/login",
        data={
            "csrf": match.group(1),
            "login": actor.login,
            "password": actor.password,
            "next": next_,
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    token = client.cookies.get(security.SESSION_COOKIE)
    assert token
    return token


def page_csrf(client: TestClient, path: str = "/grid") -> str:
    match = CSRF_FIELD.search(client.get(path).text)
    assert match
    return match.group(1)


@pytest.fixture
def tenant(db: Database) -> tuple[int, Actor]:
    return make_tenant(db)


def grid_of(client: TestClient, actor: Actor, cid: int) -> dict[str, dict[str, object]]:
    """A station → meter tree with a state, as the API makes them."""
    station = new_sensor(
        client, actor, cid, name="Station North", sensor_type_id=STATION, sensor_eid="ST-N-1"
    )
    meter = new_sensor(
        client,
        actor,
        cid,
        name="Meter Bakery",
        sensor_type_id=ENERGY_METER,
        sensor_eid="PPE-77",
        node_id=station["sensor_mid"],
    )
    new_state(
        client,
        actor,
        cid,
        meter["sensor_mid"],
        since=1_767_225_600_000,
        meter_eid="SN-4711",
        info='{"current_ratio": 40}',
    )
    return {"station": station, "meter": meter}


# --- login / logout -------------------------------------------------------------------------


def test_root_and_pages_send_anonymous_users_to_login(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    res = client.get("/grid", follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == "/login?next=%2Fgrid"
    res = client.get("/sensors/1.1?period=day", follow_redirects=False)
    assert res.headers["location"] == "/login?next=%2Fsensors%2F1.1%3Fperiod%3Dday"
    # htmx partials: 401 with HX-Redirect (htmx would otherwise swap the login page in)
    res = client.get("/grid/1/children?node=1", headers={"HX-Request": "true"})
    assert res.status_code == 401
    assert res.headers["HX-Redirect"].startswith("/login?next=")


def test_login_sets_httponly_strict_session_cookie(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    page = client.get("/login")
    assert "besmart_login_csrf" in page.headers["set-cookie"]
    csrf = CSRF_FIELD.search(page.text)
    assert csrf
    res = client.post(
        "/login",
        data={
            "csrf": csrf.group(1),
            "login": actor.login,
            "password": actor.password,
            "next": "/grid?client=5",
        },
        follow_redirects=False,
    )
    assert res.status_code == 303
    assert res.headers["location"] == "/grid?client=5"
    cookie = next(
        c for c in res.headers.get_list("set-cookie") if c.startswith(security.SESSION_COOKIE)
    )
    flags = cookie.lower()
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # plain http here; https sets Secure
    # the cookie is a token of the tokens table: the API accepts it as a bearer token too
    token = client.cookies.get(security.SESSION_COOKIE)
    me = client.get("/api/clients", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200


def test_secure_cookie_over_https(app: object, tenant: tuple[int, Actor]) -> None:
    _, actor = tenant
    with TestClient(app, base_url="https://testserver") as https:  # type: ignore[arg-type]
        page = https.get("/login")
        csrf = CSRF_FIELD.search(page.text)
        assert csrf
        res = https.post(
            "/login",
            data={"csrf": csrf.group(1), "login": actor.login, "password": actor.password},
            follow_redirects=False,
        )
        cookie = next(
            c for c in res.headers.get_list("set-cookie") if c.startswith(security.SESSION_COOKIE)
        )
        assert "secure" in cookie.lower()


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil", ""])
def test_login_never_redirects_off_site(
    client: TestClient, tenant: tuple[int, Actor], target: str
) -> None:
    _, actor = tenant
    page = client.get("/login")
    csrf = CSRF_FIELD.search(page.text)
    assert csrf
    res = client.post(
        "/login",
        data={
            "csrf": csrf.group(1),
            "login": actor.login,
            "password": actor.password,
            "next": target,
        },
        follow_redirects=False,
    )
    assert res.headers["location"] == "/grid"


def test_login_without_the_forms_csrf_token_is_refused(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    client.get("/login")
    res = client.post(
        "/login",
        data={"csrf": "forged", "login": actor.login, "password": actor.password},
        follow_redirects=False,
    )
    assert res.status_code == 403
    assert security.SESSION_COOKIE not in client.cookies


def test_wrong_password_shows_the_form_again_without_a_session(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    csrf = CSRF_FIELD.search(client.get("/login").text)
    assert csrf
    res = client.post(
        "/login", data={"csrf": csrf.group(1), "login": actor.login, "password": "nope"}
    )
    assert res.status_code == 401
    assert "Wrong login or password" in res.text
    assert security.SESSION_COOKIE not in client.cookies


def test_logout_needs_csrf_and_revokes_the_token(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    token = web_login(client, actor)
    res = client.post("/logout", data={"csrf": "wrong"}, follow_redirects=False)
    assert res.status_code == 403
    assert client.get("/grid", follow_redirects=False).status_code == 200  # still signed in
    res = client.post("/logout", data={"csrf": page_csrf(client)}, follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == "/login"
    revoked = client.get("/api/clients", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
    client.cookies.set(security.SESSION_COOKIE, token)  # a stolen cookie is dead too
    assert client.get("/grid", follow_redirects=False).status_code == 303


def test_cli_revoked_token_ends_the_session(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    from besmart_server.server.users import service as users

    _, actor = tenant
    token = web_login(client, actor)
    with db.transaction() as conn:
        assert users.revoke_token(conn, token)  # what `besmart token revoke` calls
    assert client.get("/grid", follow_redirects=False).status_code == 303


# --- the API with the session cookie ---------------------------------------------------------


def test_api_reads_with_the_cookie_and_changes_need_the_csrf_header(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    web_login(client, actor)
    assert client.get("/api/clients").status_code == 200
    params = {"client_cid": cid, "name": "via cookie"}
    res = client.post("/api/sensors", params=params)
    assert res.status_code == 403
    assert "CSRF" in res.text
    res = client.post("/api/sensors", params=params, headers={"X-CSRF-Token": "0" * 64})
    assert res.status_code == 403
    res = client.post("/api/sensors", params=params, headers={"X-CSRF-Token": page_csrf(client)})
    assert res.status_code == 201, res.text


# --- grid ------------------------------------------------------------------------------------


def test_grid_lists_own_clients_and_roots_with_lazy_children(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    other_cid, other = make_tenant(db)
    new_sensor(client, other, other_cid, name="Secret Substation")
    web_login(client, actor)
    page = client.get("/grid")
    assert page.status_code == 200
    assert "Station North" in page.text
    assert "Meter Bakery" not in page.text  # a child: fetched when the node opens
    assert "Secret Substation" not in page.text
    assert f"client={other_cid}" not in page.text
    station = g["station"]["sensor_mid"]
    part = client.get(f"/grid/{cid}/children", params={"node": station})
    assert part.status_code == 200
    assert "Meter Bakery" in part.text
    assert "meter SN-4711" in part.text  # the meter installed now
    assert "<html" not in part.text  # a fragment, not a page


@pytest.mark.parametrize(
    "path",
    [
        "/grid?client={other}",
        "/grid/{other}/children?node={mid}",
        "/grid/{other}/search?q=a",
        "/sensors/{other}.{mid}",
        "/sensors/{own}.{mid}",  # the other tenant's sensor under my client's cid
        "/sensors/{other}.{mid}/quality",
        "/sensors/{other}.{mid}/balance",
        "/grid/{own}/children?node={mid}",
    ],
)
def test_other_tenants_are_404_and_never_leak(
    client: TestClient, db: Database, tenant: tuple[int, Actor], path: str
) -> None:
    cid, actor = tenant
    other_cid, other = make_tenant(db)
    mid = new_sensor(client, other, other_cid, name="Secret Substation")["sensor_mid"]
    web_login(client, actor)
    res = client.get(path.format(other=other_cid, own=cid, mid=mid))
    assert res.status_code == 404
    assert "Secret Substation" not in res.text


def test_search_by_name_eid_meter_serial_and_type(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    grid_of(client, actor, cid)
    web_login(client, actor)

    def names(**params: object) -> list[str]:
        res = client.get(f"/grid/{cid}/search", params=params)
        assert res.status_code == 200
        return re.findall(r'class="node-name"[^>]*>([^<]+)<', res.text)

    assert names(q="bakery") == ["Meter Bakery"]
    assert names(q="ppe-77") == ["Meter Bakery"]
    assert names(q="sn-47") == ["Meter Bakery"]  # meter serial of an installation period
    assert names(q="st-n") == ["Station North"]
    assert names(type=str(STATION)) == ["Station North"]
    assert names(q="bakery", type=str(STATION)) == []
    assert names(q="") == ["Station North"]  # empty search: the roots again


def test_freshness_badge_from_the_newest_measured_point(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    station = g["station"]["sensor_mid"]
    now = now_ms()
    put(
        client,
        actor.headers,
        cid,
        station,
        moid("P+"),
        {"time": [now - 10 * 60_000], "value": [1.0]},
    )
    web_login(client, actor)
    page = client.get("/grid").text
    assert re.search(r'class="badge fresh"[^>]*>(\d+) min<', page)
    part = client.get(f"/grid/{cid}/children", params={"node": station}).text
    assert 'class="badge none"' in part  # the meter has no measured point
    # a predicted point does not make a node fresh
    meter = g["meter"]["sensor_mid"]
    put(
        client,
        actor.headers,
        cid,
        meter,
        moid("P+"),
        {"time": [now], "value": [2.0], "origin": [2]},
    )
    part = client.get(f"/grid/{cid}/children", params={"node": station}).text
    assert 'class="badge none"' in part


# --- sensor page -----------------------------------------------------------------------------


def test_sensor_page_shows_properties_periods_and_a_chart_per_drawn_signal(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    mid = g["meter"]["sensor_mid"]
    t = 1_767_225_600_000
    put(client, actor.headers, cid, mid, moid("A+"), {"time": [t, t + 900_000], "value": [1, 2]})
    put(client, actor.headers, cid, mid, moid("P+"), {"time": [t], "value": [1.5]})
    web_login(client, actor)
    res = client.get(f"/sensors/{cid}.{mid}", params={"period": "day", "start": "2026-01-01"})
    assert res.status_code == 200
    html = res.text
    assert "Meter Bakery" in html
    assert "PPE-77" in html
    assert "SN-4711" in html
    assert "current_ratio 40" in html
    assert "Station North" in html  # breadcrumb and parent
    charts = re.findall(r'data-moid="(\d+)"', html)
    assert sorted(map(int, charts)) == sorted([moid("A+"), moid("P+")])
    # each chart takes the keyboard focus (arrow keys and Enter reach the points' versions)
    assert html.count('class="chart" role="img" tabindex="0"') == 2
    assert f'data-since="{t}"' in html
    assert f'data-till="{t + 86_400_000}"' in html
    # the time control is in the URL: prev/next/presets are links with the period
    assert "period=day&amp;start=2025-12-31" in html
    assert "period=day&amp;start=2026-01-02" in html


def test_a_forecasts_p10_and_p90_are_its_band_not_charts_of_their_own(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    t = 1_767_225_600_000
    for symbol in ("EA+", "EA+_P10", "EA+_P90"):
        body = {"time": [t], "value": [1.0], "origin": [2]}
        put(client, actor.headers, cid, mid, moid(symbol), body)
    web_login(client, actor)
    html = client.get(f"/sensors/{cid}.{mid}", params={"period": "day", "start": "2026-01-01"})
    assert re.findall(r'data-moid="(\d+)"', html.text) == [str(moid("EA+"))]
    assert f'data-band="{moid("EA+_P10")},{moid("EA+_P90")}"' in html.text
    # a P10 without its forecast and P90 is charted alone
    other = new_sensor(client, actor, cid, name="Lone band", sensor_type_id=ENERGY_METER)
    put(
        client,
        actor.headers,
        cid,
        other["sensor_mid"],
        moid("P_PV_P10"),
        {"time": [t], "value": [1]},
    )
    html = client.get(f"/sensors/{cid}.{other['sensor_mid']}")
    assert re.findall(r'data-moid="(\d+)"', html.text) == [str(moid("P_PV_P10"))]
    assert "data-band" not in html.text


def test_sensor_page_as_of_and_compare_go_to_the_charts(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    put(client, actor.headers, cid, mid, moid("P+"), {"time": [1_767_225_600_000], "value": [1]})
    web_login(client, actor)
    res = client.get(
        f"/sensors/{cid}.{mid}",
        params={
            "period": "week",
            "start": "2026-01-07",
            "as_of": "2026-01-05T12:30",
            "compare": "1",
        },
    )
    assert res.status_code == 200
    assert 'data-as-of="1767616200000"' in res.text
    assert 'data-compare="1"' in res.text
    assert "as known at 2026-01-05 12:30 UTC" in res.text
    assert 'data-since="1767571200000"' in res.text  # the week snaps to Monday 2026-01-05


def test_no_secret_in_any_page(client: TestClient, db: Database, tenant: tuple[int, Actor]) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    token = web_login(client, actor)
    mid = g["meter"]["sensor_mid"]
    pages = [
        "/grid",
        f"/grid/{cid}/children?node={g['station']['sensor_mid']}",
        f"/grid/{cid}/search?q=a",
        f"/sensors/{cid}.{mid}",
        f"/sensors/{cid}.{mid}/quality",
        f"/sensors/{cid}.{g['station']['sensor_mid']}/balance",
        "/sensors/999.999",
    ]
    for path in pages:
        html = client.get(path).text
        assert token not in html, path
        assert actor.password not in html, path
        assert security.digest(token) not in html, path
    assert actor.token not in client.get("/grid").text


def test_page_headers_forbid_other_hosts_and_framing(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    web_login(client, actor)
    res = client.get("/grid")
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "http" not in csp  # no other host allowed
    assert res.headers["cache-control"] == "no-store"
    assert "https://" not in res.text  # no CDN, no other host
    assert "http://" not in res.text
    # the API keeps its own strict policy
    assert (
        client.get("/api/clients")
        .headers["content-security-policy"]
        .startswith("default-src 'none'")
    )


def test_vendored_files_match_their_recorded_sha256(client: TestClient) -> None:
    vendor = Path(__file__).parents[2] / "src/besmart_server/web/static/vendor"
    lines = [
        ln.split()
        for ln in (vendor / "VERSIONS").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert {ln[0] for ln in lines} == {"echarts.min.js", "htmx.min.js"}
    for name, _pkg, sha, _licence in lines:
        res = client.get(f"/static/vendor/{name}")
        assert res.status_code == 200
        assert hashlib.sha256(res.content).hexdigest() == sha
        assert (vendor / f"{name}.LICENSE").stat().st_size > 100
        assert res.headers["cache-control"] == "no-cache"  # kept, revalidated by ETag
        again = client.get(f"/static/vendor/{name}", headers={"If-None-Match": res.headers["etag"]})
        assert again.status_code == 304


def test_a_read_only_user_sees_pages_too(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    reader = make_user(db, roles={cid: Role.read})
    web_login(client, reader)
    assert client.get(f"/sensors/{cid}.{g['meter']['sensor_mid']}").status_code == 200


def test_user_without_clients_gets_an_empty_grid(client: TestClient, db: Database) -> None:
    make_client(db)
    lonely = make_user(db)
    web_login(client, lonely)
    res = client.get("/grid")
    assert res.status_code == 200
    assert "No clients" in res.text


def test_weather_overlay_reads_the_weather_route_with_the_cookie(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    placed = new_sensor(client, actor, cid, name="Placed", lat=50.06, lon=19.94)
    unplaced = new_sensor(client, actor, cid, name="Nowhere")
    for sensor in (placed, unplaced):  # a charted signal each
        put(
            client,
            actor.headers,
            cid,
            sensor["sensor_mid"],
            moid("P+"),
            {"time": [1_767_225_600_000], "value": [1.0]},
        )
    url = "/api/weather/50.06/19.94/139/data"
    params = {"since": 1_767_225_600_000, "till": 1_767_312_000_000}
    assert client.get(url, params=params).status_code == 401
    web_login(client, actor)
    assert client.get(url, params=params).status_code != 401
    html = client.get(
        f"/sensors/{cid}.{placed['sensor_mid']}", params={"weather": "temperature"}
    ).text
    assert 'data-weather-url="/api/weather/50.06/19.94/139/data"' in html
    assert 'name="weather"' in html
    html = client.get(
        f"/sensors/{cid}.{unplaced['sensor_mid']}", params={"weather": "temperature"}
    ).text
    assert "data-weather-url" not in html
    assert 'name="weather"' not in html  # no lat/lon: no overlay to offer


def test_quality_page_has_a_heatmap_per_charted_signal(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    put(client, actor.headers, cid, mid, moid("P+"), {"time": [1_767_225_600_000], "value": [1]})
    web_login(client, actor)
    res = client.get(
        f"/sensors/{cid}.{mid}/quality", params={"period": "year", "start": "2026-01-01"}
    )
    assert res.status_code == 200
    assert re.findall(r'class="heatmap"[^>]*data-moid="(\d+)"', res.text) == [str(moid("P+"))]
    assert 'aria-current="page">Data quality' in res.text
    assert f'href="/sensors/{cid}.{mid}?period=year&amp;start=2026-01-01&amp;tz=UTC"' in res.text
    assert client.get(f"/sensors/{cid}.{mid}/quality", follow_redirects=False).status_code == 200
    client.cookies.clear()
    assert client.get(f"/sensors/{cid}.{mid}/quality", follow_redirects=False).status_code == 303


def test_validation_flags_reach_the_quality_page_and_charts_with_the_cookie(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    """The heatmap's diamonds and the charts' flag spans read the public quality route with the
    session cookie (a GET: no CSRF header); another tenant's series is a 404 there too."""
    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    t0, q = 1_767_225_600_000, 900_000
    times = [t0 + i * q for i in range(96) if not 40 <= i < 60]  # a 5-hour gap
    values = [1.0 + (i % 7) / 10 for i in range(len(times))]  # not flat
    put(client, actor.headers, cid, mid, moid("P+"), {"time": times, "value": values})
    window = {"since": t0, "till": t0 + 96 * q}
    url = f"/api/sensors/{cid}.{mid}/signals/{moid('P+')}/quality"
    assert client.post(url + "/run", params=window, headers=actor.headers).status_code == 200
    web_login(client, actor)
    page = client.get(
        f"/sensors/{cid}.{mid}/quality", params={"period": "day", "start": "2026-01-01"}
    )
    assert 'class="flag-list"' in page.text
    res = client.get(url, params=window)
    assert res.status_code == 200
    assert [(e["rule"], e["since"]) for e in res.json()["events"]] == [("gap", t0 + 40 * q)]
    other_cid, _ = make_tenant(db)
    other = client.get(url.replace(f"/{cid}.", f"/{other_cid}."), params=window)
    assert other.status_code == 404


def test_balance_page_of_a_node_with_children(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    g = grid_of(client, actor, cid)
    station, meter = g["station"]["sensor_mid"], g["meter"]["sensor_mid"]
    t = 1_767_225_600_000
    for mid in (station, meter):
        put(client, actor.headers, cid, mid, moid("P+"), {"time": [t], "value": [1.0]})
        put(client, actor.headers, cid, mid, moid("U1"), {"time": [t], "value": [230.0]})
    web_login(client, actor)
    res = client.get(f"/sensors/{cid}.{station}/balance", params={"period": "day"})
    assert res.status_code == 200
    assert f'data-moid="{moid("P+")}"' in res.text  # P+ preferred over U1
    assert 'data-delta-t="15"' in res.text
    kids = re.search(r'data-children="([^"]*)"', res.text)
    assert kids
    assert f"&#34;mid&#34;: {meter}" in kids.group(1)
    res = client.get(
        f"/sensors/{cid}.{station}/balance", params={"period": "day", "signal": moid("U1")}
    )
    assert f'data-moid="{moid("U1")}"' in res.text
    # the tab is offered only where there is something below
    assert ">Balance</a>" in client.get(f"/sensors/{cid}.{station}").text
    assert ">Balance</a>" not in client.get(f"/sensors/{cid}.{meter}").text


def test_thousands_of_children_come_a_page_at_a_time(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    from sqlalchemy import insert

    from besmart_server.server.sensors.tables import sensors
    from besmart_server.web.service import TREE_PAGE

    cid, actor = tenant
    station = new_sensor(client, actor, cid, name="Big feeder")["sensor_mid"]
    n = 2000
    with db.transaction() as conn:
        conn.execute(
            insert(sensors),
            [
                {"client_cid": cid, "name": f"meter {i:05d}", "node_id": station, "created_at": 0}
                for i in range(n)
            ],
        )
    web_login(client, actor)
    seen: list[str] = []
    url: str | None = f"/grid/{cid}/children?node={station}"
    while url:
        res = client.get(url)
        assert res.status_code == 200
        names = re.findall(r'class="node-name"[^>]*>([^<]+)<', res.text)
        assert len(names) <= TREE_PAGE
        seen += names
        more = re.search(r'hx-get="([^"]+)"[^>]*>more', res.text)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert seen == [f"meter {i:05d}" for i in range(n)]


def test_time_zone_in_the_url_sets_the_window_and_labels(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    put(client, actor.headers, cid, mid, moid("P+"), {"time": [1_767_225_600_000], "value": [1]})
    web_login(client, actor)
    html = client.get(
        f"/sensors/{cid}.{mid}",
        params={"period": "day", "start": "2026-01-01", "tz": "Europe/Warsaw"},
    ).text
    assert 'data-since="1767222000000"' in html  # local midnight = 23:00Z the day before
    assert 'data-tz="Europe/Warsaw"' in html
    assert "2026-01-01 00:00 Europe/Warsaw" in html
    assert "tz=Europe%2FWarsaw" in html  # kept in prev/next and presets
    assert "2026-01-01 01:00 Europe/Warsaw" in html  # the meter installed at 00:00Z, local
    html = client.get(f"/sensors/{cid}.{mid}", params={"period": "day", "tz": "No/Such"}).text
    assert 'data-tz="UTC"' in html


def test_the_clients_time_zone_is_the_default(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    from besmart_server.server.users.tables import clients

    cid, actor = tenant
    mid = grid_of(client, actor, cid)["meter"]["sensor_mid"]
    put(client, actor.headers, cid, mid, moid("P+"), {"time": [1_767_225_600_000], "value": [1]})
    with db.transaction() as conn:
        conn.execute(clients.update().where(clients.c.cid == cid).values(timezone="Europe/Warsaw"))
    web_login(client, actor)
    html = client.get(f"/sensors/{cid}.{mid}", params={"period": "day", "start": "2026-01-01"}).text
    assert 'data-tz="Europe/Warsaw"' in html
    assert 'data-since="1767222000000"' in html
    html = client.get(
        f"/sensors/{cid}.{mid}", params={"period": "day", "start": "2026-01-01", "tz": "UTC"}
    ).text
    assert 'data-tz="UTC"' in html  # the URL wins


@pytest.mark.parametrize(
    "path",
    [
        "/grid/{big}/children",
        "/grid/{own}/children?node={big}",
        "/grid/{big}/search?q=x",
        "/sensors/{big}.1",
        "/sensors/{own}.{big}",
        "/sensors/{own}.{big}/quality",
        "/sensors/{big}.1/balance",
        "/admin/{big}",
    ],
)
def test_ids_beyond_32_bits_are_a_client_error(
    client: TestClient, tenant: tuple[int, Actor], path: str
) -> None:
    """Ids are 32-bit in the database: a larger one in a page's URL is a 4xx on both engines
    (PostgreSQL's driver raised an overflow: a 500)."""
    cid, actor = tenant
    web_login(client, actor)
    res = client.get(path.format(own=cid, big=2**40))
    assert 400 <= res.status_code < 500, res.text


def test_sensor_pages_at_the_ends_of_the_calendar_answer_200(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    """A hand-edited URL at year 1 or 9999 shows this week (the time control's fallback)
    instead of a 500 (issue #14: no 5xx for any bad value, found on the pages added since)."""
    cid, actor = tenant
    web_login(client, actor)
    mid = new_sensor(client, actor, cid, name="edge", sensor_type_id=ENERGY_METER)["sensor_mid"]
    for q in (
        "period=day&start=9999-12-31",
        "period=year&start=9999-06-01",
        "period=custom&since=0001-01-01T00:00&till=9999-12-31T00:00",
    ):
        for page in ("", "/quality", "/balance"):
            res = client.get(f"/sensors/{cid}.{mid}{page}?{q}")
            assert res.status_code == 200, (page, q, res.text[:200])
