"""Interpolation between weather grid points: distances, neighbours, weights, combining."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.weather.grid import (
    EARTH_RADIUS_KM,
    GridPoint,
    haversine_km,
    idw_frames,
    idw_weights,
    nearest,
    valid_position,
)
from besmart_server.wire import TYPE_DBL, TYPE_RM

KM_PER_DEGREE = 2 * math.pi * EARTH_RADIUS_KM / 360  # 111.195 km along a great circle
NAN = math.nan


def test_one_degree_of_latitude_is_111_km() -> None:
    assert float(haversine_km(50.0, 19.0, 51.0, 19.0)) == pytest.approx(111.195, abs=1e-3)
    assert float(haversine_km(0, 0, 0, 1)) == pytest.approx(KM_PER_DEGREE, rel=1e-12)


def test_known_city_distance() -> None:
    # Kraków → Warsaw, great-circle: about 252 km
    assert float(haversine_km(50.06, 19.94, 52.23, 21.01)) == pytest.approx(252.0, abs=2.0)


def test_distance_across_the_date_line_is_short() -> None:
    assert float(haversine_km(0, 179.9, 0, -179.9)) == pytest.approx(0.2 * KM_PER_DEGREE)
    assert float(haversine_km(-16.5, 180.0, -16.5, -180.0)) == pytest.approx(0.0, abs=1e-9)


def test_antipodes_do_not_give_nan() -> None:
    assert float(haversine_km(0, 0, 0, 180)) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert float(haversine_km(90, 0, -90, 0)) == pytest.approx(math.pi * EARTH_RADIUS_KM)


@pytest.mark.parametrize(
    ("lat", "lon", "ok"),
    [
        (0, 0, True),
        (90, 180, True),
        (-90, -180, True),
        (90.0001, 0, False),
        (0, -180.0001, False),
        (NAN, 0, False),
        (0, math.inf, False),
    ],
    ids=["origin", "ne-corner", "sw-corner", "lat>90", "lon<-180", "nan", "inf"],
)
def test_valid_position(lat: float, lon: float, ok: bool) -> None:
    assert valid_position(lat, lon) is ok


EQUATOR = [GridPoint(1, 0.0, 0.0), GridPoint(2, 0.0, 1.0)]


def test_exact_point_returns_only_itself() -> None:
    found = nearest(EQUATOR, 0.0, 1.0, radius_km=500, k=4)
    assert [(n.point.key, n.distance_km, n.weight) for n in found] == [(2, 0.0, 1.0)]


def test_query_within_a_millimetre_counts_as_exact() -> None:
    found = nearest(EQUATOR, 0.0, 1.0 + 1e-9, radius_km=500, k=4)  # 0.1 mm off
    assert [n.point.key for n in found] == [2]
    assert found[0].weight == 1.0


def test_between_two_points_inverse_distance_squared() -> None:
    found = nearest(EQUATOR, 0.0, 0.25, radius_km=500, k=4)
    assert [n.point.key for n in found] == [1, 2]
    assert found[0].distance_km == pytest.approx(0.25 * KM_PER_DEGREE)
    assert found[1].distance_km == pytest.approx(0.75 * KM_PER_DEGREE)
    # 1/0.25² : 1/0.75² = 16 : 16/9 = 9 : 1
    assert found[0].weight == pytest.approx(0.9)
    assert found[1].weight == pytest.approx(0.1)
    combined = idw_frames([_frame([0], [10.0]), _frame([0], [20.0])], [n.weight for n in found])
    assert combined.value.tolist() == pytest.approx([11.0])


def test_midpoint_weights_equal() -> None:
    found = nearest(EQUATOR, 0.0, 0.5, radius_km=500, k=4)
    assert [n.weight for n in found] == pytest.approx([0.5, 0.5])


def test_radius_edge_is_inclusive() -> None:
    d = float(haversine_km(0.0, 0.3, 0.0, 0.0))  # to point 1
    inside = nearest(EQUATOR, 0.0, 0.3, radius_km=d, k=4)
    assert [n.point.key for n in inside] == [1]
    assert nearest(EQUATOR, 0.0, 0.3, radius_km=d * (1 - 1e-9), k=4) == []


def test_outside_every_grid_is_empty() -> None:
    assert nearest(EQUATOR, 45.0, 45.0, radius_km=100, k=4) == []
    assert nearest([], 0.0, 0.0, radius_km=100, k=4) == []


def test_date_line_neighbours_on_both_sides() -> None:
    points = [GridPoint(10, 0.0, 179.9), GridPoint(11, 0.0, -179.9), GridPoint(12, 0.0, 170.0)]
    found = nearest(points, 0.0, 180.0, radius_km=50, k=4)
    assert sorted(n.point.key for n in found) == [10, 11]
    assert [n.weight for n in found] == pytest.approx([0.5, 0.5])
    assert found[0].distance_km == pytest.approx(0.1 * KM_PER_DEGREE)
    # -179.95 is a quarter of the way from -179.9 to 179.9 across the line
    found = nearest(points, 0.0, -179.95, radius_km=50, k=4)
    assert [n.point.key for n in found] == [11, 10]
    assert [n.weight for n in found] == pytest.approx([0.9, 0.1])


def test_k_nearest_and_ties_broken_by_key() -> None:
    # A ring of points 1° around the query (same distance), and one farther away.
    points = [
        GridPoint(5, 1.0, 0.0),
        GridPoint(3, -1.0, 0.0),
        GridPoint(4, 0.0, 1.0),
        GridPoint(2, 0.0, -1.0),
        GridPoint(1, 2.0, 0.0),
    ]
    found = nearest(points, 0.0, 0.0, radius_km=1000, k=3)
    # Equal distances at the equator along a meridian and the equator itself.
    assert [n.point.key for n in found] == [2, 3, 4]
    assert sum(n.weight for n in found) == pytest.approx(1.0)
    found = nearest(list(reversed(points)), 0.0, 0.0, radius_km=1000, k=3)
    assert [n.point.key for n in found] == [2, 3, 4]
    assert len(nearest(points, 0.0, 0.0, radius_km=1000, k=10)) == 5


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must"):
        nearest(EQUATOR, 0, 0, radius_km=10, k=0)


def test_weights_exact_and_duplicates() -> None:
    assert idw_weights([0.0, 5.0]).tolist() == [1.0, 0.0]
    assert idw_weights([0.0, 0.0, 5.0]).tolist() == [0.5, 0.5, 0.0]
    assert idw_weights([1.0, 2.0]).tolist() == pytest.approx([0.8, 0.2])
    assert idw_weights([]).shape == (0,)


def _frame(time: list[int], value: list[float], origin: int = 3, acq: int = 1) -> Frame:
    n = len(time)
    return Frame.from_columns(time, [origin] * n, [acq] * n, [TYPE_DBL] * n, value)


def test_idw_frames_aligns_by_time_and_origin() -> None:
    h = 3_600_000
    a = _frame([0, h, 2 * h], [280.0, 282.0, 284.0], acq=5)
    b = _frame([h, 2 * h, 3 * h], [290.0, NAN, 294.0], acq=9)
    out = idw_frames([a, b], [0.75, 0.25])
    assert out.time.tolist() == [0, h, 2 * h, 3 * h]
    # 0: only a; h: both; 2h: b is NaN → only a; 3h: only b
    assert out.value.tolist() == pytest.approx([280.0, 284.0, 284.0, 294.0])
    assert out.acq.tolist() == [5, 9, 5, 9]
    assert out.type.tolist() == [TYPE_DBL] * 4
    assert out.origin.tolist() == [3] * 4


def test_idw_frames_keeps_origins_apart_and_ignores_tombstones() -> None:
    forecast = _frame([0], [10.0], origin=2)
    model = Frame.from_columns([0, 0], [3, 3], [1, 2], [TYPE_DBL, TYPE_RM], [20.0, NAN])
    out = idw_frames([forecast, model], [0.5, 0.5])
    assert list(zip(out.time.tolist(), out.origin.tolist(), out.value.tolist(), strict=True)) == [
        (0, 2, 10.0),
        (0, 3, 20.0),
    ]


def test_idw_frames_single_and_empty() -> None:
    only = _frame([0, 1], [1.0, NAN])
    assert idw_frames([only], [1.0]).value.tolist() == [1.0]
    assert len(idw_frames([Frame.empty(), Frame.empty()], [0.5, 0.5])) == 0
    with pytest.raises(ValueError, match="one weight"):
        idw_frames([only], [0.5, 0.5])


coords = st.tuples(
    st.floats(-89.0, 89.0, allow_nan=False), st.floats(-180.0, 180.0, allow_nan=False)
)


@settings(max_examples=200, deadline=None)
@given(
    query=coords,
    points=st.lists(coords, min_size=1, max_size=8),
    values=st.lists(st.floats(-50, 50, allow_nan=False), min_size=8, max_size=8),
)
def test_idw_stays_within_the_neighbours_values(
    query: tuple[float, float], points: list[tuple[float, float]], values: list[float]
) -> None:
    grid = [GridPoint(i, lat, lon) for i, (lat, lon) in enumerate(points)]
    found = nearest(grid, *query, radius_km=25_000, k=4)
    assert 1 <= len(found) <= 4
    assert sum(n.weight for n in found) == pytest.approx(1.0)
    distances = [n.distance_km for n in found]
    assert distances == sorted(distances)
    picked = [values[n.point.key] for n in found]
    frames = [_frame([0], [v]) for v in picked]
    out = float(idw_frames(frames, [n.weight for n in found]).value[0])
    assert min(picked) - 1e-9 <= out <= max(picked) + 1e-9
