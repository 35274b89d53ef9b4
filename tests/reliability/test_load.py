"""The load test's short variant: a real `besmart serve`, mixed reads and writes, no errors.

The 60-second run with its figures is `python -m loadtest.load` (README); here it runs for
BESMART_LOAD_SECONDS (CI: 5) on the test database's engine.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from loadtest.load import MIX, run_load, seed

from besmart_server.server.db import Database
from tests.reliability.server import Server

SECONDS = float(os.environ.get("BESMART_LOAD_SECONDS", "5"))


@pytest.mark.slow
def test_mixed_load_without_errors(database_url: str, db: Database, tmp_path: Path) -> None:
    server = Server(database_url, tmp_path / "server.log")
    server.start()
    try:
        target = seed(server.url, database_url, sensors=5)
        report = asyncio.run(run_load(server.url, target, duration=SECONDS, concurrency=8))
    finally:
        server.stop()
    print(f"load ({db.dialect}): {report}")
    assert report["errors"] == 0, report["first_errors"]
    assert set(report["kinds"]) == {k for k, _ in MIX}
    assert report["requests"] >= 10
    assert report["p95_ms"] < 10_000
