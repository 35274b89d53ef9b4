"""Where `task_async` runs go: a thread pool in the server, or dramatiq workers over Redis.

Both take a run that is already validated, authorized and recorded as queued (its row is
committed before `submit`), so a worker only needs the run's id and who it acts for.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs import service
from besmart_server.server.graphs.reaper import Reaper


class Executor(Protocol):
    """Runs queued graph runs somewhere; `kind` is recorded with each run."""

    kind: str

    def submit(self, run_id: int, principal: Principal) -> None:
        """Start the queued run `run_id` on behalf of `principal`; returns at once."""
        ...

    def shutdown(self) -> None:
        """Stop accepting runs (in-process: wait for the ones running)."""
        ...


class InProcessExecutor:
    """Runs in a thread pool of this process (the default: nothing else to operate)."""

    kind = "inprocess"

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._pool = ThreadPoolExecutor(settings.graph_threads, thread_name_prefix="graph-run")
        self._reaper = Reaper(db, settings, self.submit)

    def submit(self, run_id: int, principal: Principal) -> None:
        """Queue the run on the pool."""
        self._pool.submit(service.execute_logged, self._db, run_id, principal, self._settings)

    def shutdown(self) -> None:
        """Wait for the runs in progress."""
        self._reaper.stop()
        self._pool.shutdown(wait=True)


class DramatiqExecutor:
    """Sends each run to dramatiq workers (`besmart graph worker`) through Redis."""

    kind = "dramatiq"

    def __init__(self, settings: Settings) -> None:
        from besmart_server.server.graphs import worker  # imports dramatiq only when used

        self._broker = worker.make_broker(settings)
        self._actor = worker.declare_actor(self._broker, settings.broker_queue, worker.not_here)

    def submit(self, run_id: int, principal: Principal) -> None:
        """Enqueue the run's message."""
        self._actor.send(run_id, service.principal_to_json(principal))

    def shutdown(self) -> None:
        """Close the broker's connections."""
        self._broker.close()


def executor_for(settings: Settings, db: Database) -> Executor:
    """The executor the settings name."""
    if settings.executor == "dramatiq":
        return DramatiqExecutor(settings)
    return InProcessExecutor(db, settings)


_lock = threading.Lock()


def shared_executor(holder: object, settings: Settings, db: Database) -> Executor:
    """One executor per app (kept on `holder`, the app's state), made on first use."""
    with _lock:
        found: Executor | None = getattr(holder, "graph_executor", None)
        if found is None:
            found = executor_for(settings, db)
            setattr(holder, "graph_executor", found)  # noqa: B010  # Starlette's State
        return found
