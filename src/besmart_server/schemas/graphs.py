"""Estimation graphs on the wire: stored graphs, run records and run states."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

RunState = Literal["queued", "running", "done", "failed"]


class GraphDefinition(BaseModel):
    """A DAG of operators: `{"nodes": [{"function", "params"}], "edges": [{"from", "to"}]}`."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]] = Field(default_factory=list)


class GraphInfo(BaseModel):
    """A graph by name: who owns it and its definition."""

    name: str
    owner_cid: int | None = Field(description="owning client; null for system/shipped graphs")
    shipped: bool = Field(description="built into the server: readable by all, not deletable")
    definition: GraphDefinition
    created_at: int | None = None
    updated_at: int | None = None


class RunRecord(BaseModel):
    """What a finished run did."""

    run_id: int | None = None
    graph: str
    since: int
    till: int
    run_time: int = Field(
        description="the acq_time of every point the run wrote (UTC ms): its start, or 1 ms "
        "past the newest version of a series it wrote, so each run adds its own version"
    )
    items: int = Field(description="body items run (a list body runs once per element)")
    points_written: dict[str, int] = Field(description="per target `cid.mid/moid/origin`")
    metrics: list[dict[str, dict[str, Any]]] = Field(description="per item, per `node:function`")
    duration_s: float
    warnings: list[str] = Field(
        default_factory=list,
        description="why a node did less than asked (no weather, no readings, nothing to "
        "write...): a run with warnings is still done, with what it could do",
    )


class RunAccepted(BaseModel):
    """A run queued by `task_async=true`: poll GET /api/tasks/runs/{run_id}."""

    run_id: int
    state: RunState = "queued"


class RunStatus(BaseModel):
    """A run's state, and its record once done (or its error once failed)."""

    run_id: int
    graph: str
    since: int
    till: int
    state: RunState
    executor: str
    clients: list[int] = Field(
        default_factory=list,
        description="the clients the run writes to: readers of all of them may see the run",
    )
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    record: RunRecord | None = None
    error: str | None = None
