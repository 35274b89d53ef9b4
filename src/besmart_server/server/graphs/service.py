"""Graphs by name and their runs: find, store, validate, authorize, run, record.

Stored-graph functions take the request's connection first and never commit. Running spans
several transactions on purpose, so those functions take the `Database`: validation and the
authorization of every write target happen in one read transaction before anything runs; the
run's reads are short read transactions; its writes are flushed once it has finished, one
transaction per target series (see `context.py`); the run's row records each state change.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import orjson
from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from besmart_server.schemas.graphs import GraphDefinition, GraphInfo, RunRecord, RunStatus
from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, sensor_for
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.errors import Conflict, Forbidden, Invalid, NotFound
from besmart_server.server.graphs import engine, records
from besmart_server.server.graphs.builtin import BUILTIN, builtin_graph
from besmart_server.server.graphs.context import DbContext
from besmart_server.server.graphs.tables import graph_run_clients, graph_runs, graphs
from besmart_server.server.users.service import client_exists
from besmart_server.server.vee.service import who as vee_who

log = logging.getLogger("besmart.graphs")

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
_NAME = re.compile(NAME_PATTERN)
DAY_MS: Final = 86_400_000
QUEUED_KINDS: Final = frozenset({"inprocess", "dramatiq"})  # executors of queued runs


# --- stored graphs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredGraph:
    """A graph by name: shipped (in code) or stored (a row)."""

    name: str
    definition: dict[str, Any]
    owner_cid: int | None
    shipped: bool
    created_at: int | None = None
    updated_at: int | None = None
    id: int | None = None  # the row of a stored graph

    def info(self) -> GraphInfo:
        """The wire shape."""
        return GraphInfo(
            name=self.name,
            owner_cid=self.owner_cid,
            shipped=self.shipped,
            definition=GraphDefinition.model_validate(self.definition),
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _big_int_at(value: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return loc if not -(2**63) <= value < 2**64 else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _big_int_at(item, (*loc, key))
        if found is not None:
            return found
    return None


def json_text(value: Any, loc: tuple[str | int, ...]) -> str:
    """A request's JSON (a body, a definition) as stored; 422 naming the first integer JSON
    storage cannot hold (beyond 64 bits) instead of failing while storing it."""
    found = _big_int_at(value, loc)
    if found is not None:
        raise Invalid("Integers must fit in 64 bits", loc=found, type_="int_too_big")
    return orjson.dumps(value).decode()


def _graph_not_found(name: str) -> NotFound:
    return NotFound(f"Graph {name!r} not found")


def _from_row(row: Any) -> StoredGraph:
    return StoredGraph(
        name=str(row.name),
        definition=orjson.loads(row.definition),
        owner_cid=None if row.owner_cid is None else int(row.owner_cid),
        shipped=False,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
        id=int(row.id),
    )


def _visible(principal: Principal, owner_cid: int | None) -> bool:
    return owner_cid is None or principal.can(owner_cid, Role.read)


def _candidates(
    conn: Connection, principal: Principal, name: str, client_cid: int | None
) -> list[Any]:
    """Stored graphs of this name the caller can see (of one client when it is given); names
    are unique per client, so other tenants' graphs of the same name never show through."""
    rows = [
        r
        for r in conn.execute(select(graphs).where(graphs.c.name == name).order_by(graphs.c.id))
        if _visible(principal, r.owner_cid)
    ]
    if client_cid is not None:
        rows = [r for r in rows if r.owner_cid in (client_cid, None)]
    return rows


def _one(rows: list[Any], name: str) -> Any:
    # A tenant's own graph shadows a system graph of the same name.
    owned = [r for r in rows if r.owner_cid is not None]
    if len(owned) > 1:
        raise Conflict(
            f"Graph name {name!r} is used by several of your clients; "
            "rename one, or give client_cid"
        )
    return owned[0] if owned else rows[0]


def find_graph(
    conn: Connection, principal: Principal, name: str, *, client_cid: int | None = None
) -> StoredGraph:
    """A shipped graph, or a stored one of a client the caller can read (or a system one);
    else 404 — whatever other tenants store under that name."""
    if name in BUILTIN:
        return StoredGraph(name, builtin_graph(name), None, shipped=True)
    rows = _candidates(conn, principal, name, client_cid)
    if not rows:
        raise _graph_not_found(name)
    return _from_row(_one(rows, name))


def list_graphs(conn: Connection, principal: Principal) -> list[GraphInfo]:
    """Every graph the caller can see: shipped ones first, then stored ones by name."""
    out = [StoredGraph(n, builtin_graph(n), None, shipped=True).info() for n in sorted(BUILTIN)]
    for row in conn.execute(select(graphs).order_by(graphs.c.name)):
        if _visible(principal, row.owner_cid):
            out.append(_from_row(row).info())
    return out


def _may_manage(principal: Principal, owner_cid: int | None, name: str) -> None:
    """Owners of the graph's client (or admins) change it; system graphs are admins' only."""
    if principal.is_admin:
        return
    if owner_cid is None:
        raise Forbidden(f"Graph {name!r} is a system graph: only admins change it")
    principal.require(owner_cid, Role.owner, what=f"Graph {name!r}")


def put_graph(
    conn: Connection,
    principal: Principal,
    name: str,
    definition: Any,
    *,
    client_cid: int | None,
) -> tuple[GraphInfo, bool]:
    """Create or replace a graph (validated first); (the graph, whether it was created).

    A new graph belongs to `client_cid` (owner role needed); admins may omit it for a system
    graph. Replacing keeps the owner. Shipped names are reserved.
    """
    if not _NAME.match(name):
        raise Invalid(f"A graph name matches {NAME_PATTERN}", loc=("path", "name"))
    if name in BUILTIN:
        raise Conflict(f"Graph {name!r} is shipped with the server; store yours by another name")
    text = json_text(definition, ("body",))
    try:
        graph = engine.parse_graph(definition)
        if not engine.has_templates(graph):
            # nothing left for a body to fill: cross-field rules and what flows between
            # nodes can be checked now rather than at the first run
            engine.prepare(graph, {})
    except Invalid as exc:
        raise Invalid(exc.detail, loc=("body", *exc.loc), type_=exc.type_) from None
    now = now_ms()
    rows = _candidates(conn, principal, name, client_cid)
    if client_cid is not None or not principal.is_admin:
        rows = [r for r in rows if r.owner_cid is not None]
    else:
        rows = [r for r in rows if r.owner_cid is None]  # an admin without client_cid: system
    if rows:
        row = _one(rows, name)
        _may_manage(principal, row.owner_cid, name)
        conn.execute(
            update(graphs).where(graphs.c.id == row.id).values(definition=text, updated_at=now)
        )
        owner, created = row.owner_cid, False
    else:
        if client_cid is None and not principal.is_admin:
            raise Invalid(
                "client_cid is required (the client that owns the graph)",
                loc=("query", "client_cid"),
            )
        if client_cid is not None:
            principal.require(client_cid, Role.owner, what=f"Client {client_cid}")
            if not client_exists(conn, client_cid):  # admins may name any client
                raise NotFound(f"Client {client_cid} not found")
        conn.execute(
            insert(graphs).values(
                name=name, definition=text, owner_cid=client_cid, created_at=now, updated_at=now
            )
        )
        owner, created = client_cid, True
    return find_graph(conn, principal, name, client_cid=owner).info(), created


def delete_graph(conn: Connection, principal: Principal, name: str) -> None:
    """Delete a stored graph (owner or admin); shipped graphs cannot be deleted."""
    found = find_graph(conn, principal, name)
    if found.shipped:
        raise Forbidden(f"Graph {name!r} is shipped with the server and cannot be deleted")
    _may_manage(principal, found.owner_cid, name)
    conn.execute(delete(graphs).where(graphs.c.id == found.id))


# --- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run that passed validation and authorization."""

    name: str
    graph: engine.Graph
    since: int
    till: int
    body: Any
    targets: frozenset[tuple[int, int]]


def default_window(since: int | None, till: int | None, now: int | None = None) -> tuple[int, int]:
    """The spec's since/till are optional: the current UTC day, or one day from the one given."""
    if since is None and till is None:
        day = (now if now is not None else now_ms()) // DAY_MS * DAY_MS
        return day, day + DAY_MS
    if since is None:
        assert till is not None
        return till - DAY_MS, till
    return since, since + DAY_MS if till is None else till


def plan_run(
    conn: Connection,
    principal: Principal,
    name: str,
    since: int,
    till: int,
    body: Any,
    *,
    max_window_days: int | None = None,
) -> RunPlan:
    """Validate the window, graph and body and check the write role on every target."""
    engine.check_window(since, till, max_window_days=max_window_days)
    json_text(body, ("body",))
    found = find_graph(conn, principal, name)
    graph = engine.parse_graph(found.definition)
    plans = engine.prepare(graph, body)
    engine.check_spans(graph, plans, since, till, max_window_days=max_window_days)
    targets = engine.write_targets(graph, plans)
    for cid, mid in sorted(targets):
        sensor_for(conn, principal, cid, mid, Role.write)
    return RunPlan(name, graph, since, till, body, frozenset(targets))


def create_run(conn: Connection, principal: Principal, plan: RunPlan, *, executor: str) -> int:
    """The run's row, queued; its id."""
    result = conn.execute(
        insert(graph_runs)
        .values(
            graph_name=plan.name,
            since=plan.since,
            till=plan.till,
            body=json_text(plan.body, ("body",)),
            state="queued",
            executor=executor,
            user_id=principal.user_id,
            created_at=now_ms(),
            acting_for=orjson.dumps(principal_to_json(principal)).decode(),
        )
        .returning(graph_runs.c.id)
    )
    run_id = int(result.scalar_one())
    cids = sorted({cid for cid, _ in plan.targets})
    if cids:
        conn.execute(insert(graph_run_clients), [{"run_id": run_id, "client_cid": c} for c in cids])
    return run_id


def _clients_of(conn: Connection, run_ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {r: [] for r in run_ids}
    rows = conn.execute(
        select(graph_run_clients.c.run_id, graph_run_clients.c.client_cid)
        .where(graph_run_clients.c.run_id.in_(run_ids))
        .order_by(graph_run_clients.c.client_cid)
    )
    for run_id, cid in rows:
        found[int(run_id)].append(int(cid))
    return found


def _may_see(principal: Principal, user_id: int | None, clients: list[int]) -> bool:
    """Its user, admins, and readers of every client it writes to (a run's record names the
    series it wrote, so a reader of only some of them does not see it)."""
    if principal.is_admin or (principal.user_id is not None and user_id == principal.user_id):
        return True
    return bool(clients) and all(principal.can(cid, Role.read) for cid in clients)


def _status(row: Any, clients: list[int]) -> RunStatus:
    return RunStatus(
        run_id=int(row.id),
        graph=str(row.graph_name),
        since=int(row.since),
        till=int(row.till),
        state=row.state,
        executor=str(row.executor),
        clients=clients,
        created_at=int(row.created_at),
        started_at=row.started_at,
        finished_at=row.finished_at,
        record=None if row.record is None else RunRecord.model_validate_json(row.record),
        error=row.error,
    )


def get_run(conn: Connection, principal: Principal, run_id: int) -> RunStatus:
    """A run the caller may see (see `_may_see`); 404 otherwise."""
    row = conn.execute(select(graph_runs).where(graph_runs.c.id == run_id)).first()
    clients = _clients_of(conn, [run_id])[run_id]
    if row is None or not _may_see(principal, row.user_id, clients):
        raise NotFound(f"Run {run_id} not found")
    return _status(row, clients)


def list_runs(
    conn: Connection,
    principal: Principal,
    *,
    graph_name: str | None = None,
    state: str | None = None,
    client_cid: int | None = None,
    limit: int = 100,
) -> list[RunStatus]:
    """The newest runs the caller may see, newest first, optionally of one graph, state or
    client."""
    q = select(graph_runs).order_by(graph_runs.c.id.desc())
    if graph_name is not None:
        q = q.where(graph_runs.c.graph_name == graph_name)
    if state is not None:
        q = q.where(graph_runs.c.state == state)
    if client_cid is not None:
        q = q.where(
            graph_runs.c.id.in_(
                select(graph_run_clients.c.run_id).where(
                    graph_run_clients.c.client_cid == client_cid
                )
            )
        )
    if not principal.is_admin:
        readable = [cid for cid in principal.roles if principal.can(cid, Role.read)]
        runs_clients = select(graph_run_clients.c.run_id).where(
            graph_run_clients.c.run_id == graph_runs.c.id
        )
        theirs = and_(
            runs_clients.exists(),
            ~runs_clients.where(graph_run_clients.c.client_cid.not_in(readable)).exists(),
        )
        if principal.user_id is not None:
            theirs = or_(graph_runs.c.user_id == principal.user_id, theirs)
        q = q.where(theirs)
    rows = conn.execute(q.limit(limit)).all()
    clients = _clients_of(conn, [int(r.id) for r in rows])
    return [_status(row, clients[int(row.id)]) for row in rows]


class LeaseLost(Exception):
    """The run was taken over (its lease ran out and the reaper queued it again): this
    worker's results are dropped, the run's row belongs to the newer attempt."""


def _mine(run_id: int, attempt: int) -> Any:
    """The run's row while this attempt holds it."""
    return and_(
        graph_runs.c.id == run_id,
        graph_runs.c.state == "running",
        graph_runs.c.attempts == attempt,
    )


def _claim(db: Database, run_id: int, lease_ms: int) -> tuple[Any, int | None]:
    """The run's row and this attempt's number; None when it is not queued (already claimed
    by another worker: a redelivered message, or a run queued again and sent twice)."""
    with db.transaction() as conn:
        row = conn.execute(select(graph_runs).where(graph_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"Run {run_id} not found")
        now = now_ms()
        claimed = conn.execute(
            update(graph_runs)
            .where(graph_runs.c.id == run_id, graph_runs.c.state == "queued")
            .values(
                state="running",
                started_at=now,
                lease_until=now + lease_ms,
                attempts=graph_runs.c.attempts + 1,
                claimed_by=f"{socket.gethostname()}:{os.getpid()}"[:100],
            )
        )
        if claimed.rowcount != 1:
            return row, None
        return row, int(row.attempts) + 1


class _Heartbeat:
    """Renews a running run's lease every third of it, on a thread, until stopped."""

    def __init__(self, db: Database, run_id: int, attempt: int, lease_ms: int) -> None:
        self._db, self._run_id, self._attempt, self._lease_ms = db, run_id, attempt, lease_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._lease_ms / 3000):
            try:
                with self._db.transaction() as conn:
                    renewed = conn.execute(
                        update(graph_runs)
                        .where(_mine(self._run_id, self._attempt))
                        .values(lease_until=now_ms() + self._lease_ms)
                    )
                if renewed.rowcount != 1:
                    return  # taken over: the final commit is fenced, nothing more to renew
            except Exception:  # a lost connection: try again next beat, the lease may hold
                log.warning("graph run %s: lease renewal failed", self._run_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def execute(
    db: Database,
    run_id: int,
    principal: Principal,
    *,
    settings: Settings,
    plan: RunPlan | None = None,
    run_time: int | None = None,
) -> dict[str, Any] | None:
    """Run a queued run to its end and record it; the run record (errors re-raised), or None
    when another worker has claimed it.

    The run's points and its `done` state commit in one transaction, after the record has been
    serialised: a run is either done with its points stored, or failed with none of them.
    Anything that stops it (an error, a worker's time limit) records it as failed. While it
    runs, its lease is renewed; that transaction and the failure are fenced by the attempt
    number, so a worker whose run was taken over (see `reap`) stores nothing.
    """
    lease_ms = int(settings.graph_lease_seconds * 1000)
    row, attempt = _claim(db, run_id, lease_ms)
    if attempt is None:
        log.info("graph run %s is %s already: not run again here", run_id, row.state)
        return None
    heartbeat = _Heartbeat(db, run_id, attempt, lease_ms)
    started = time.perf_counter()
    try:
        if plan is None:  # a queued run: validate and authorize again, things may have changed
            with db.transaction(write=False) as conn:
                plan = plan_run(
                    conn,
                    principal,
                    row.graph_name,
                    row.since,
                    row.till,
                    orjson.loads(row.body),
                    max_window_days=settings.max_window_days,
                )
        ctx = DbContext.over(
            db,
            principal,
            max_points_per_read=settings.max_points_per_read,
            max_window_days=settings.max_window_days,
            weather_radius_km=settings.weather_radius_km,
            weather_neighbours=settings.weather_neighbours,
            audit_as=(f"graph run {run_id} by {vee_who(principal)}", plan.name),
        )
        done = engine.run(
            plan.name, plan.graph, plan.body, plan.since, plan.till, ctx, run_time=run_time
        )
        duration = {"run_id": run_id, "duration_s": time.perf_counter() - started}
        with db.transaction() as conn:
            if run_time is None:  # stamped by this run, not asked for (a backtest's issue time)
                done = replace(done, run_time=ctx.fresh_run_time(conn, done.run_time))
            text = records.dumps(done.to_json() | duration)
            finished = conn.execute(
                update(graph_runs)
                .where(_mine(run_id, attempt))
                .values(state="done", record=text, finished_at=now_ms(), lease_until=None)
            )
            if finished.rowcount != 1:
                raise LeaseLost(f"Run {run_id} was taken over by a later attempt")
            ctx.flush(done.run_time, into=conn)
    except LeaseLost:
        log.warning("graph run %s: lease lost, its results are dropped", run_id)
        return None
    except BaseException as exc:
        detail = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        with db.transaction() as conn:
            conn.execute(
                update(graph_runs)
                .where(_mine(run_id, attempt))
                .values(
                    state="failed",
                    error=str(detail)[:4000],
                    finished_at=now_ms(),
                    lease_until=None,
                )
            )
        raise
    finally:
        heartbeat.stop()
    out: dict[str, Any] = orjson.loads(text)
    return out


def execute_logged(db: Database, run_id: int, principal: Principal, settings: Settings) -> None:
    """`execute` for an executor's thread or worker: a failure is recorded in the run's row
    and logged, never raised (nobody is there to catch it)."""
    try:
        execute(db, run_id, principal, settings=settings)
    except Exception:
        log.exception("graph run %s failed", run_id)


def reap(db: Database, *, max_attempts: int, now: int | None = None) -> list[tuple[int, Principal]]:
    """Runs whose worker died (still `running`, lease run out): queued again, to be submitted
    by the caller (returned with who they act for), or failed after `max_attempts` claims.
    A run of a request or of the CLI (it died with the caller's process) is failed: nobody
    waits for it. Several reapers may run at once: each row changes by compare-and-set, so a
    run is queued again by one of them only."""
    now = now_ms() if now is None else now
    out: list[tuple[int, Principal]] = []
    with db.transaction() as conn:
        stale = conn.execute(
            select(
                graph_runs.c.id,
                graph_runs.c.attempts,
                graph_runs.c.executor,
                graph_runs.c.acting_for,
            ).where(graph_runs.c.state == "running", graph_runs.c.lease_until < now)
        ).all()
    for run_id, attempts, kind, acting_for in stale:
        queued = kind in QUEUED_KINDS and acting_for is not None
        again = queued and attempts < max_attempts
        values: dict[str, Any] = (
            {"state": "queued", "lease_until": None}
            if again
            else {
                "state": "failed",
                "lease_until": None,
                "finished_at": now,
                "error": f"its worker stopped (attempt {attempts} of {max_attempts})",
            }
        )
        with db.transaction() as conn:
            changed = conn.execute(
                update(graph_runs)
                .where(
                    _mine(int(run_id), int(attempts)),
                    graph_runs.c.lease_until < now,
                )
                .values(**values)
            )
        if changed.rowcount == 1:
            log.warning("graph run %s: worker lost, %s", run_id, values["state"])
            if again:
                out.append((int(run_id), principal_from_json(orjson.loads(acting_for))))
    return out


def run_now(
    db: Database,
    principal: Principal,
    name: str,
    since: int,
    till: int,
    body: Any,
    *,
    settings: Settings,
    executor: str = "request",
) -> dict[str, Any]:
    """Validate, authorize and run in this thread; the run record."""
    with db.transaction(write=False) as conn:
        plan = plan_run(
            conn, principal, name, since, till, body, max_window_days=settings.max_window_days
        )
    with db.transaction() as conn:
        run_id = create_run(conn, principal, plan, executor=executor)
    out = execute(db, run_id, principal, settings=settings, plan=plan)
    assert out is not None  # its row was created queued just above: nobody else claims it
    return out


class Submitter(Protocol):
    """What `submit` needs of an executor (see executor.py)."""

    kind: str

    def submit(self, run_id: int, principal: Principal) -> None:
        """Start a queued run."""
        ...


def submit(
    db: Database,
    principal: Principal,
    executor: Submitter,
    name: str,
    since: int,
    till: int,
    body: Any,
    *,
    max_window_days: int | None = None,
) -> int:
    """Validate, authorize and queue a run (committed before the executor sees it); its id."""
    with db.transaction(write=False) as conn:
        plan = plan_run(conn, principal, name, since, till, body, max_window_days=max_window_days)
    with db.transaction() as conn:
        run_id = create_run(conn, principal, plan, executor=executor.kind)
    executor.submit(run_id, principal)
    return run_id


# --- who a queued run acts for ----------------------------------------------------------------


def principal_to_json(principal: Principal) -> dict[str, Any]:
    """A principal as a task message carries it."""
    return {
        "user_id": principal.user_id,
        "login": principal.login,
        "is_admin": principal.is_admin,
        "roles": {str(cid): role.value for cid, role in principal.roles.items()},
    }


def principal_from_json(raw: Mapping[str, Any]) -> Principal:
    """The principal a task message carries."""
    return Principal(
        user_id=raw.get("user_id"),
        login=raw.get("login"),
        is_admin=bool(raw.get("is_admin", False)),
        roles={int(cid): Role(role) for cid, role in dict(raw.get("roles", {})).items()},
    )
