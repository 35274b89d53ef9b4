"""`besmart graph ...`: list, show, store, run and backtest graphs; run a distributed worker.

The CLI acts as the operator (an admin) against BESMART_DATABASE_URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from besmart_server.server.access import Principal
from besmart_server.server.cli_db import open_database
from besmart_server.server.config import Settings
from besmart_server.server.weather.cli import parse_time

graph_app = typer.Typer(help="Estimation graphs: list, show, put, run, evaluate; workers.")

OPERATOR = Principal(user_id=None, login="cli", is_admin=True)


def _json_arg(text: str) -> Any:
    """JSON given inline or as @path."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


Since = Annotated[str, typer.Option(help="window start: ISO time (UTC) or ms")]
Till = Annotated[str, typer.Option(help="window end (exclusive): ISO time (UTC) or ms")]
BodyOpt = Annotated[str, typer.Option("--body", help="template parameters: JSON or @file")]


@graph_app.command("list")
def list_graphs() -> None:
    """Every graph: name, owner client (- for system/shipped), shipped or stored."""
    from besmart_server.server.graphs import service

    with open_database() as db, db.transaction(write=False) as conn:
        for g in service.list_graphs(conn, OPERATOR):
            owner = "-" if g.owner_cid is None else str(g.owner_cid)
            typer.echo(f"{g.name}\t{owner}\t{'shipped' if g.shipped else 'stored'}")


@graph_app.command("show")
def show(name: str) -> None:
    """A graph's definition as JSON."""
    from besmart_server.server.graphs import service

    with open_database() as db, db.transaction(write=False) as conn:
        _echo(service.find_graph(conn, OPERATOR, name).definition)


@graph_app.command("put")
def put(
    name: str,
    definition: Annotated[str, typer.Argument(help="the graph: JSON or @file")],
    client: Annotated[
        int | None, typer.Option(help="owning client of a new graph (omit: system graph)")
    ] = None,
) -> None:
    """Validate and store a graph under a name."""
    from besmart_server.server.graphs import service

    graph = _json_arg(definition)
    with open_database() as db, db.transaction() as conn:
        _, created = service.put_graph(conn, OPERATOR, name, graph, client_cid=client)
    typer.echo(f"{'created' if created else 'replaced'} {name}")


@graph_app.command("run")
def run(
    name: str,
    since: Since,
    till: Till,
    body: BodyOpt = "{}",
    task_async: Annotated[
        bool, typer.Option("--async", help="queue through BESMART_EXECUTOR (dramatiq)")
    ] = False,
) -> None:
    """Run a graph over [since, till) and print its run record (or the queued run's id)."""
    from besmart_server.server.graphs import service
    from besmart_server.server.graphs.executor import executor_for

    settings = Settings()
    parsed = _json_arg(body)
    lo, hi = parse_time(since), parse_time(till)
    with open_database(settings) as db:
        if task_async:
            executor = executor_for(settings, db)
            try:
                run_id = service.submit(
                    db,
                    OPERATOR,
                    executor,
                    name,
                    lo,
                    hi,
                    parsed,
                    max_window_days=settings.max_window_days,
                )
            finally:
                executor.shutdown()
            _echo({"run_id": run_id, "state": "queued", "executor": executor.kind})
            return
        _echo(
            service.run_now(db, OPERATOR, name, lo, hi, parsed, settings=settings, executor="cli")
        )


@graph_app.command("evaluate")
def evaluate(
    name: str,
    since: Since,
    till: Till,
    body: BodyOpt = "{}",
    horizon_hours: Annotated[int, typer.Option(help="hours each forecast covers")] = 24,
) -> None:
    """Backtest a forecast graph without leakage: MAE, rMAE, skill vs persistence (1d, 7d)."""
    from besmart_server.server.graphs.evaluate import backtest

    settings = Settings()
    parsed = _json_arg(body)
    with open_database(settings) as db:
        result = backtest(
            db,
            OPERATOR,
            name,
            parsed,
            parse_time(since),
            parse_time(till),
            settings=settings,
            horizon_ms=horizon_hours * 3_600_000,
        )
    scores = result.to_json()
    for key in ("mae", "rmae", "skill_1d", "skill_7d"):
        typer.echo(f"{key}\t{scores[key]:.4f}")
    typer.echo(f"issues\t{scores['issues']}\npoints\t{scores['forecast_points']}")


@graph_app.command("worker")
def worker(
    threads: Annotated[int, typer.Option(help="runs executed at once by this worker")] = 2,
) -> None:
    """Consume graph runs from the dramatiq queue (BESMART_BROKER_URL, BESMART_BROKER_QUEUE)."""
    from besmart_server.server.graphs.worker import serve

    settings = Settings()
    if not settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        typer.echo(
            f"BESMART_BROKER_URL must be a redis:// URL, not {settings.broker_url}", err=True
        )
        raise typer.Exit(2)
    with open_database(settings, upgrade=False) as db:
        typer.echo(f"graph worker on {settings.broker_queue} ({threads} threads); Ctrl-C stops")
        serve(db, settings, threads=threads)
