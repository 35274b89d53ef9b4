"""How fast a migration that re-encodes every block (0019: format 2 to 3) goes: the
benchmark's year (bench.workload, no weather grid) written through the store into a fresh
SQLite database, turned into format 2 blocks, then timed through reformat.reencode to 3.

    .venv/bin/python -m bench.reencode
"""

from __future__ import annotations

import time

from sqlalchemy import text

from bench.block_size import ingest
from bench.scratch import scratch_database
from bench.workload import FULL, generate
from besmart_server.server.db import Database
from besmart_server.server.signals.blocks import FORMAT, FORMAT_2
from besmart_server.server.signals.reformat import reencode


def main() -> None:
    with scratch_database(None, "reencode") as url:
        db = Database(url)
        try:
            ingest(db, generate(FULL))
            with db.engine.begin() as conn:
                reencode(conn, FORMAT_2)
                points = conn.execute(text("SELECT sum(n) FROM blocks")).scalar_one()
            t0 = time.perf_counter()
            with db.engine.begin() as conn:
                blocks = reencode(conn, FORMAT)
            took = time.perf_counter() - t0
        finally:
            db.dispose()
    print(f"{blocks:,} blocks, {points:,} points re-encoded in format {FORMAT} in {took:.1f} s:"
          f" {points / took:,.0f} points/s")  # fmt: skip


if __name__ == "__main__":
    main()
