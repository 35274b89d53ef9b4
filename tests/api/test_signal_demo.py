"""The demo month of signal data, read back through the API."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database, now_ms
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.sensors import demo as sensors_demo
from besmart_server.server.signals import demo
from besmart_server.server.users import service as users
from tests.api.signal_helpers import get, moid
from tests.factories import Actor, make_user

DAY = 86_400_000


@pytest.fixture
def demo_data(db: Database) -> tuple[DemoInfo, Actor, float]:
    with db.transaction() as conn:
        cid = users.create_client(conn, name="demo")
        info = DemoInfo(client_cid=cid, login="demo", password="x")
        sensors_demo.load(conn, info)
        started = time.perf_counter()
        demo.load(conn, info)
        elapsed = time.perf_counter() - started
    return info, make_user(db, roles={cid: Role.read}), elapsed


def test_demo_month_is_there_and_plausible(
    client: TestClient, demo_data: tuple[DemoInfo, Actor, float]
) -> None:
    info, reader, elapsed = demo_data
    assert elapsed < 20
    cid, s = info.client_cid, info.sensors
    end = now_ms() // DAY * DAY
    start = end - 30 * DAY
    pv = get(client, reader.headers, cid, s["pv"], moid("P_PV"), start, end, get_last=True)
    values = np.array(pv["data"]["value"])
    assert values.shape[0] == 30 * 96
    assert values.min() == 0.0  # nights
    assert 0.5 < values.max() <= 9.8
    u1 = get(client, reader.headers, cid, s["meter_1"], moid("U1"), start, end, delta_t=1440)
    assert len(u1["data"]["value"]) == 30
    assert all(225 < v < 236 for v in u1["data"]["value"])
    p_raw = get(client, reader.headers, cid, s["meter_1"], moid("P+"), start, start + DAY)
    p_primary = get(
        client, reader.headers, cid, s["meter_1"], moid("P+"), start, start + DAY,
        apply_multiplier=True,
    )  # fmt: skip
    assert np.allclose(np.array(p_raw["data"]["value"]) * 40, p_primary["data"]["value"])
    transformer = get(client, reader.headers, cid, s["transformer"], moid("P+"), start, end)
    assert len(transformer["data"]["time"]) == 30 * 96


def test_demo_meter_swap_stitches_into_a_continuous_counter(
    client: TestClient, demo_data: tuple[DemoInfo, Actor, float]
) -> None:
    info, reader, _ = demo_data
    cid, mid = info.client_cid, info.sensors["meter_2"]
    end = now_ms() // DAY * DAY
    swap = sensors_demo.SWAP_MS
    since = min(end - 30 * DAY, swap - 2 * DAY)
    stitched = get(client, reader.headers, cid, mid, moid("A+"), since, end, get_last=True)
    values = np.array(stitched["data"]["value"])
    times = np.array(stitched["data"]["time"])
    assert values.shape[0] > 0
    assert (np.diff(values) >= 0).all()  # a register never runs backwards once stitched
    if not since < swap < end:
        pytest.skip("the demo's swap is outside the demo data at this date")
    old_till = sensors_demo.METER_2_READINGS["old"][moid("A+")][1]
    assert values[times == swap][0] == pytest.approx(old_till)
    raw = get(client, reader.headers, cid, mid, moid("A+"), since, end, raw=True, get_last=True)
    raw_values = np.array(raw["data"]["value"])
    assert raw_values[times == swap - 15 * 60_000][0] < old_till
    assert raw_values[times == swap][0] == pytest.approx(0.0)
    hourly = get(client, reader.headers, cid, mid, moid("A+"), swap - DAY, swap + DAY, delta_t=60)
    assert (np.diff(hourly["data"]["value"]) > 0).all()


def test_demo_profiles_are_deterministic() -> None:
    t = np.arange(1_790_000_000_000, 1_790_000_000_000 + 3 * DAY, 15 * 60_000, dtype=np.int64)
    a = demo.household_load(t, np.random.default_rng(1))
    b = demo.household_load(t, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert 0.6 < a.mean() < 1.4
