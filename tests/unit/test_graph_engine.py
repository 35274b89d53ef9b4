"""The graph engine: validation with node/param locations, cycles, ordering, template filling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from besmart_server.server.errors import Invalid, NotFound
from besmart_server.server.graphs.builtin import BUILTIN, builtin_graph
from besmart_server.server.graphs.engine import parse_graph, prepare, run, write_targets
from besmart_server.server.graphs.operator_api import Env, Operator, Params, Series, grid
from besmart_server.server.graphs.operators import REGISTRY
from tests.unit.graph_memory import MemoryContext, ms

TRACE: list[tuple[int, int, Any]] = []  # (item, node, label) in execution order


class ConstParams(Params):
    value: float
    n: int = 4
    tags: list[str] = Field(default_factory=list)


def _const(inputs: Sequence[Series], p: ConstParams, env: Env) -> Series:
    TRACE.append((env.item, env.node, p.value))
    index = grid(env.since, env.since + pd.Timedelta(minutes=15 * p.n), 15)
    env.metrics["n"] = p.n
    return pd.Series(p.value, index=index, dtype=float)


class TraceParams(Params):
    label: str = ""


def _trace(inputs: Sequence[Series], p: TraceParams, env: Env) -> Series:
    TRACE.append((env.item, env.node, p.label))
    return inputs[0] if inputs else pd.Series(dtype=float)


def _diff(inputs: Sequence[Series], p: TraceParams, env: Env) -> Series:
    return inputs[0] - inputs[1]


REG: dict[str, Operator[Any]] = {
    "const": Operator("const", ConstParams, _const),
    "trace": Operator("trace", TraceParams, _trace, 0, None),
    "diff": Operator("diff", TraceParams, _diff, 2, 2),
    **REGISTRY,
}
SINCE, TILL = ms("2024-01-01"), ms("2024-01-02")


@pytest.fixture(autouse=True)
def _clear_trace() -> None:
    TRACE.clear()


def _invalid(graph: Any) -> Invalid:
    with pytest.raises(Invalid) as exc:
        parse_graph(graph, REG)
    return exc.value


def node(function: str, **params: Any) -> dict[str, Any]:
    return {"function": function, "params": params}


def edges(*pairs: tuple[int, int]) -> list[dict[str, int]]:
    return [{"from": a, "to": b} for a, b in pairs]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "loc", "type_"),
    [
        pytest.param({"nodes": []}, ["nodes"], "value_error", id="no-nodes"),
        pytest.param(
            {"nodes": [node("const", value=1), node("nope")]},
            ["nodes", 1, "function"],
            "value_error",
            id="unknown-function",
        ),
        pytest.param(
            {"nodes": [node("scale", factor=2), node("const")], "edges": edges((1, 0))},
            ["nodes", 1, "params", "value"],
            "missing",
            id="missing-param",
        ),
        pytest.param(
            {"nodes": [node("const", value="lots")]},
            ["nodes", 0, "params", "value"],
            "float_parsing",
            id="ill-typed-param",
        ),
        pytest.param(
            {"nodes": [node("const", value=1, n=-1.5)]},
            ["nodes", 0, "params", "n"],
            "int_from_float",
            id="ill-typed-int",
        ),
        pytest.param(
            {"nodes": [node("const", value=1, colour="red")]},
            ["nodes", 0, "params", "colour"],
            "extra_forbidden",
            id="unknown-param",
        ),
        pytest.param(
            {"nodes": [node("write", client_cid=1, sensor_mid=2, moid=3, origin=1)]},
            ["nodes", 0, "params", "origin"],
            "literal_error",
            id="measured-origin-not-writable",
        ),
        pytest.param(
            {"nodes": [node("const", value=1)], "edges": edges((0, 5))},
            ["edges", 0, "to"],
            "value_error",
            id="edge-to-unknown-node",
        ),
        pytest.param(
            {"nodes": [node("const", value=1)], "edges": [{"from": "0", "to": 0}]},
            ["edges", 0, "from"],
            "int_type",
            id="edge-not-int",
        ),
        pytest.param(
            {"nodes": [node("const", value=1), node("diff")], "edges": edges((0, 1))},
            ["nodes", 1, "inputs"],
            "value_error",
            id="too-few-inputs",
        ),
        pytest.param(
            {"nodes": [node("const", value=1), node("const", value=2)], "edges": edges((0, 1))},
            ["nodes", 1, "inputs"],
            "value_error",
            id="input-to-a-source",
        ),
        pytest.param(
            {"nodes": [node("const", value={"$param": ""})]},
            ["nodes", 0, "params", "value"],
            "value_error",
            id="bad-template",
        ),
    ],
)
def test_invalid_graphs_name_the_node_and_parameter(
    graph: dict[str, Any], loc: list[Any], type_: str
) -> None:
    err = _invalid(graph)
    assert err.loc == loc
    assert err.type_ == type_
    assert err.status == 422


def test_a_cycle_is_rejected_naming_its_nodes() -> None:
    graph = {
        "nodes": [node("const", value=1), *[node("trace", label=x) for x in "abc"]],
        "edges": edges((0, 1), (1, 2), (2, 3), (3, 1)),
    }
    err = _invalid(graph)
    assert err.loc == ["edges", 1]
    assert "[1, 2, 3]" in err.detail


def test_a_self_loop_is_a_cycle() -> None:
    err = _invalid({"nodes": [node("trace")], "edges": edges((0, 0))})
    assert err.loc == ["edges", 0]
    assert "[0]" in err.detail


def test_since_not_before_till_is_rejected_before_anything_is_read() -> None:
    ctx = MemoryContext()
    g = {"nodes": [node("signals", client_cid=1, sensor_mid=2, moid=32)]}
    with pytest.raises(Invalid) as exc:
        run("g", g, {}, TILL, TILL, ctx, registry=REG)
    assert exc.value.loc == ["query", "since"]
    assert ctx.reads == []


# --- ordering ---------------------------------------------------------------------------------


def test_order_is_topological_and_smallest_index_first() -> None:
    graph = {
        "nodes": [
            node("trace", label="sink"),
            node("trace", label="middle"),
            node("const", value=2),
            node("const", value=3),
            node("trace", label="loose"),
        ],
        "edges": edges((3, 1), (2, 1), (1, 0)),
    }
    parsed = parse_graph(graph, REG)
    assert parsed.order == (2, 3, 1, 0, 4)
    run("g", parsed, {}, SINCE, TILL, MemoryContext(), registry=REG)
    assert [n for _, n, _ in TRACE] == [2, 3, 1, 0, 4]


def test_inputs_arrive_in_edge_order() -> None:
    graph = {
        "nodes": [node("const", value=10), node("const", value=3), node("diff"), node("trace")],
        "edges": edges((1, 2), (0, 2), (2, 3)),
    }
    parsed = parse_graph(graph, REG)
    assert parsed.inputs_of(2) == [1, 0]
    ctx = MemoryContext()
    g2 = {
        "nodes": [*graph["nodes"], node("write", client_cid=1, sensor_mid=9, moid=1011, origin=3)],
        "edges": [*graph["edges"], *edges((3, 4))],
    }
    record = run("g", g2, {}, SINCE, TILL, ctx, registry=REG, run_time=123)
    np.testing.assert_array_equal(ctx.written[(1, 9, 1011, 3)].to_numpy(), [-7.0] * 4)
    assert record.points_written == {"1.9/1011/3": 4}
    assert record.run_time == 123
    assert record.metrics == [{"0:const": {"n": 4}, "1:const": {"n": 4}, "4:write": {"points": 4}}]


# --- templates --------------------------------------------------------------------------------

TEMPLATED = {
    "nodes": [
        node(
            "const",
            value={"$param": "params.power"},
            n={"$param": "n", "default": 2},
            tags={"$param": "tags", "default": []},
        ),
        node(
            "write",
            client_cid={"$param": "client_cid"},
            sensor_mid={"$param": "sensor_mid"},
            moid=1011,
            origin=4,
        ),
    ],
    "edges": edges((0, 1)),
}


def test_an_object_body_runs_once_with_whole_values_substituted() -> None:
    ctx = MemoryContext()
    body = {"client_cid": 7, "sensor_mid": 70, "params": {"power": 2.5}, "n": 3, "tags": ["a"]}
    plans = prepare(parse_graph(TEMPLATED, REG), body, REG)
    assert len(plans) == 1
    const = plans[0][0]
    assert isinstance(const, ConstParams)
    assert (const.value, const.n, const.tags) == (2.5, 3, ["a"])
    record = run("t", TEMPLATED, body, SINCE, TILL, ctx, registry=REG)
    assert record.items == 1
    assert record.points_written == {"7.70/1011/4": 3}
    assert ctx.written[(7, 70, 1011, 4)].tolist() == [2.5, 2.5, 2.5]


def test_a_list_body_runs_once_per_item_and_defaults_fill_gaps() -> None:
    ctx = MemoryContext()
    body = [
        {"client_cid": 1, "sensor_mid": 10, "params": {"power": 1.0}},
        {"client_cid": 1, "sensor_mid": 11, "params": {"power": 4.0}, "n": None},
    ]
    record = run("t", TEMPLATED, body, SINCE, TILL, ctx, registry=REG)
    assert record.items == 2
    assert [(item, v) for item, n, v in TRACE if n == 0] == [(0, 1.0), (1, 4.0)]
    assert record.points_written == {"1.10/1011/4": 2, "1.11/1011/4": 2}  # n: null → default 2
    assert ctx.written[(1, 11, 1011, 4)].tolist() == [4.0, 4.0]


def test_a_missing_template_value_names_the_body_item_and_nothing_runs() -> None:
    ctx = MemoryContext()
    body = [
        {"client_cid": 1, "sensor_mid": 10, "params": {"power": 1.0}},
        {"client_cid": 1, "sensor_mid": 11, "params": {}},
    ]
    with pytest.raises(Invalid) as exc:
        run("t", TEMPLATED, body, SINCE, TILL, ctx, registry=REG)
    assert exc.value.loc == ["body", 1, "params", "power"]
    assert "nodes/0/params/value" in exc.value.detail
    assert TRACE == []
    assert ctx.written == {}


def test_an_ill_typed_body_value_names_the_node_and_parameter() -> None:
    body = [{"client_cid": 1, "sensor_mid": 10, "params": {"power": "high"}}]
    with pytest.raises(Invalid) as exc:
        run("t", TEMPLATED, body, SINCE, TILL, MemoryContext(), registry=REG)
    assert exc.value.loc == ["nodes", 0, "params", "value"]
    assert "body item 0" in exc.value.detail


def test_cross_field_rules_are_checked_before_running() -> None:
    graph = {"nodes": [node("wind", lat=52, lon=21, power=100, cut_in_speed=13.0)]}
    with pytest.raises(Invalid) as exc:
        run("w", graph, {}, SINCE, TILL, MemoryContext())
    assert exc.value.loc == ["nodes", 0, "params", "rated_speed"]


# --- the shipped graphs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_graphs_are_valid(name: str) -> None:
    parsed = parse_graph(builtin_graph(name))
    assert sorted(parsed.order) == list(range(len(parsed.nodes)))


def test_an_unknown_builtin_is_not_found() -> None:
    with pytest.raises(NotFound):
        builtin_graph("nope")


def test_builtin_estimation_takes_the_real_services_body_as_is() -> None:
    days = pd.date_range("2024-03-01", periods=9, freq="D", tz="UTC")
    ctx = MemoryContext()
    ctx.signals[(14, 100, 32)] = pd.Series(np.cumsum([500, 8, 9, 7, 0, 12, 8, 9, 11.0]), index=days)
    ctx.signals[(14, 101, 32)] = pd.Series(
        np.cumsum([0, 20, 21, 19, 22, 20, 18, 25, 21.0]), index=days
    )
    hours = pd.date_range("2024-02-28", "2024-03-12", freq="h", tz="UTC")
    ctx.weather[1031] = pd.Series(
        np.clip(500 * np.sin((hours.hour - 6) / 12 * np.pi), 0, None), index=hours
    )
    ctx.weather[139] = pd.Series(278.0, index=hours)
    ctx.weather[1041] = pd.Series(6.0, index=hours)
    common = {
        "profile_signal_moid": 1011,
        "profile_signal_freq_minutes": 15,
        "zone_signals_freq_minutes": 1440,
        "lat": 52.23,
        "lon": 21.01,
        "signal_discrepancy_tolerance_kWh": 0.01,
    }
    body = [
        {
            "client_cid": 14,
            "sensor_mid": 100,
            **common,
            "params": {
                "type": "PV",
                "power": 3.0,
                "inclination": 35,
                "orientation": 180,
                "efficiency": 0.9,
                "cut_in_speed": None,
                "cut_out_speed": None,
                "hub_height": None,
            },
        },
        {
            "client_cid": 14,
            "sensor_mid": 101,
            **common,
            "params": {
                "type": "wind",
                "power": 5.0,
                "inclination": None,
                "orientation": None,
                "efficiency": 0.95,
                "cut_in_speed": 3,
                "cut_out_speed": 25,
                "hub_height": 30,
            },
        },
    ]
    since, till = ms("2024-03-02"), ms("2024-03-08")
    record = run("estimation", builtin_graph("estimation"), body, since, till, ctx)
    assert record.items == 2
    assert record.points_written == {"14.100/1011/4": 6 * 96, "14.101/1011/4": 6 * 96}
    daily = ctx.written[(14, 100, 1011, 4)].resample("D").sum()
    np.testing.assert_allclose(daily.to_numpy(), [9, 7, 0, 12, 8, 9], atol=1e-9)
    daily = ctx.written[(14, 101, 1011, 4)].resample("D").sum()
    np.testing.assert_allclose(daily.to_numpy(), [21, 19, 22, 20, 18, 25], atol=1e-9)
    est = record.metrics[0]["3:estimation"]
    assert est["within_tolerance"] is True
    assert est["periods"] == 7  # readings a day either side of the window close its edges
    assert est["periods_rejected"] == 0
    zero_day = ctx.written[(14, 100, 1011, 4)]["2024-03-04"]
    assert len(zero_day) == 96
    assert (zero_day == 0).all()
    assert record.metrics[1]["2:generation"]["type"] == "wind"


def test_write_targets_are_known_before_running() -> None:
    body = [
        {"client_cid": 1, "sensor_mid": 10, "params": {"power": 1.0}},
        {"client_cid": 2, "sensor_mid": 20, "params": {"power": 1.0}},
    ]
    parsed = parse_graph(TEMPLATED, REG)
    assert write_targets(parsed, prepare(parsed, body, REG)) == {(1, 10), (2, 20)}


def test_builtin_load_forecast_writes_a_day_ahead_from_a_register() -> None:
    ctx = MemoryContext()
    idx = pd.date_range("2024-02-01", "2024-03-07", freq="15min", inclusive="left", tz="UTC")
    hour = idx.hour + idx.minute / 60
    per_quarter = 0.2 + 0.15 * np.exp(-((hour - 19) ** 2) / 6)
    ctx.signals[(3, 30, 32)] = pd.Series(1000 + np.cumsum(per_quarter), index=idx)
    body = {"client_cid": 3, "sensor_mid": 30}
    record = run(
        "load_forecast",
        builtin_graph("load_forecast"),
        body,
        ms("2024-03-05"),
        ms("2024-03-06"),
        ctx,
    )
    assert record.points_written == {"3.30/1011/2": 96}
    assert record.metrics[0]["2:forecast_load"]["model"] == "lightgbm"
    out = ctx.written[(3, 30, 1011, 2)]
    # energy per quarter of the next quarter's counter minus this one: the profile shifted by one
    truth = pd.Series(per_quarter, index=idx).shift(-1).loc[out.index]
    assert float((out - truth).abs().mean()) < 0.01


def test_builtin_pv_forecast_without_measurements_writes_the_model() -> None:
    ctx = MemoryContext()
    hours = pd.date_range("2024-06-01", "2024-06-20", freq="h", tz="UTC")
    ctx.weather[1031] = pd.Series(
        np.clip(700 * np.sin((hours.hour - 3) / 16 * np.pi), 0, None), index=hours
    )
    body = {"client_cid": 1, "sensor_mid": 7, "lat": 52.2, "lon": 21.0, "params": {"power": 4.0}}
    record = run(
        "pv_forecast", builtin_graph("pv_forecast"), body, ms("2024-06-18"), ms("2024-06-19"), ctx
    )
    assert record.points_written == {"1.7/70/2": 96}
    assert record.metrics[0]["1:forecast_pv"] == {
        "intervals": 96,
        "decomposition": "erbs",
        "bias_ratio": 1.0,
        "bias_intervals": 0,
    }
    out = ctx.written[(1, 7, 70, 2)]
    assert out.iloc[0] == 0.0  # midnight
    assert 2.0 < out.max() < 4.0  # a 4 kWp array at 700 W/m2 GHI
    assert ("weather", 52.2, 21.0, 1031) in {r[:4] for r in ctx.reads}
    assert any(r[0] == "weather" and r[6].get("signal_origin_id") == 2 for r in ctx.reads)


# --- the run record's one serialisation point ---------------------------------------------


def test_run_records_serialise_numpy_and_pandas_values_as_plain_json() -> None:
    import orjson

    from besmart_server.server.graphs import records

    record = {
        "count": np.int64(3),
        "small": np.int8(-2),
        "share": np.float32(0.5),
        "ok": np.bool_(True),
        "missing": np.float64("nan"),
        "huge": float("inf"),
        "values": np.array([1, 2]),
        "floats": np.array([np.nan, 1.5]),
        "at": pd.Timestamp(1_782_864_000_000, unit="ms", tz="UTC"),
        "step": pd.Timedelta(minutes=15),
        "mids": {np.int64(7), 3},
        7: "an int key",
        "nested": [{"gaps": np.int64(1)}],
    }
    text = records.dumps(record)
    assert orjson.loads(text) == {
        "count": 3,
        "small": -2,
        "share": 0.5,
        "ok": True,
        "missing": None,
        "huge": None,
        "values": [1, 2],
        "floats": [None, 1.5],
        "at": 1_782_864_000_000,
        "step": 900.0,
        "mids": [3, 7],
        "7": "an int key",
        "nested": [{"gaps": 1}],
    }
    assert records.plain(record) == orjson.loads(text)
    with pytest.raises(TypeError, match="object"):
        records.dumps({"x": object()})


class ReadParams(Params):
    delta_t: int = 15


def _bad_read(inputs: Sequence[Series], p: ReadParams, env: Env) -> Series:
    raise Invalid("delta_t must be a positive number of minutes", loc=("query", "delta_t"))


def _bad_other(inputs: Sequence[Series], p: ReadParams, env: Env) -> Series:
    raise Invalid("something else", loc=("query", "till"))


@pytest.mark.parametrize(
    ("fn", "loc"),
    [(_bad_read, ["nodes", 1, "params", "delta_t"]), (_bad_other, ["nodes", 1])],
    ids=["names-a-param", "names-the-node"],
)
def test_a_422_from_a_service_a_node_calls_names_the_node(fn: Any, loc: list[Any]) -> None:
    registry = {**REG, "read": Operator("read", ReadParams, fn, 0, 1)}
    graph = {"nodes": [node("const", value=1), node("read")], "edges": edges((0, 1))}
    with pytest.raises(Invalid) as exc:
        run("g", parse_graph(graph, registry), {}, SINCE, TILL, MemoryContext(), registry=registry)
    assert exc.value.loc == loc


def _pv_ctx() -> MemoryContext:
    """Sunny hours and 14 days of measured output that is the model's times a noisy ratio."""
    ctx = MemoryContext()
    hours = pd.date_range("2024-06-01", "2024-06-20", freq="h", tz="UTC")
    ctx.weather[1031] = pd.Series(
        np.clip(700 * np.sin((hours.hour - 3) / 16 * np.pi), 0, None), index=hours
    )
    idx = pd.date_range("2024-06-04", "2024-06-18", freq="15min", inclusive="left", tz="UTC")
    hour = idx.hour + idx.minute / 60
    clear = np.clip(3.0 * np.sin((hour - 3) / 16 * np.pi), 0, None)
    ratio = np.random.default_rng(5).uniform(0.5, 1.1, len(idx))
    ctx.signals[(1, 7, 70)] = pd.Series(clear * ratio, index=idx)
    return ctx


@pytest.mark.parametrize("band", [False, True])
def test_builtin_pv_forecast_band_writes_p10_and_p90_around_the_p50(band: bool) -> None:
    ctx = _pv_ctx()
    body = {
        "client_cid": 1,
        "sensor_mid": 7,
        "lat": 52.2,
        "lon": 21.0,
        "params": {"power": 4.0},
        "band": band,
    }
    record = run(
        "pv_forecast", builtin_graph("pv_forecast"), body, ms("2024-06-18"), ms("2024-06-19"), ctx
    )
    bands = {"1.7/1071/2": 96, "1.7/1072/2": 96} if band else {}
    assert record.points_written == {"1.7/70/2": 96, **bands}
    assert record.warnings == []
    if not band:
        assert all(int(key.split(":")[0]) < 3 for key in record.metrics[0])  # no band node
        return
    p50 = ctx.written[(1, 7, 70, 2)]
    p10, p90 = ctx.written[(1, 7, 1071, 2)], ctx.written[(1, 7, 1072, 2)]
    assert (p10 <= p50).all()
    assert (p50 <= p90).all()
    assert p90.max() - p10.max() > 0.1  # the measured ratios spread: so does the band


@pytest.mark.parametrize("band", [False, True])
def test_builtin_load_forecast_band_writes_p10_and_p90_around_the_p50(band: bool) -> None:
    ctx = MemoryContext()
    idx = pd.date_range("2024-02-01", "2024-03-07", freq="15min", inclusive="left", tz="UTC")
    hour = idx.hour + idx.minute / 60
    per_quarter = 0.2 + 0.15 * np.exp(-((hour - 19) ** 2) / 6)
    per_quarter = per_quarter + np.random.default_rng(2).normal(0, 0.03, len(idx))
    ctx.signals[(3, 30, 32)] = pd.Series(1000 + np.cumsum(per_quarter), index=idx)
    body = {"client_cid": 3, "sensor_mid": 30, "band": band}
    record = run(
        "load_forecast",
        builtin_graph("load_forecast"),
        body,
        ms("2024-03-05"),
        ms("2024-03-06"),
        ctx,
    )
    bands = {"3.30/1013/2": 96, "3.30/1014/2": 96} if band else {}
    assert record.points_written == {"3.30/1011/2": 96, **bands}
    if not band:
        assert all(int(key.split(":")[0]) < 4 for key in record.metrics[0])  # no band node
        return
    p50 = ctx.written[(3, 30, 1011, 2)]
    p10, p90 = ctx.written[(3, 30, 1013, 2)], ctx.written[(3, 30, 1014, 2)]
    assert (p10 <= p50).all()
    assert (p50 <= p90).all()
    assert float((p90 - p10).mean()) > 0.01


def test_bound_moves_only_what_is_on_the_wrong_side() -> None:
    idx = grid(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-01 01:00", tz="UTC"), 15)
    a = pd.Series([1.0, 5.0, np.nan, 5.0], index=idx)
    b = pd.Series([2.0, 3.0, 3.0], index=idx[:3])  # no reference at the last time
    bound = REGISTRY["bound"]
    below = bound((a, b), bound.params(keep="below"), None)  # type: ignore[arg-type]
    above = bound((a, b), bound.params(keep="above"), None)  # type: ignore[arg-type]
    # the reference wins on the wrong side; a missing value stays missing; no reference: as is
    assert below.tolist()[:2] == [1.0, 3.0]
    assert above.tolist()[:2] == [2.0, 5.0]
    assert np.isnan(below.iloc[2])
    assert np.isnan(above.iloc[2])
    assert below.iloc[3] == above.iloc[3] == 5.0
