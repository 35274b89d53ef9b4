"""Interpolation between weather grid points, pure: distances, neighbours, IDW weights, combining.

A query at any (lat, lon) is answered from the grid points within `radius_km`, at most `k` of
them, weighted by inverse distance; a query that hits a grid point returns that point's own
series. Distances are great-circle (haversine), so the date line and the poles need no special
case: 179.9° and -179.9° are 22 km apart at the equator, not 40 000 km.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from besmart_server.server.signals.pipeline import Frame
from besmart_server.wire import TYPE_DBL, TYPE_INT

EARTH_RADIUS_KM: Final = 6371.0088  # IUGG mean radius
# Closer than this counts as the grid point itself: path parameters arrive as decimal text,
# so a query "at" a point may differ from the stored float in the last bits (1 mm).
EXACT_KM: Final = 1e-6
IDW_POWER: Final = 2.0  # Shepard's classic choice: nearer points dominate, smoothly

F64 = NDArray[np.float64]


def valid_position(lat: float, lon: float) -> bool:
    """True for finite lat in [-90, 90] and lon in [-180, 180]."""
    return bool(np.isfinite(lat) and np.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180)


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> F64:
    """Great-circle distance in km between points given in degrees (broadcasting)."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dlat = p2 - p1
    dlon = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    # clip: rounding can push `a` a hair above 1 for antipodes, and arcsin would give NaN
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), np.float64)


@dataclass(frozen=True, slots=True)
class GridPoint:
    """A weather grid point: `key` identifies it to the caller (the sensor_mid)."""

    key: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A grid point chosen for a query, its distance and its normalised weight."""

    point: GridPoint
    distance_km: float
    weight: float


def idw_weights(distances_km: ArrayLike, power: float = IDW_POWER) -> F64:
    """Inverse-distance weights summing to 1; an exact hit (< EXACT_KM) takes all the weight."""
    d = np.asarray(distances_km, np.float64).reshape(-1)
    if d.shape[0] == 0:
        return np.empty(0, np.float64)
    exact = d < EXACT_KM
    if bool(exact.any()):
        # Several points at one position (duplicates) share the weight equally.
        return np.asarray(exact / exact.sum(), np.float64)
    w = 1.0 / d**power
    return np.asarray(w / w.sum(), np.float64)


def nearest(
    points: Sequence[GridPoint],
    lat: float,
    lon: float,
    *,
    radius_km: float,
    k: int,
    power: float = IDW_POWER,
) -> list[Neighbour]:
    """Up to `k` grid points within `radius_km` (inclusive), nearest first, with IDW weights.

    An exact hit returns that point alone, so it answers with its own series. Ties in distance
    are broken by `key`, so the choice does not depend on the order of `points`. Empty: the
    position lies outside every grid.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not points:
        return []
    lats = np.fromiter((p.lat for p in points), np.float64, len(points))
    lons = np.fromiter((p.lon for p in points), np.float64, len(points))
    keys = np.fromiter((p.key for p in points), np.int64, len(points))
    dist = haversine_km(lat, lon, lats, lons)
    inside = np.flatnonzero(dist <= radius_km)
    order = inside[np.lexsort((keys[inside], dist[inside]))]
    if order.shape[0] and dist[order[0]] < EXACT_KM:
        order = order[dist[order] < EXACT_KM]  # the point itself (and any duplicate of it)
    order = order[:k]
    weights = idw_weights(dist[order], power)
    return [
        Neighbour(points[int(i)], float(dist[i]), float(w))
        for i, w in zip(order, weights, strict=True)
    ]


def idw_frames(frames: Sequence[Frame], weights: Sequence[float]) -> Frame:
    """IDW of the neighbours' frames per (time, origin): one DBL point where any has a value.

    Expects each frame to hold at most one point per (time, origin) (newest versions). At each
    (time, origin) only the neighbours with a finite numeric value there count, their weights
    renormalised; `acq` is the newest acq among them. Non-numeric points (RM, STR) are ignored.
    """
    if len(frames) != len(weights):
        raise ValueError("one weight per frame")
    if len(frames) == 1:
        f = frames[0]
        return f.take(((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & np.isfinite(f.value))
    parts_t, parts_o, parts_a, parts_v, parts_w = [], [], [], [], []
    for f, w in zip(frames, weights, strict=True):
        keep = ((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & np.isfinite(f.value)
        parts_t.append(f.time[keep])
        parts_o.append(f.origin[keep])
        parts_a.append(f.acq[keep])
        parts_v.append(f.value[keep])
        parts_w.append(np.full(int(keep.sum()), float(w)))
    time = np.concatenate(parts_t) if parts_t else np.empty(0, np.int64)
    n = time.shape[0]
    if n == 0:
        return Frame.empty()
    origin, acq = np.concatenate(parts_o), np.concatenate(parts_a)
    value, weight = np.concatenate(parts_v), np.concatenate(parts_w)
    order = np.lexsort((origin, time))
    time, origin, acq = time[order], origin[order], acq[order]
    value, weight = value[order], weight[order]
    first = np.ones(n, dtype=np.bool_)
    first[1:] = (time[1:] != time[:-1]) | (origin[1:] != origin[:-1])
    starts = np.flatnonzero(first)
    wsum = np.add.reduceat(weight, starts)
    num = np.add.reduceat(value * weight, starts)
    # A zero total weight (all weights 0) cannot be interpolated: drop those points.
    ok = wsum > 0
    return Frame(
        time[starts][ok],
        origin[starts][ok],
        np.maximum.reduceat(acq, starts)[ok],
        np.full(int(ok.sum()), TYPE_DBL, dtype=np.int8),
        (num[ok] / wsum[ok]).astype(np.float64),
    )
