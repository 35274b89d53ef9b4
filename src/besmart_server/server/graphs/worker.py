"""The dramatiq side of the distributed executor: broker, actor, and the worker loop.

`besmart graph worker` runs `serve`: it consumes the queue named by BESMART_BROKER_QUEUE from
the Redis broker at BESMART_BROKER_URL and runs each graph run against BESMART_DATABASE_URL.
Start as many workers, on as many machines, as the runs need: each message is one run.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs import service
from besmart_server.server.graphs.reaper import Reaper

ACTOR_NAME: Final = "besmart_run_graph"
TIME_LIMIT_MS: Final = 3_600_000  # one run may take an hour
MAINTENANCE_CHANCE: Final = 100_000  # per million broker commands (dramatiq's default: 1,000)

Handler = Callable[[int, dict[str, Any]], None]


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker (dramatiq's default middleware: retries, time limits...).

    A worker killed while holding messages it had fetched (its prefetched runs, still
    `queued`) leaves them to dramatiq: it hands them out again once the worker has missed
    heartbeats for `heartbeat_timeout`, at a maintenance pass that runs on a random share of
    the broker's commands. Both are tied to the run lease (twice the lease; one command in
    ten) so that such runs start again within about two leases, not a minute or more later.
    A message delivered twice is harmless: only a `queued` run is claimed (service.execute).
    """
    url = settings.broker_url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"the dramatiq executor needs a redis:// broker URL, not {url!r}")
    return RedisBroker(  # type: ignore[no-untyped-call]  # dramatiq leaves it untyped
        url=url,
        heartbeat_timeout=int(settings.graph_lease_seconds * 2000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def declare_actor(broker: RedisBroker, queue: str, fn: Handler) -> dramatiq.Actor[Any, None]:
    """The one actor; producers and workers declare it alike (a failed run is not retried:
    its row says why, and running a graph twice would write two versions)."""
    return dramatiq.Actor(
        fn,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=queue,
        priority=0,
        options={"max_retries": 0, "time_limit": TIME_LIMIT_MS},
    )


def not_here(run_id: int, principal: dict[str, Any]) -> None:
    """The producer's stand-in: runs happen in workers only."""
    raise RuntimeError("graph runs execute in `besmart graph worker` processes")


def serve(
    db: Database, settings: Settings, *, threads: int = 2, stop: threading.Event | None = None
) -> None:
    """Consume runs on `db` (the command's, see cli_db.open_database) until SIGTERM/SIGINT (or
    `stop` is set), then finish the current ones."""
    broker = make_broker(settings)

    def handle(run_id: int, principal: dict[str, Any]) -> None:
        who = service.principal_from_json(principal)
        service.execute_logged(db, run_id, who, settings)

    actor = declare_actor(broker, settings.broker_queue, handle)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, queues={settings.broker_queue}, worker_threads=threads)
    worker.start()

    def resend(run_id: int, who: Principal) -> None:
        actor.send(run_id, service.principal_to_json(who))

    reaper = Reaper(db, settings, resend)
    try:
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        reaper.stop()
        worker.stop(timeout=TIME_LIMIT_MS)
        broker.close()
