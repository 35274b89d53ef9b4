"""The chart route from the blocks' hour summaries (min, max and the time each is first
reached, count and sum per UTC hour): buckets of whole hours take the whole days of the
window from the summaries and decode only the rest. The same chart decoded — with the
summaries gone (NULL) or read as of a time after every write (as_of always decodes) — must
be the same body, for every kind, window, drawing budget, re-write, RM, origin and ratio."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.signals import blocks as blocks_mod
from besmart_server.server.signals.tables import blocks
from tests.api.signal_helpers import (
    MIN,
    Q,
    drop_summaries,
    make_sensor,
    moid,
    put,
    put_case,
    series_id,
)
from tests.factories import make_tenant

H = 3_600_000
D = 86_400_000
DAY0 = 1_767_225_600_000  # 2026-01-01T00:00Z
CUTS = (0, H, 1_800_000, 23 * H, -H, 7 * MIN + 1)
# Timings and the as_of echoed differ between the paths by construction.
_VOLATILE = ("time_tstorage", "time_other", "as_of")


def _body(res: Any) -> dict[str, Any]:
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return {k: v for k, v in body.items() if k not in _VOLATILE}


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["P+", "P+", "P+", "EA+", "EA+", "A+", "T_AIR"]))
    day0 = DAY0 + draw(st.integers(0, 300)) * D
    step = draw(st.sampled_from([MIN, MIN, 7 * MIN, Q]))
    days = draw(st.integers(2, 6))
    t = np.arange(day0 + draw(st.integers(0, 3)) * MIN, day0 + days * D, step, dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for at in rng.integers(0, len(t), draw(st.integers(0, 4))):  # gaps
        t = np.concatenate([t[:at], t[at + int(rng.integers(1, 200)) :]])
    t = t if len(t) else np.array([day0], dtype=np.int64)
    # Few distinct values: many ties, so which time a bucket's min or max is first reached at
    # is tested too.
    spread = draw(st.sampled_from([5, 1000, 10**6]))
    scale = draw(st.sampled_from([1, 10, 1000]))
    ints = rng.integers(-spread, spread, len(t))
    values = (ints / scale).tolist()
    if kind == "A+":
        values = (np.cumsum(np.abs(ints)) / scale).tolist()
    rewrite = rng.choice(t, min(len(t), draw(st.integers(0, 30))), replace=False).tolist()
    removed = rng.choice(t, min(len(t), draw(st.integers(0, 10))), replace=False).tolist()
    since = day0 + draw(st.integers(-1, days - 1)) * D + draw(st.sampled_from(CUTS))
    till = since + draw(st.integers(1, 6)) * D + draw(st.sampled_from(CUTS))
    return {
        "kind": kind, "t": t.tolist(), "values": values, "rewrite": rewrite,
        "rewrite_value": float(rng.integers(-spread, spread) / scale), "removed": removed,
        "origins": draw(st.sampled_from([(), (), (3,), (2,), (3, 5)])), "since": since,
        "till": till, "max_points": draw(st.sampled_from([2, 4, 10, 10, 40, 40, 200, 2000])),
        "factor": draw(st.sampled_from([None, None, 1.0, 40.0])), "register": draw(st.booleans()),
        "swap": day0 + draw(st.integers(0, days * D)),
    }  # fmt: skip


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_chart_from_summaries_is_the_decoded_chart(
    client: TestClient, db: Database, case: dict[str, Any]
) -> None:
    cid, actor, mid, m = put_case(client, db, case)
    for o in case["origins"]:
        part = {"time": case["t"][o::o], "value": case["values"][o::o]}
        put(client, actor.headers, cid, mid, m, {**part, "origin": [o] * len(part["time"])})
    if case["rewrite"]:
        value = [case["rewrite_value"]] * len(case["rewrite"])
        put(client, actor.headers, cid, mid, m, {"time": case["rewrite"], "value": value})
    if case["removed"]:
        put(client, actor.headers, cid, mid, m,
            {"time": case["removed"], "type": ["RM"] * len(case["removed"])})  # fmt: skip
    url = f"/api/sensors/{cid}.{mid}/signals/{m}/chart"
    query: dict[str, Any] = {
        "since": case["since"],
        "till": case["till"],
        "max_points": case["max_points"],
        "register": case["register"],
    }
    fast = _body(client.get(url, params=query, headers=actor.headers))
    later = {**query, "as_of": 4_000_000_000_000}  # after every write: decodes
    assert _body(client.get(url, params=later, headers=actor.headers)) == fast
    drop_summaries(db, series_id(db, mid, m))
    assert _body(client.get(url, params=query, headers=actor.headers)) == fast


@pytest.mark.parametrize("origins", [(1,), (1, 3)], ids=["measured", "measured-and-estimated"])
def test_whole_days_are_not_decoded(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, origins: tuple[int, ...]
) -> None:
    """A window of 1-minute data over five days, cut in its first and last day: only those
    two days' blocks are decoded; the min and max of each bucket of whole hours, the counts
    and the summary are those of the points (a spike and a dip survive), and bucket_ms is the
    whole hours of a bucket."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid("P+")
    n = 5 * 1440
    t = DAY0 + np.arange(n, dtype=np.int64) * MIN
    v = np.round(np.sin(np.arange(n) / 50.0), 3)
    v[3000], v[5000] = 50.0, -30.0
    for o in origins:
        body = {"time": t.tolist(), "value": (v * o).tolist(), "origin": [o] * n}
        put(client, actor.headers, cid, mid, m, body)
    decoded: list[int] = []
    real = blocks_mod.decode_batch

    def counting(rows: Any) -> Any:
        f, ns = real(rows)
        decoded.append(len(f))
        return f, ns

    monkeypatch.setattr(blocks_mod, "decode_batch", counting)
    since, till = DAY0 + 90 * MIN, DAY0 + 4 * D + 30 * MIN
    params = {"since": since, "till": till, "max_points": 40}
    res = client.get(f"/api/sensors/{cid}.{mid}/signals/{m}/chart", params=params,
                     headers=actor.headers)  # fmt: skip
    body = res.json()
    assert sum(decoded) == len(origins) * 2 * 1440  # the first and the last day
    assert body["mode"] == "minmax"
    assert body["bucket_ms"] == 5 * H  # 97 hours in at most 20 buckets
    inside = (t >= since) & (t < till)
    for s, o in zip(body["series"], origins, strict=True):
        assert s["points"] == int(inside.sum())
        assert max(s["value"]) == 50.0 * o
        assert min(s["value"]) == -30.0 * o
        assert len(s["time"]) <= 40
    assert body["summary"]["count"] == int(inside.sum())
    assert body["summary"]["max"] == 50.0
    assert body["summary"]["min"] == -30.0
    assert body["summary"]["mean"] == pytest.approx(float(v[inside].mean()), abs=1e-12)


def test_summaries_without_extremes_are_decoded(client: TestClient, db: Database) -> None:
    """Summaries as migration 0015 wrote them (sums alone, layouts 1-3: a database part-way
    through 0016's rewrite) give the chart by decoding, the same body."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid("P+")
    t = DAY0 + np.arange(4 * 1440, dtype=np.int64) * MIN
    v = np.round(np.cos(np.arange(t.shape[0]) / 77.0), 3)
    put(client, actor.headers, cid, mid, m, {"time": t.tolist(), "value": v.tolist()})
    url = f"/api/sensors/{cid}.{mid}/signals/{m}/chart"
    query = {"since": DAY0 + 5 * MIN, "till": DAY0 + 4 * D, "max_points": 20}
    fast = _body(client.get(url, params=query, headers=actor.headers))
    sid = series_id(db, mid, m)
    with db.transaction() as conn:
        rows = conn.execute(
            select(blocks.c.day, blocks.c.origin, blocks.c.body).where(blocks.c.series_id == sid)
        ).all()
        for day, origin, body in rows:
            f = blocks_mod.decode(int(day), int(origin), bytes(body))
            first = np.zeros(len(f), dtype=np.bool_)
            first[0] = True
            (old,) = blocks_mod.hour_summaries(
                np.full(len(f), sid, dtype=np.int64), f, first, extremes=False
            )
            assert old is not None
            assert old[:1] == b"\x01"
            conn.execute(
                update(blocks)
                .where(blocks.c.series_id == sid, blocks.c.day == day, blocks.c.origin == origin)
                .values(hours=old)
            )
    assert fast["bucket_ms"] == 10 * H  # 96 hours in at most 10 buckets
    assert _body(client.get(url, params=query, headers=actor.headers)) == fast
