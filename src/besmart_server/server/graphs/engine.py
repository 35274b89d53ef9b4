"""The estimation-graph engine, pure: a DAG of operators over pandas series.

A graph is `{"nodes": [{"function": ..., "params": {...}}], "edges": [{"from": i, "to": j}]}`.
Node params may hold template parameters, `{"$param": "params.power", "default": 1.0}`, which a
run's body fills by whole-value substitution (the body's value keeps its JSON type). Everything
is validated before anything runs; operators reach storage only through a `Context`.

Series between nodes are float `pd.Series` indexed by a UTC `DatetimeIndex`. A node's inputs are
the outputs of the nodes with an edge into it, in the order those edges are listed.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from besmart_server.server.errors import Invalid, TooLarge
from besmart_server.server.graphs.operator_api import (
    MS_PER_DAY,
    MS_PER_MINUTE,
    TIME_MAX_MS,
    TIME_MIN_MS,
    TIME_RANGE,
    Context,
    Env,
    Incompatible,
    Loc,
    Operator,
    Params,
    Quantity,
    Registry,
    Series,
    Windowed,
    as_series,
    ms_to_ts,
)
from besmart_server.server.graphs.operators import REGISTRY

PARAM: Final = "$param"  # key of a template parameter: {"$param": "dotted.path", "default": ...}
DEFAULT: Final = "default"


def default_registry() -> Registry:
    """The built-in operators."""
    return REGISTRY


# --- the graph model ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One operator call."""

    function: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Edge:
    """The output of node `source` is an input of node `target`."""

    source: int
    target: int


@dataclass(frozen=True, slots=True)
class Graph:
    """A validated DAG and its execution order."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    order: tuple[int, ...]

    def inputs_of(self, node: int) -> list[int]:
        """The nodes feeding `node`, in edge order."""
        return [e.source for e in self.edges if e.target == node]

    def to_json(self) -> dict[str, Any]:
        """The graph in its wire shape."""
        return {
            "nodes": [{"function": n.function, "params": dict(n.params)} for n in self.nodes],
            "edges": [{"from": e.source, "to": e.target} for e in self.edges],
        }


def is_template(value: Any) -> bool:
    """Whether a param value is a template parameter."""
    return isinstance(value, dict) and PARAM in value


def _has_template(value: Any) -> bool:
    if is_template(value):
        return True
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def has_templates(graph: Graph) -> bool:
    """Whether any node param waits for a run's body."""
    return any(_has_template(dict(node.params)) for node in graph.nodes)


def _check_template(value: Any, loc: Loc) -> None:
    if is_template(value):
        path = value[PARAM]
        if not isinstance(path, str) or not path or set(value) - {PARAM, DEFAULT}:
            raise Invalid(
                'A template parameter is {"$param": "dotted.path"} with an optional "default"',
                loc=loc,
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_template(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_template(v, (*loc, i))


def _first_error(exc: ValidationError) -> tuple[Loc, str, str]:
    err = exc.errors(include_url=False)[0]
    return tuple(err["loc"]), str(err["msg"]), str(err["type"])


def _check_literals(op: Operator[Any], params: Mapping[str, Any], loc: Loc) -> None:
    """Validate the params that hold no template now; the rest are validated once filled."""
    fields = op.params.model_fields
    for key, value in params.items():
        if key not in fields:
            raise Invalid(
                f"Unknown parameter of {op.name!r}", loc=(*loc, key), type_="extra_forbidden"
            )
        _check_template(value, (*loc, key))
        candidate = value.get(DEFAULT) if is_template(value) else value
        if is_template(value) and DEFAULT not in value:
            continue
        if _has_template(candidate):
            continue
        blank = op.params.model_construct()
        try:
            op.params.__pydantic_validator__.validate_assignment(blank, key, candidate)
        except ValidationError as exc:
            _, msg, type_ = _first_error(exc)
            raise Invalid(msg, loc=(*loc, key), type_=type_) from None
    for name, info in fields.items():
        if info.is_required() and name not in params:
            raise Invalid(f"Field required by {op.name!r}", loc=(*loc, name), type_="missing")


def _int(value: Any, loc: Loc) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("Input should be a valid integer", loc=loc, type_="int_type")
    return value


def _topological_order(n: int, edges: Sequence[Edge]) -> tuple[int, ...]:
    """Kahn's algorithm, smallest ready index first, so the order is deterministic."""
    indegree = [0] * n
    successors: list[list[int]] = [[] for _ in range(n)]
    for e in edges:
        indegree[e.target] += 1
        successors[e.source].append(e.target)
    ready = [i for i in range(n) if indegree[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in successors[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < n:
        stuck = sorted(set(range(n)) - set(order))
        k = next(k for k, e in enumerate(edges) if e.source in stuck and e.target in stuck)
        raise Invalid(f"The graph has a cycle through nodes {stuck}", loc=("edges", k))
    return tuple(order)


def parse_graph(raw: Any, registry: Registry | None = None) -> Graph:
    """Validate a graph's shape, functions, literal params, input counts and acyclicity."""
    registry = default_registry() if registry is None else registry
    if not isinstance(raw, Mapping):
        raise Invalid("A graph is an object with 'nodes' and 'edges'", loc=())
    raw_nodes = raw.get("nodes")
    raw_edges = raw.get("edges", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise Invalid("'nodes' must be a non-empty list", loc=("nodes",))
    if not isinstance(raw_edges, list):
        raise Invalid("'edges' must be a list", loc=("edges",))
    nodes: list[Node] = []
    for i, rn in enumerate(raw_nodes):
        if not isinstance(rn, Mapping):
            raise Invalid("A node is an object with 'function' and 'params'", loc=("nodes", i))
        fn = rn.get("function")
        if not isinstance(fn, str) or fn not in registry:
            raise Invalid(f"Unknown function {fn!r}", loc=("nodes", i, "function"))
        params = rn.get("params", {})
        if not isinstance(params, Mapping):
            raise Invalid("'params' must be an object", loc=("nodes", i, "params"))
        if set(rn) - {"function", "params"}:
            extra = sorted(set(rn) - {"function", "params"})[0]
            raise Invalid("Unknown key of a node", loc=("nodes", i, extra), type_="extra_forbidden")
        _check_literals(registry[fn], params, ("nodes", i, "params"))
        nodes.append(Node(fn, dict(params)))
    edges: list[Edge] = []
    for k, re_ in enumerate(raw_edges):
        if not isinstance(re_, Mapping) or set(re_) != {"from", "to"}:
            raise Invalid("An edge is {'from': i, 'to': j}", loc=("edges", k))
        ends = [_int(re_[key], ("edges", k, key)) for key in ("from", "to")]
        for key, end in zip(("from", "to"), ends, strict=True):
            if not 0 <= end < len(nodes):
                raise Invalid(f"No node {end}", loc=("edges", k, key))
        edges.append(Edge(ends[0], ends[1]))
    order = _topological_order(len(nodes), edges)
    for j, node in enumerate(nodes):
        op = registry[node.function]
        count = sum(1 for e in edges if e.target == j)
        hi = op.max_inputs
        if count < op.min_inputs or (hi is not None and count > hi):
            want = f"{op.min_inputs}..{'n' if hi is None else hi}"
            raise Invalid(
                f"{op.name!r} takes {want} inputs, the graph gives it {count}",
                loc=("nodes", j, "inputs"),
            )
    return Graph(tuple(nodes), tuple(edges), order)


# --- filling and running --------------------------------------------------------------------

_MISSING: Final = object()


def _lookup(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
        if value is None:
            return _MISSING  # an explicit null takes the default too
    return value


def fill(value: Any, body: Any, body_loc: Loc, param_loc: Loc) -> Any:
    """`value` with every template parameter replaced by the body's value (or its default)."""
    if is_template(value):
        path = str(value[PARAM])
        found = _lookup(body, path)
        if found is not _MISSING:
            return found
        if DEFAULT in value:
            return value[DEFAULT]
        where = "/".join(str(p) for p in param_loc)
        raise Invalid(
            f"Missing template parameter {path!r} (for {where})",
            loc=(*body_loc, *path.split(".")),
            type_="missing",
        )
    if isinstance(value, dict):
        return {k: fill(v, body, body_loc, (*param_loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, body, body_loc, (*param_loc, i)) for i, v in enumerate(value)]
    return value


def body_items(body: Any) -> list[tuple[Loc, Any]]:
    """The run's items: an object runs once, a list once per element."""
    if isinstance(body, list):
        return [(("body", i), item) for i, item in enumerate(body)]
    if body is None:
        body = {}
    return [(("body",), body)]


def prepare(graph: Graph, body: Any, registry: Registry | None = None) -> list[list[Params]]:
    """Every item's validated params per node, or the first Invalid."""
    registry = default_registry() if registry is None else registry
    plans: list[list[Params]] = []
    for body_loc, item in body_items(body):
        plan: list[Params] = []
        for j, node in enumerate(graph.nodes):
            op = registry[node.function]
            loc: Loc = ("nodes", j, "params")
            raw = fill(dict(node.params), item, body_loc, loc)
            try:
                params = op.params.model_validate(raw)
            except ValidationError as exc:
                err_loc, msg, type_ = _first_error(exc)
                if len(body_loc) > 1:
                    msg = f"{msg} (body item {body_loc[1]})"
                raise Invalid(msg, loc=(*loc, *err_loc), type_=type_) from None
            if op.check is not None:
                broken = op.check(params, len(graph.inputs_of(j)))
                if broken is not None:
                    raise Invalid(broken[1], loc=(*loc, broken[0]))
            plan.append(params)
        _check_quantities(graph, plan, registry, body_loc)
        plans.append(plan)
    return plans


def _check_quantities(
    graph: Graph, plan: Sequence[Params], registry: Registry, body_loc: Loc
) -> None:
    """Follow what each node outputs through the graph; 422 where a node cannot take what
    flows into it (a voltage written into an energy signal, a sum of power and energy...)."""
    out: dict[int, Quantity | None] = {}
    for j in graph.order:
        op = registry[graph.nodes[j].function]
        given = [out[i] for i in graph.inputs_of(j)]
        try:
            out[j] = None if op.output is None else op.output(plan[j], given)
        except Incompatible as exc:
            msg = exc.message
            if len(body_loc) > 1:
                msg = f"{msg} (body item {body_loc[1]})"
            raise Invalid(msg, loc=("nodes", j, *exc.where), type_="unit_mismatch") from None


def write_targets(graph: Graph, plans: Sequence[Sequence[Params]]) -> set[tuple[int, int]]:
    """The (client_cid, sensor_mid) pairs a run writes: each needs the caller's `write` role."""
    found: set[tuple[int, int]] = set()
    for plan in plans:
        for j, node in enumerate(graph.nodes):
            if node.function == "write":
                target = plan[j].model_dump()
                found.add((int(target["client_cid"]), int(target["sensor_mid"])))
    return found


def check_window(since: int, till: int, *, max_window_days: int | None = None) -> None:
    """A non-empty half-open window of calendar time the engine can compute on (422 naming
    since or till), at most `max_window_days` long (413, as a data read answers)."""
    for name, value in (("since", since), ("till", till)):
        if not TIME_MIN_MS <= value <= TIME_MAX_MS:
            raise Invalid(
                f"{name} must be a UTC ms timestamp from {TIME_RANGE}", loc=("query", name)
            )
    if since >= till:
        raise Invalid("since must be before till", loc=("query", "since"))
    if max_window_days is not None and till - since > max_window_days * MS_PER_DAY:
        raise TooLarge(
            f"The window since..till spans {(till - since) / MS_PER_DAY:.1f} days; at most "
            f"{max_window_days} (max_window_days): run a shorter window"
        )


def check_spans(
    graph: Graph,
    plans: Sequence[Sequence[Params]],
    since: int,
    till: int,
    *,
    max_window_days: int | None = None,
) -> None:
    """Every node's widened window (lookback/lookahead) within the engine's calendar range
    (422 naming the parameter) and at most `max_window_days` long (413)."""
    for plan in plans:
        for j, params in enumerate(plan):
            if not isinstance(params, Windowed):
                continue
            lo = since - params.lookback_minutes * MS_PER_MINUTE
            hi = till + params.lookahead_minutes * MS_PER_MINUTE
            for name, ok in (
                ("lookback_minutes", lo >= TIME_MIN_MS),
                ("lookahead_minutes", hi <= TIME_MAX_MS),
            ):
                if not ok:
                    raise Invalid(
                        f"{name} reaches beyond {TIME_RANGE}", loc=("nodes", j, "params", name)
                    )
            if max_window_days is not None and hi - lo > max_window_days * MS_PER_DAY:
                raise TooLarge(
                    f"Node {j} ({graph.nodes[j].function}) reads {(hi - lo) / MS_PER_DAY:.1f} "
                    f"days (the window widened by lookback_minutes/lookahead_minutes); at most "
                    f"{max_window_days} (max_window_days): run a shorter window"
                )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a run did: graph, window, items, points written per target, metrics, duration."""

    graph: str
    since: int
    till: int
    run_time: int
    items: int
    points_written: dict[str, int]
    metrics: list[dict[str, dict[str, Any]]]
    duration_s: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record in its wire shape."""
        return {
            "graph": self.graph,
            "since": self.since,
            "till": self.till,
            "run_time": self.run_time,
            "items": self.items,
            "points_written": dict(self.points_written),
            "metrics": self.metrics,
            "duration_s": self.duration_s,
            "warnings": list(self.warnings),
        }


def _at_node(exc: Invalid, node: int, params: Params) -> Invalid:
    """A 422 from a service the node called (a read's `query.output_unit_id`...), named by the
    node and, where the service names one of the node's parameters, by that parameter."""
    if exc.loc[:1] == ["nodes"]:
        return exc
    named = [
        part for part in exc.loc if isinstance(part, str) and part in type(params).model_fields
    ]
    where: Loc = ("nodes", node, "params", named[-1]) if named else ("nodes", node)
    return Invalid(exc.detail, loc=where, type_=exc.type_)


def execute(
    graph: Graph, params: Sequence[Params], env: Env, registry: Registry
) -> tuple[dict[int, Series], dict[str, dict[str, Any]]]:
    """Run one item's plan in topological order: every node's output, and their metrics."""
    outputs: dict[int, Series] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for j in graph.order:
        op = registry[graph.nodes[j].function]
        env.node, env.metrics = j, {}
        try:
            out = op(tuple(outputs[i] for i in graph.inputs_of(j)), params[j], env)
        except Invalid as exc:
            raise _at_node(exc, j, params[j]) from None
        outputs[j] = as_series(out)
        if env.metrics:
            metrics[f"{j}:{op.name}"] = env.metrics
    return outputs, metrics


def run(
    name: str,
    graph: Graph | Mapping[str, Any],
    body: Any,
    since: int,
    till: int,
    ctx: Context,
    *,
    registry: Registry | None = None,
    run_time: int | None = None,
) -> RunRecord:
    """Validate everything, then run the graph once per body item; the run record."""
    started = time.perf_counter()
    registry = default_registry() if registry is None else registry
    check_window(since, till)
    parsed = graph if isinstance(graph, Graph) else parse_graph(graph, registry)
    plans = prepare(parsed, body, registry)
    now = run_time if run_time is not None else int(time.time() * 1000)
    written: dict[str, int] = {}
    all_metrics: list[dict[str, dict[str, Any]]] = []
    warnings: list[str] = []
    for item, plan in enumerate(plans):
        env = Env(ctx, ms_to_ts(since), ms_to_ts(till), ms_to_ts(now), item=item, written=written)
        _, item_metrics = execute(parsed, plan, env, registry)
        all_metrics.append(item_metrics)
        for key, node_metrics in item_metrics.items():
            if node_metrics.get("warning"):
                where = key if len(plans) == 1 else f"item {item}, {key}"
                warnings.append(f"{where}: {node_metrics['warning']}")
    return RunRecord(
        graph=name,
        since=since,
        till=till,
        run_time=now,
        items=len(plans),
        points_written=written,
        metrics=all_metrics,
        duration_s=time.perf_counter() - started,
        warnings=warnings,
    )
