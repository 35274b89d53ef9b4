"""Series helpers: `Client.read` frames, `Client.write`/`write_many` splitting, and the pure
conversions behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import orjson
import pandas as pd
import pytest

from besmart_server.client import Client, SeriesWrite, to_ms
from besmart_server.client.series import columns_from_frame, frame_from_data, plan_requests
from tests.client.conftest import AppTransport
from tests.factories import Actor

A_PLUS, A_MINUS, U1 = 32, 34, 53
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000
H = 60 * MIN


def minutes(n: int, start: int = T0, step: int = 15 * MIN) -> pd.DatetimeIndex:
    return pd.to_datetime(start + step * np.arange(n), unit="ms", utc=True)


def put_bodies(transport: AppTransport) -> list[list[dict[str, object]]]:
    return [
        orjson.loads(r.content)
        for r in transport.requests
        if r.method == "PUT" and r.url.path == "/api/sensors/signals/data/v2"
    ]


def test_read_is_a_utc_frame_with_the_four_columns(bs: Client, tenant: tuple[int, Actor]) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    bs.put_signal(cid, mid, A_PLUS, {"time": [T0, T0 + H], "value": [1.0, 2.0], "origin": [1, 2]})
    since = datetime(2026, 1, 1, tzinfo=UTC)
    frame = bs.read(cid, mid, A_PLUS, since, since + timedelta(hours=2))
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "time"
    assert list(frame.columns) == ["value", "origin", "type", "acq_time"]
    assert frame.index[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert frame["value"].tolist() == [1.0, 2.0]
    assert frame["origin"].tolist() == [1, 2]
    assert frame["type"].tolist() == ["DBL", "DBL"]
    assert str(frame["acq_time"].dtype) == "datetime64[ms, UTC]"
    assert frame["acq_time"].notna().all()
    assert frame.attrs == {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": A_PLUS,
        "unit": "kWh",
    }
    same = bs.read(cid, mid, A_PLUS, T0, T0 + 2 * H, signal_origin_id=2)
    assert same["value"].tolist() == [2.0]
    assert bs.read(cid, mid, A_PLUS, "2026-01-01T00:00Z", "2026-01-01T01:00Z")[
        "value"
    ].tolist() == [1.0]


def test_write_splits_into_requests_of_10k_points_and_reports_progress(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    n = 25_000
    frame = pd.DataFrame({"value": np.linspace(0.0, 1.0, n)}, index=minutes(n, step=MIN))
    calls: list[tuple[int, int]] = []
    assert bs.write(frame, cid, mid, U1, progress=lambda d, t: calls.append((d, t))) == n
    sizes = [[len(item["data"]["time"]) for item in body] for body in put_bodies(transport)]
    assert sizes == [[10_000], [10_000], [5_000]]
    assert calls == [(10_000, n), (20_000, n), (25_000, n)]
    back = bs.read(cid, mid, U1, T0, T0 + n * MIN)
    assert np.array_equal(back["value"].to_numpy(), frame["value"].to_numpy())
    assert back.index.equals(frame.index.as_unit("ms").rename("time"))


def test_write_many_carries_one_chunk_of_each_series_per_request(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    a = bs.create_sensor(cid, "a").sensor_mid
    b = bs.create_sensor(cid, "b").sensor_mid
    fa = pd.DataFrame({"value": np.arange(15.0)}, index=minutes(15))
    fb = pd.DataFrame({"value": np.arange(4.0) * 1000}, index=minutes(4))
    written = bs.write_many(
        [SeriesWrite(fa, cid, a, A_PLUS), SeriesWrite(fb, cid, b, A_MINUS, unit="Wh", origin=2)],
        chunk_points=10,
    )
    assert written == 19
    shapes = [
        [(item["sensor_mid"], len(item["data"]["time"])) for item in body]
        for body in put_bodies(transport)
    ]
    assert shapes == [[(a, 10), (b, 4)], [(a, 5)]]
    out = bs.read(cid, b, A_MINUS, T0, T0 + H)
    assert out["value"].tolist() == [0.0, 1.0, 2.0, 3.0]  # Wh to kWh
    assert out["origin"].tolist() == [2, 2, 2, 2]


def test_types_versions_and_acq_time_go_through_unchanged(
    bs: Client, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    acq = pd.to_datetime([T0 + 10, T0 + 20, T0 + 30, T0 + 40], unit="ms", utc=True)
    frame = pd.DataFrame(
        {
            "value": [1.5, 7, "on", None],
            "type": ["DBL", "INT", "STR", "RM"],
            "origin": [1, 1, 3, 1],
            "acq_time": acq,
        },
        index=pd.to_datetime([T0, T0 + MIN, T0 + MIN, T0], unit="ms", utc=True),
    )
    bs.write(frame, cid, mid, A_PLUS)
    back = bs.read(cid, mid, A_PLUS, T0, T0 + H)
    assert back["type"].tolist() == ["DBL", "RM", "INT", "STR"]
    assert back["value"].tolist() == [1.5, None, 7, "on"]
    assert back["origin"].tolist() == [1, 1, 1, 3]
    assert back["acq_time"].tolist() == [acq[0], acq[3], acq[1], acq[2]]
    newest = bs.read(cid, mid, A_PLUS, T0, T0 + H, get_last=True)
    assert newest["value"].tolist() == [7, "on"]  # the tombstone removed the first point


def test_a_bad_frame_is_refused_before_anything_is_sent(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    frame = pd.DataFrame({"value": [1.0, np.nan]}, index=minutes(2))
    with pytest.raises(ValueError, match="position 1"):
        bs.write(frame, cid, 1, A_PLUS)
    assert put_bodies(transport) == []


# --- pure conversions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        pytest.param(T0, T0, id="ms"),
        pytest.param(T0 + 0.9, T0, id="float-ms-floored"),
        pytest.param(str(T0), T0, id="ms-text"),
        pytest.param("2026-01-01T00:00:00.250Z", T0 + 250, id="iso"),
        pytest.param("2026-01-01T01:00:00+01:00", T0, id="iso-offset"),
        pytest.param("2026-01-01", T0, id="date"),
        pytest.param(datetime(2026, 1, 1, 0, 0, 0, 999), T0, id="naive-is-utc"),
        pytest.param(datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), T0, id="aware"),
        pytest.param(pd.Timestamp("2026-01-01T00:00:00.001", tz="UTC"), T0 + 1, id="timestamp"),
        pytest.param(datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), -1, id="before-1970"),
    ],
)
def test_to_ms(value: object, ms: int) -> None:
    assert to_ms(value) == ms


def test_to_ms_refuses_non_times() -> None:
    with pytest.raises(TypeError):
        to_ms(True)
    with pytest.raises(ValueError, match="finite"):
        to_ms(float("nan"))


def test_frame_from_an_empty_response_has_the_columns() -> None:
    frame = frame_from_data({"time": [], "value": [], "type": [], "origin": [], "acq_time": []})
    assert frame.empty
    assert list(frame.columns) == ["value", "origin", "type", "acq_time"]
    assert str(frame.index.dtype) == "datetime64[ms, UTC]"
    assert frame_from_data(None).empty


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(pd.DataFrame({"v": [1.0]}, index=minutes(1)), "'value' column", id="no-value"),
        pytest.param(
            pd.DataFrame({"value": [1.5]}, index=["x"]), "index the frame by time", id="index"
        ),
        pytest.param(
            pd.DataFrame({"value": [1.0], "type": ["XYZ"]}, index=minutes(1)), "type", id="type"
        ),
        pytest.param(
            pd.DataFrame({"value": [1.5], "type": ["INT"]}, index=minutes(1)), "INT", id="int"
        ),
        pytest.param(
            pd.DataFrame({"value": [1], "type": ["STR"]}, index=minutes(1)), "STR", id="str"
        ),
        pytest.param(
            pd.DataFrame({"value": [1.0], "origin": [9]}, index=minutes(1)), "origin", id="origin"
        ),
        pytest.param(pd.DataFrame({"value": [np.inf]}, index=minutes(1)), "finite", id="infinite"),
    ],
)
def test_columns_from_a_bad_frame(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        columns_from_frame(frame)


def test_columns_from_frame_accept_ms_index_naive_times_and_series() -> None:
    by_ms = columns_from_frame(pd.DataFrame({"value": [1.0]}, index=[T0]))
    naive = columns_from_frame(pd.Series([1.0], index=pd.to_datetime([T0], unit="ms")))
    with_col = columns_from_frame(pd.DataFrame({"time": [T0], "value": [1.0]}))
    for cols in (by_ms, naive, with_col):
        assert cols.time.tolist() == [T0]
        assert cols.body() == {"time": cols.time, "value": cols.value, "origin": cols.origin}


@pytest.mark.parametrize(
    ("lengths", "chunk", "request_points", "expected"),
    [
        pytest.param([25], 10, 100, [[(0, 0, 10)], [(0, 10, 20)], [(0, 20, 25)]], id="one"),
        pytest.param([5, 3], 10, 100, [[(0, 0, 5), (1, 0, 3)]], id="two-small"),
        pytest.param([10, 10, 10], 10, 20, [[(0, 0, 10), (1, 0, 10)], [(2, 0, 10)]], id="cap"),
        pytest.param([0, 2], 10, 100, [[(1, 0, 2)]], id="empty-series"),
        pytest.param([], 10, 100, [], id="nothing"),
    ],
)
def test_plan_requests(
    lengths: list[int], chunk: int, request_points: int, expected: list[list[tuple[int, int, int]]]
) -> None:
    plan = plan_requests(lengths, chunk_points=chunk, request_points=request_points)
    assert [[(c.series, c.start, c.stop) for c in req] for req in plan] == expected
