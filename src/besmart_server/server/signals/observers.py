"""What other features learn of a write: observers the app registers, called by the write route.

The signals package knows no observer by name (validation, for one, reads signals, so signals
importing it would be a cycle); `create_app` puts the observers on `app.state.write_observers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Connection

from besmart_server.server.access import Principal
from besmart_server.server.signals.service import WriteItem
from besmart_server.server.signals.store import SeriesStore


class WriteObserver(Protocol):
    """Told of every write of the data routes, inside its transaction."""

    def written(
        self,
        conn: Connection,
        store: SeriesStore,
        principal: Principal,
        items: Sequence[WriteItem],
        *,
        reason: str | None,
    ) -> None:
        """Inside the write's transaction, after its points; must not fail the write."""
        ...
