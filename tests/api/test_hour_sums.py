"""Block hour sums (issue 17): a bucketed read whose edges are hour edges adds up the hour
sums the blocks keep for the whole days inside its window and decodes only the rest. The
same read with the summaries gone (NULL, as before migration 0015) decodes every block: both
must give identical numbers, for every kind, zone, window, re-write, RM and meter state."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.signals.calendar import Buckets, zone
from besmart_server.server.signals.pipeline import Sums
from besmart_server.server.signals.store import SeriesStore
from tests.api.signal_helpers import (
    Q,
    drop_summaries,
    get,
    make_sensor,
    make_state,
    moid,
    put,
    put_case,
    series_id,
)
from tests.factories import make_tenant

WAW = ZoneInfo("Europe/Warsaw")
H = 3_600_000
D = 86_400_000
ZONES = (None, "UTC", "Europe/Warsaw", "Asia/Kolkata", "America/St_Johns")
CUTS = (0, H, 1_800_000, 23 * H, -H, 7 * 60_000 + 1)
SIZES: tuple[int | str, ...] = (60, 120, 1440, 2880, 10080, "month", "quarter", "year", 15)


def ms(y: int, m: int, d: int, hh: int = 0, tz: dt.tzinfo = WAW) -> int:
    return int(dt.datetime(y, m, d, hh, tzinfo=tz).timestamp() * 1000)


def _summed(db: Database, sid: int, since: int, till: int, buckets: Buckets) -> Sums:
    with db.transaction(write=False) as conn:
        _, sums = SeriesStore(db.dialect).read_sums(
            conn, sid, since, till, origin=None, limit=10**7, edges=buckets.edges(since, till - 1)
        )
    return sums


def _data(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body["data"][k] for k in ("time", "value", "origin", "acq_time", "type")}


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["P+", "EA+", "A+"]))
    day0 = draw(st.sampled_from([ms(2026, 3, 27), ms(2026, 10, 23), ms(2026, 1, 5)]))
    step = draw(st.sampled_from([60_000, 7 * 60_000, Q, 40 * 60_000]))
    days = draw(st.integers(2, 6))
    t = np.arange(day0 + draw(st.integers(0, 3)) * 60_000, day0 + days * D, step, dtype=np.int64)
    # Points and values from a drawn seed: lists of thousands of drawn numbers would exceed
    # what Hypothesis draws per example.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for at in rng.integers(0, len(t), draw(st.integers(0, 4))):  # gaps
        t = np.concatenate([t[:at], t[at + int(rng.integers(1, 200)) :]])
    t = t if len(t) else np.array([day0], dtype=np.int64)
    scale = draw(st.sampled_from([1, 10, 1000]))
    ints = rng.integers(-(10**6), 10**6, len(t))
    values = (ints / scale).tolist()
    if kind == "A+":
        values = (np.cumsum(np.abs(ints)) / scale).tolist()
    rewrite = rng.choice(t, min(len(t), draw(st.integers(0, 20))), replace=False).tolist()
    removed = rng.choice(t, min(len(t), draw(st.integers(0, 10))), replace=False).tolist()
    origin2 = draw(st.booleans())
    # Windows that cut days anywhere, mostly over the data and holding whole UTC days.
    since = day0 + draw(st.integers(-1, days - 1)) * D + draw(st.sampled_from(CUTS))
    till = since + draw(st.integers(1, 6)) * D + draw(st.sampled_from(CUTS))
    factor = draw(st.sampled_from([None, 1.0, 40.0]))
    return {
        "kind": kind, "t": t.tolist(), "values": values, "rewrite": rewrite, "removed": removed,
        "origin2": origin2, "since": since, "till": till, "factor": factor,
        "tz": draw(st.sampled_from(ZONES)), "delta_t": draw(st.sampled_from(SIZES)),
        "swap": day0 + draw(st.integers(0, days * D)),
    }  # fmt: skip


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_summaries_give_what_decoding_gives(
    client: TestClient, db: Database, case: dict[str, Any]
) -> None:
    cid, actor, mid, m = put_case(client, db, case)
    if case["origin2"]:
        third = {"time": case["t"][::3], "value": case["values"][::3]}
        put(client, actor.headers, cid, mid, m, {**third, "origin": [2] * len(third["time"])})
    if case["rewrite"]:
        put(client, actor.headers, cid, mid, m,
            {"time": case["rewrite"], "value": [0.5] * len(case["rewrite"])})  # fmt: skip
    if case["removed"]:
        put(client, actor.headers, cid, mid, m,
            {"time": case["removed"], "type": ["RM"] * len(case["removed"])})  # fmt: skip
    params: dict[str, Any] = {"delta_t": case["delta_t"]}
    if case["tz"] is not None:
        params["tz"] = case["tz"]
    if case["factor"] is not None:
        params["apply_multiplier"] = "true"
    url = f"/api/sensors/{cid}.{mid}/signals/{m}/data"
    query = {"since": case["since"], "till": case["till"], **params}
    fast = client.get(url, params=query, headers=actor.headers)
    sid = series_id(db, mid, m)
    drop_summaries(db, sid)
    slow = client.get(url, params=query, headers=actor.headers)
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    if fast.status_code == 200:
        assert _data(fast.json()) == _data(slow.json())
    else:
        assert fast.json() == slow.json()


@pytest.mark.parametrize(
    ("day", "quarters"), [((2026, 3, 29), 92), ((2026, 10, 25), 100)], ids=["spring", "autumn"]
)
def test_dst_days_in_warsaw_from_summaries(
    client: TestClient, db: Database, day: tuple[int, int, int], quarters: int
) -> None:
    """A week of quarter-hour energy around a change: the local days in the middle come from
    the blocks' hour sums, 92 and 100 quarter hours, and equal what decoding gives."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid("EA+")
    start = ms(*day)
    t = np.arange(start - 3 * D, start + 4 * D, Q, dtype=np.int64)
    put(client, actor.headers, cid, mid, m, {"time": t.tolist(), "value": [0.25] * len(t)})
    # A re-write of one quarter hour and an RM of another, inside the change's day.
    put(client, actor.headers, cid, mid, m, {"time": [start + 2 * H], "value": [1.25]})
    put(client, actor.headers, cid, mid, m, {"time": [start + 3 * H], "type": ["RM"]})
    since, till = start - 2 * D, start + 3 * D
    sid = series_id(db, mid, m)
    # Quarter hours keep one sum per UTC day: a local day cuts each of them, a local month
    # only the day of its midnight, so the month's whole days come from summaries.
    months = _summed(db, sid, since, till, Buckets("month", zone("Europe/Warsaw")))
    assert len(months.days) >= 3
    assert not len(_summed(db, sid, since, till, Buckets(1440, zone("Europe/Warsaw"))))
    body = get(client, actor.headers, cid, mid, m, since, till, delta_t=1440, tz="Europe/Warsaw")
    i = body["data"]["time"].index(start)
    # 92 or 100 quarter hours of 0.25 kWh, one of them 1.25 and one removed.
    assert body["data"]["value"][i] == (quarters - 1) * 0.25 + 1.25 - 0.25
    month = get(
        client, actor.headers, cid, mid, m, since, till, delta_t="month", tz="Europe/Warsaw"
    )
    drop_summaries(db, sid)
    assert get(client, actor.headers, cid, mid, m, since, till, delta_t=1440,
               tz="Europe/Warsaw")["data"] == body["data"]  # fmt: skip
    assert get(client, actor.headers, cid, mid, m, since, till, delta_t="month",
               tz="Europe/Warsaw")["data"] == month["data"]  # fmt: skip


def test_a_meter_state_with_a_ratio_decodes(client: TestClient, db: Database) -> None:
    """A ratio other than 1 scales each point before it is summed: such a read decodes, and
    gives the scaled sums."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid("EA+")
    start = ms(2026, 6, 1, tz=dt.UTC)
    make_state(db, mid, start, None, info={"current_ratio": 40.0})
    t = np.arange(start, start + 4 * D, Q, dtype=np.int64)
    put(client, actor.headers, cid, mid, m, {"time": t.tolist(), "value": [0.1] * len(t)})
    body = get(client, actor.headers, cid, mid, m, start, start + 4 * D, delta_t=1440,
               apply_multiplier="true")  # fmt: skip
    assert body["data"]["value"] == [384.0] * 4  # 96 x 0.1 x 40


def test_minute_data_keeps_hours_for_local_days(client: TestClient, db: Database) -> None:
    """1-minute power keeps a sum per UTC hour: Warsaw's local days (cut at 22:00 or 23:00
    UTC) come from them, 23 and 25 hours long, as decoding gives them."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid("P+")
    start = ms(2026, 10, 25)
    t = np.arange(start - 2 * D, start + 3 * D, 60_000, dtype=np.int64)
    value = ((t // 60_000) % 7 + 1).astype(float).tolist()
    put(client, actor.headers, cid, mid, m, {"time": t.tolist(), "value": value})
    since, till = start - D, start + 2 * D
    sid = series_id(db, mid, m)
    sums = _summed(db, sid, since, till, Buckets(1440, zone("Europe/Warsaw")))
    assert len(sums.hours) >= 24
    body = get(client, actor.headers, cid, mid, m, since, till, delta_t=1440, tz="Europe/Warsaw")
    assert body["data"]["time"] == [since, start, start + 25 * H]
    drop_summaries(db, sid)
    again = get(client, actor.headers, cid, mid, m, since, till, delta_t=1440, tz="Europe/Warsaw")
    assert again["data"] == body["data"]
