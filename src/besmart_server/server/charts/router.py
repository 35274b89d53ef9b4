"""The chart route: a signal's window reduced for drawing (the web pages use it; so may scripts)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from besmart_server.server.access import Principal
from besmart_server.server.charts import service as chart
from besmart_server.server.deps import BudgetDep, ConnDep, CurrentUser, ReadingDep, StoreDep
from besmart_server.server.errors import R401, R404, R413
from besmart_server.server.signals import columns
from besmart_server.server.signals.router import (
    AsOf,
    ClientCid,
    SensorMid,
    SignalTypeMoid,
    Since,
    Till,
    Tz,
)

router = APIRouter(tags=["Signals"])

_SERIES = "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}"
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **R401,
    **R404,
    **R413,
    422: {"description": "Validation Error"},
}


def series_window(
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
    as_of: AsOf = None,
) -> chart.ChartQuery:
    """The series and window both routes read (their shared path and query parameters)."""
    return chart.ChartQuery(
        client_cid=client_cid,
        sensor_mid=sensor_mid,
        signal_type_moid=signal_type_moid,
        since=since,
        till=till,
        as_of=as_of,
    )


SeriesWindow = Annotated[chart.ChartQuery, Depends(series_window)]


@router.get(
    f"{_SERIES}/chart",
    summary="Get signal data reduced for a chart",
    responses={
        200: {"description": "Points to draw per origin, with the window's summary"},
        **_RESPONSES,
    },
)
async def get_signal_chart(
    reading: ReadingDep,
    store: StoreDep,
    budget: BudgetDep,
    w: SeriesWindow,
    max_points: Annotated[
        int,
        Query(
            description="Points per origin to send at most (about two per horizontal pixel): "
            "above it, the min and the max of each of at most max_points/2 buckets, each at "
            "its own time, so peaks never vanish. Where (till - since) / (max_points/2) is an "
            "hour or more, a bucket is a whole number of UTC hours (returned as `bucket_ms`), "
            "the first starting at the hour at or before `since`, so long windows come from "
            "the hourly summaries the store keeps; shorter buckets are equal parts of the "
            f"window (`bucket_ms` null). 2..{chart.MAX_POINTS_LIMIT}"
        ),
    ] = 2000,
    register: Annotated[
        bool,
        Query(description="Counters: the register itself instead of the energy per bucket"),
    ] = False,
    apply_multiplier: Annotated[
        bool, Query(description="Apply the transformer ratios of the installation periods")
    ] = True,
) -> Response:
    """Newest versions (as of `as_of`) in the chart unit, split by origin; instantaneous and
    interval signals min/max-reduced to `max_points` (buckets of `bucket_ms` when they are
    whole hours), counters as interval energy per bucket (`bucket_ms`) unless `register`;
    `summary` holds count, mean, min, max (and sum for energy) over the whole window, of the
    measured origin when there is one."""
    q = replace(w, max_points=max_points, register=register, apply_multiplier=apply_multiplier)

    def work(conn: Connection, user: Principal) -> bytes:
        return columns.dumps(chart.chart(conn, store, user, q, budget=budget))

    return Response(await run_in_threadpool(reading.run, work), media_type="application/json")


@router.get(
    f"{_SERIES}/completeness",
    summary="Get the completeness of a signal per day, and its gaps",
    responses={
        200: {"description": "Points per day against the expected, and the gaps"},
        **_RESPONSES,
    },
)
def get_signal_completeness(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    budget: BudgetDep,
    w: SeriesWindow,
    signal_origin_id: Annotated[
        int, Query(ge=1, le=5, description="The origin counted (1 measured)")
    ] = 1,
    tz: Tz = None,
) -> Response:
    """The reading interval (`step_ms`, the median gap), per day (UTC, or local in `tz`) the
    points found and expected at that interval, and the gaps (a next reading later than 1.5
    steps), longest first, newest versions as of `as_of`."""
    body = chart.completeness(conn, store, user, w, budget=budget, origin=signal_origin_id, tz=tz)
    return Response(columns.dumps(body), media_type="application/json")
