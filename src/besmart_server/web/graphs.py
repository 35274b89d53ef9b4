"""The graphs pages: shipped and stored graphs with their template parameters, a form to run
one (in the request, or queued with its state polled live), and the user's runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from sqlalchemy import Connection, select

from besmart_server.schemas import ID_MAX
from besmart_server.server.access import Principal
from besmart_server.server.deps import ConnDep, DatabaseDep, SettingsDep
from besmart_server.server.errors import AppError, NotFound
from besmart_server.server.graphs import service as graphs
from besmart_server.server.graphs.engine import DEFAULT, PARAM
from besmart_server.server.graphs.router import get_executor
from besmart_server.server.graphs.tables import graph_runs
from besmart_server.server.users import security
from besmart_server.server.users import service as users
from besmart_server.web import timectl
from besmart_server.web.router import SessionDep, SessionOwnTx, form_fields, not_found_page, render

router = APIRouter(include_in_schema=False)
RUNS_SHOWN = 50


def template_params(definition: Any) -> list[dict[str, Any]]:
    """Every template parameter of a definition, by path: its default, or required."""
    found: dict[str, dict[str, Any]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if PARAM in value and isinstance(value[PARAM], str):
                p = value[PARAM]
                entry = found.setdefault(p, {"path": p, "required": True, "default": None})
                if DEFAULT in value:
                    entry.update(required=False, default=value[DEFAULT])
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(definition)
    return sorted(found.values(), key=lambda e: e["path"])


def body_skeleton(params: list[dict[str, Any]]) -> dict[str, Any]:
    """A run body with every parameter at its dotted path: its default, or null to fill."""
    body: dict[str, Any] = {}
    for p in params:
        node = body
        *parents, leaf = p["path"].split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = p["default"]
    return body


def list_runs(conn: Connection, principal: Principal) -> list[dict[str, Any]]:
    """The caller's newest runs (every run for admins), as GET /api/tasks/runs/{id} shows."""
    q = select(
        graph_runs.c.id,
        graph_runs.c.graph_name,
        graph_runs.c.since,
        graph_runs.c.till,
        graph_runs.c.state,
        graph_runs.c.executor,
        graph_runs.c.created_at,
        graph_runs.c.finished_at,
    )
    if not principal.is_admin:
        q = q.where(graph_runs.c.user_id == principal.user_id)
    rows = conn.execute(q.order_by(graph_runs.c.id.desc()).limit(RUNS_SHOWN))
    return [dict(r._mapping) for r in rows]


@router.get("/graphs")
def graphs_page(request: Request, conn: ConnDep, s: SessionDep) -> Response:
    """The graphs the user can see and the user's runs."""
    items = [
        {"g": g, "params": template_params(g.definition.model_dump())}
        for g in graphs.list_graphs(conn, s.principal)
    ]
    return render(
        request, "graphs.html", {"graphs": items, "runs": list_runs(conn, s.principal)}, s=s
    )


@router.get("/graphs/{name}")
def graph_page(request: Request, conn: ConnDep, s: SessionDep, name: str) -> Response:
    """One graph: its parameters and definition, and the form that runs it."""
    try:
        g = graphs.find_graph(conn, s.principal, name).info()
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    params = template_params(g.definition.model_dump())
    body = body_skeleton(params)
    clients = users.list_client_roles(conn, s.principal)
    if "client_cid" in body and body["client_cid"] is None and clients:
        body["client_cid"] = clients[0].client_cid  # the one most users have
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return render(
        request,
        "graph.html",
        {
            "g": g,
            "params": params,
            "definition": json.dumps(g.definition.model_dump(), indent=1),
            "body": json.dumps(body, indent=1),
            "since": today.strftime("%Y-%m-%dT%H:%M"),
            "till": (today + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        },
        s=s,
    )


def _ms(text: str | None) -> int | None:
    d = timectl.parse_minute(text)
    return None if d is None else int(d.replace(tzinfo=UTC).timestamp() * 1000)


@router.post("/graphs/{name}/run")
async def run_graph(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    s: SessionOwnTx,
    name: str,
) -> Response:
    """htmx: run the graph with the form's window and body; the record, or the queued run."""
    form = await form_fields(request)
    sent = request.headers.get(security.CSRF_HEADER) or form.get("csrf")
    if not security.csrf_matches(s.token, sent, settings.secret_pepper.get_secret_value()):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    try:
        body = orjson.loads(form.get("body") or "null")
    except orjson.JSONDecodeError as exc:
        return render(
            request, "_run.html", {"error": f"The body is not JSON: {exc}"}, s=s, status=422
        )
    since, till = graphs.default_window(_ms(form.get("since")), _ms(form.get("till")))
    try:
        if form.get("mode") == "async":
            executor = get_executor(request, db, settings)  # made on the first queued run
            run_id = graphs.submit(db, s.principal, executor, name, since, till, body)
            with db.transaction(write=False) as conn:
                status = graphs.get_run(conn, s.principal, run_id)
            return render(request, "_run.html", {"status": status}, s=s, status=202)
        record = graphs.run_now(db, s.principal, name, since, till, body, settings=settings)
    except AppError as exc:
        return render(request, "_run.html", {"error": str(exc.detail)}, s=s, status=exc.status)
    return render(request, "_run.html", {"record": record}, s=s, status=201)


@router.get("/graphs/runs/{run_id}")
def run_state(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    run_id: Annotated[int, PathParam(ge=0, le=ID_MAX)],  # as the API's: 2**70 was a 500
) -> Response:
    """htmx: a run's state; polls itself until the run is done or failed."""
    try:
        status = graphs.get_run(conn, s.principal, run_id)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    return render(request, "_run.html", {"status": status}, s=s)
