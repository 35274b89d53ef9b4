"""HTTP routes of estimation graphs: the spec's run route, run states, graph management."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.graphs import (
    GraphInfo,
    RunAccepted,
    RunRecord,
    RunState,
    RunStatus,
)
from besmart_server.server.deps import (
    ConnDep,
    CurrentUser,
    DatabaseDep,
    SettingsDep,
    UserOwnTransactions,
)
from besmart_server.server.errors import R401, R403, R404, R409
from besmart_server.server.graphs import service
from besmart_server.server.graphs.executor import Executor, shared_executor

router = APIRouter(tags=["Estimation"])

_R422: dict[int | str, dict[str, Any]] = {
    422: {"description": "Unprocessable entity: loc names the node and parameter"}
}


def get_executor(request: Request, db: DatabaseDep, settings: SettingsDep) -> Executor:
    """The app's executor for task_async runs."""
    return shared_executor(request.app.state, settings, db)


Caller = UserOwnTransactions


@router.post(
    "/api/tasks/graphs/run/name",
    summary="Run graph",
    status_code=201,
    response_model=RunRecord | RunAccepted,
    responses={
        201: {"description": "Successfully executed task"},
        202: {"description": "Queued (task_async=true)", "model": RunAccepted},
        **R401,
        **R403,
        **R404,
        **_R422,
    },
)
def run_graph(
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Caller,
    request: Request,
    response: Response,
    graph_name: Annotated[str, Query(description="Graph name")],
    since: Annotated[int | None, Query(description="Start date (UTC unix timestamp in ms)")] = None,
    till: Annotated[int | None, Query(description="End date (UTC unix timestamp in ms)")] = None,
    task_async: Annotated[
        bool, Query(description="Queue the run and answer 202 with its id")
    ] = False,
    body: Annotated[Any, Body(description="Template parameters: an object or a list")] = None,
) -> Any:
    """Run a graph over [since, till) once per body item; 201 with the run record."""
    lo, hi = service.default_window(since, till)
    if task_async:
        executor = get_executor(request, db, settings)
        run_id = service.submit(
            db,
            principal,
            executor,
            graph_name,
            lo,
            hi,
            body,
            max_window_days=settings.max_window_days,
        )
        response.status_code = 202
        return RunAccepted(run_id=run_id)
    return service.run_now(db, principal, graph_name, lo, hi, body, settings=settings)


@router.get(
    "/api/tasks/runs/{run_id}",
    summary="Get graph run",
    response_model=RunStatus,
    responses={**R401, **R404},
)
def get_run(
    conn: ConnDep,
    principal: CurrentUser,
    run_id: Annotated[int, Path(description="Run id", ge=0, le=ID_MAX)],
) -> RunStatus:
    """A run's state, with its record once done: the caller's own runs, and runs writing to
    clients it reads."""
    return service.get_run(conn, principal, run_id)


@router.get(
    "/api/tasks/runs",
    summary="List graph runs",
    response_model=list[RunStatus],
    responses={**R401},
)
def list_runs(
    conn: ConnDep,
    principal: CurrentUser,
    graph_name: Annotated[str | None, Query(description="Only runs of this graph")] = None,
    state: Annotated[RunState | None, Query(description="Only runs in this state")] = None,
    client_cid: Annotated[
        int | None, Query(description="Only runs writing to this client", ge=0, le=ID_MAX)
    ] = None,
    limit: Annotated[
        int, Query(description="At most this many, newest first", ge=1, le=1000)
    ] = 100,
) -> list[RunStatus]:
    """The caller's own runs and those of clients it reads (running needs the write role)."""
    return service.list_runs(
        conn, principal, graph_name=graph_name, state=state, client_cid=client_cid, limit=limit
    )


@router.get(
    "/api/tasks/graphs",
    summary="List graphs",
    response_model=list[GraphInfo],
    responses={**R401},
)
def list_graphs(conn: ConnDep, principal: CurrentUser) -> list[GraphInfo]:
    """Shipped graphs and the stored ones the caller can see."""
    return service.list_graphs(conn, principal)


@router.get(
    "/api/tasks/graphs/{name}",
    summary="Get graph",
    response_model=GraphInfo,
    responses={**R401, **R404},
)
def get_graph(
    conn: ConnDep, principal: CurrentUser, name: Annotated[str, Path(description="Graph name")]
) -> GraphInfo:
    """A graph's definition by name."""
    return service.find_graph(conn, principal, name).info()


@router.put(
    "/api/tasks/graphs/{name}",
    summary="Put graph",
    response_model=GraphInfo,
    responses={
        200: {"description": "Replaced"},
        201: {"description": "Created"},
        **R401,
        **R403,
        **R404,
        **R409,
        **_R422,
    },
)
def put_graph(
    conn: ConnDep,
    principal: CurrentUser,
    response: Response,
    name: Annotated[str, Path(description="Graph name")],
    definition: Annotated[Any, Body(description='{"nodes": [...], "edges": [...]}')],
    client_cid: Annotated[
        int | None,
        Query(
            description="Owning client of a new graph (admins: omit for system)",
            ge=0,
            le=ID_MAX,
        ),
    ] = None,
) -> GraphInfo:
    """Create (201) or replace (200) a graph; validated before it is stored."""
    info, created = service.put_graph(conn, principal, name, definition, client_cid=client_cid)
    response.status_code = 201 if created else 200
    return info


@router.delete(
    "/api/tasks/graphs/{name}",
    summary="Delete graph",
    status_code=204,
    responses={**R401, **R403, **R404},
)
def delete_graph(
    conn: ConnDep, principal: CurrentUser, name: Annotated[str, Path(description="Graph name")]
) -> Response:
    """Delete a stored graph (owner or admin); shipped graphs stay."""
    service.delete_graph(conn, principal, name)
    return Response(status_code=204)
