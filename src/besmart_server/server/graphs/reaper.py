"""The graph-run reaper: queues again the runs whose worker died (their lease ran out).

Every graph worker and every server with an in-process executor runs one, so a run is picked
up again whichever process or host stopped; `service.reap` changes each row by
compare-and-set, so several reapers at once queue a run again once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs import service

log = logging.getLogger(__name__)

Submit = Callable[[int, Principal], None]


class Reaper:
    """Every half lease, queues again the runs whose worker died and submits them (see
    `service.reap`), on a daemon thread; every graph worker and server with queued runs has
    one, so a run is picked up again whichever process or host stopped."""

    def __init__(self, db: Database, settings: Settings, submit: Submit) -> None:
        self._db, self._settings, self._submit = db, settings, submit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graph-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._settings.graph_lease_seconds / 2):
            self.reap_once()

    def reap_once(self) -> None:
        """One pass (a failure is logged: the next pass tries again)."""
        try:
            found = service.reap(self._db, max_attempts=self._settings.graph_max_attempts)
            for run_id, principal in found:
                self._submit(run_id, principal)
        except Exception:
            log.exception("graph run reaper")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
