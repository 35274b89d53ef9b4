"""Backtests of forecast graphs without leakage: MAE, rMAE and skill against persistence.

The window is cut into forecast windows (one per horizon, a day by default). Each forecast is
the graph run over [start, start + horizon), issued `lead` before its start (0: at the start;
the field's day-ahead is issued at 06:00 the day before, a lead of 18 hours), through a
context that reads every signal *as of* the issue time: only versions acquired before it,
whatever their capture time, so a forecast never sees a value that was not yet stored when it
would have been issued. Nothing is written.
The actuals are what the graph's first `signals` node reads over the window, as the data stands
now; the forecast is the input of its `write` node (both in the same unit before writing).
Weather is read as stored (the weather service has no as-of reads yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.errors import Invalid
from besmart_server.server.graphs import engine, operator_api
from besmart_server.server.graphs.context import DbContext
from besmart_server.server.graphs.service import find_graph
from besmart_server.server.metrics import evaluate

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class Backtest:
    """The forecasts issued over a window, the actuals, and their scores."""

    forecast: operator_api.Series
    actual: operator_api.Series
    history: operator_api.Series
    issues: int
    scores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """Scores and counts."""
        return {
            **self.scores,
            "issues": self.issues,
            "forecast_points": len(self.forecast),
            "actual_points": len(self.actual),
        }


def _roles(graph: engine.Graph) -> tuple[int, int]:
    """(the first `signals` node, the node feeding the first `write` node)."""
    source = next((j for j in graph.order if graph.nodes[j].function == "signals"), None)
    writer = next((j for j in graph.order if graph.nodes[j].function == "write"), None)
    if source is None or writer is None:
        raise Invalid("evaluate needs a graph that reads a signal and writes one", loc=("graph",))
    return source, graph.inputs_of(writer)[0]


def backtest(
    db: Database,
    principal: Principal,
    name: str,
    body: Any,
    since: int,
    till: int,
    *,
    settings: Settings,
    horizon_ms: int = DAY_MS,
    lead_ms: int = 0,
) -> Backtest:
    """Forecast every `horizon_ms` over [since, till), each issued `lead_ms` before its window,
    and score it (one body item)."""
    engine.check_window(since, till)
    with db.transaction(write=False) as conn:
        found = find_graph(conn, principal, name)
    graph = engine.parse_graph(found.definition)
    plans = engine.prepare(graph, body)
    if len(plans) != 1:
        raise Invalid("evaluate scores one series: give one body object", loc=("body",))
    plan = plans[0]
    source, feeding = _roles(graph)
    registry = engine.default_registry()
    options = {
        "max_points_per_read": settings.max_points_per_read,
        "weather_radius_km": settings.weather_radius_km,
        "weather_neighbours": settings.weather_neighbours,
    }
    pieces: list[operator_api.Series] = []
    issues = 0
    for start in range(since, till, horizon_ms):
        end = min(start + horizon_ms, till)
        issue = start - lead_ms
        ctx = DbContext.over(db, principal, as_of=issue, **options)  # writes stay pending
        env = operator_api.Env(
            ctx,
            operator_api.ms_to_ts(start),
            operator_api.ms_to_ts(end),
            operator_api.ms_to_ts(issue),
        )
        outputs, _ = engine.execute(graph, plan, env, registry)
        out = outputs[feeding]
        pieces.append(out[(out.index >= env.since) & (out.index < env.till)])
        issues += 1
    forecast = operator_api.as_series(pd.concat(pieces)) if pieces else operator_api.empty_series()
    # The actuals, and a week before the window for the persistence forecasts, as stored now.
    now = DbContext.over(db, principal, **options)
    src = plan[source].model_copy(update={"lookback_minutes": 0, "lookahead_minutes": 0})
    env = operator_api.Env(
        now,
        operator_api.ms_to_ts(since - WEEK_MS),
        operator_api.ms_to_ts(till),
        operator_api.ms_to_ts(now_ms()),
    )
    history = operator_api.as_series(registry["signals"]((), src, env))
    actual = history[history.index >= operator_api.ms_to_ts(since)]
    return Backtest(forecast, actual, history, issues, evaluate(actual, forecast, history))
