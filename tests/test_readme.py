"""The README documents every setting, its CLI list names commands that exist, its examples
run as written against a served demo, and its quality table is what the command prints.

Every ```sh block runs, in README order and in one bash session (so variables carry from
block to block as they do for a reader), against `besmart serve` on a fresh demo database,
with the real `curl` (made to fail on an HTTP error status) and `jq`; ```sh norun marks a
synopsis that is not meant to run. The ```python block runs too. The only edits are the
server's address and the demo password the server printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bench.scratch import scratch_database
from typer.testing import CliRunner

from besmart_server.cli import app
from besmart_server.server.config import Settings
from besmart_server.tools import quality
from tests.reliability.server import Server

README_PATH = Path(__file__).resolve().parents[1] / "README.md"
README = README_PATH.read_text()
README_URL = "http://127.0.0.1:8000"
PASSWORD_PLACEHOLDER = "<printed password>"
# .ci/run sets this so CI fails, instead of skipping, when curl or jq is missing.
TOOLS_REQUIRED = os.environ.get("BESMART_README_TOOLS") == "required"


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(BESMART_[A-Z_]+)` \|", README, re.M))
    expected = {f"BESMART_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_every_command_group_the_readme_names_exists() -> None:
    named = set(re.findall(r"^besmart ([a-z]+)", README, re.M))
    assert {"serve", "db", "client", "user", "apikey", "token", "demo"} <= named
    for group in named:
        result = CliRunner().invoke(app, [group, "--help"])
        assert result.exit_code == 0, (group, result.output)


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string, the README line of its first code line, text."""

    info: str
    line: int
    text: str

    @property
    def runs(self) -> bool:
        return self.info.split()[:1] in (["sh"], ["python"]) and "norun" not in self.info.split()


def blocks(text: str = README) -> list[Block]:
    found = []
    for m in re.finditer(r"^```([^\n]*)\n(.*?)^```$", text, re.M | re.S):
        found.append(Block(m.group(1).strip(), text.count("\n", 0, m.start()) + 2, m.group(2)))
    return found


def test_every_shell_block_is_runnable_or_marked() -> None:
    sh = [b for b in blocks() if b.info.split()[:1] == ["sh"]]
    assert {b.info for b in sh} <= {"sh", "sh norun"}, [b.info for b in sh]
    # the sections a newcomer follows step by step run; the synopses do not
    assert sum(b.runs for b in sh) >= 6
    for b in blocks():
        if b.runs and b.info == "sh":
            # `besmart` is not on PATH after ./scripts/serve: runnable blocks say .venv/bin/
            assert not re.search(r"(^|[\s$(])besmart ", b.text), (b.line, b.text)


@dataclass(frozen=True)
class Demo:
    url: str
    database_url: str
    password: str


@pytest.fixture(scope="module")
def served_demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """`besmart serve` on a fresh database of the test engine, demo loaded by serve itself."""
    option: str = request.config.getoption("--db-url")
    with scratch_database(None if option == "sqlite" else option, "besmart_readme") as url:
        log = tmp_path_factory.mktemp("readme") / "serve.log"
        server = Server(url, log, env={"BESMART_DEMO": "1"})
        server.start()
        try:
            printed = re.search(r"password:\s+(\S+)", log.read_text())
            assert printed, log.read_text()
            yield Demo(server.url, url, printed.group(1))
        finally:
            server.stop()


def _tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("curl", "jq", "bash")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"the README's examples need {', '.join(missing)} (apt-get install {missing})"
        if TOOLS_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return {name: str(path) for name, path in found.items()}


def _edited(text: str, demo: Demo) -> str:
    return text.replace(README_URL, demo.url).replace(PASSWORD_PLACEHOLDER, demo.password)


def _demo_meters(demo: Demo, mids: list[int] | None = None) -> tuple[list[int], dict[str, Any]]:
    """Every measured version (origin 1) stored in the demo's own sensors, by sensor and signal
    type: what the README's client and import examples must leave as it is (issue #14, item
    19); forecasts, residuals and estimates the graph and VEE examples write are theirs."""

    def call(method: str, path: str, body: Any = None, token: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(demo.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.loads(res.read())

    token = call("POST", "/api/users/token", {"login": "demo", "password": demo.password})["token"]
    if mids is None:  # the demo's sensors, before the README makes its scratch one
        found = call("GET", "/api/sensors/find?client_cid=1", token=token)
        mids = sorted(s["sensor_mid"] for s in found)
    out = {}
    for mid in mids:
        for moid in (32, 53, 1001, 1011):  # A+, U1, P+, EA+
            path = f"/api/sensors/1.{mid}/signals/{moid}/data?since={-(2**62)}&till={2**62}"
            data = call("GET", path, token=token)["data"]
            measured = [i for i, o in enumerate(data["origin"]) if o == 1]
            out[f"{mid}/{moid}"] = {k: [data[k][i] for i in measured] for k in data}
    return mids, out


def test_the_readme_examples_run_against_a_served_demo(served_demo: Demo, tmp_path: Path) -> None:
    tools = _tools()
    mids, before = _demo_meters(served_demo)
    assert sum(len(d["time"]) for d in before.values()) > 10_000  # a month of the demo's data
    runnable = [b for b in blocks() if b.runs]
    assert any(PASSWORD_PLACEHOLDER in b.text for b in runnable)
    # A reader's checkout: .venv/bin/besmart is the command (this interpreter, this code);
    # PATH has no besmart on it, and curl answers an HTTP error status with exit code 22.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "curl").write_text(f'#!/bin/sh\nexec {tools["curl"]} --fail-with-body "$@"\n')
    (bindir / "jq").symlink_to(tools["jq"])
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "besmart").write_text(f'#!/bin/sh\nexec {sys.executable} -m besmart_server "$@"\n')
    for f in (bindir / "curl", venv / "besmart"):
        f.chmod(0o755)

    driver = [
        "set -Eeuo pipefail",
        "shopt -s inherit_errexit",
        "trap 'echo \"README.md line $((AT + LINENO - 1)) failed ($?): $BASH_COMMAND\" >&2' ERR",
    ]
    for b in runnable:
        if b.info == "sh":
            script = tmp_path / f"readme_{b.line}.sh"
            script.write_text(_edited(b.text, served_demo))
            driver += [f"AT={b.line}", f'echo "== README.md line {b.line}" >&2', f"source {script}"]
        else:
            script = tmp_path / f"readme_{b.line}.py"
            script.write_text(_edited(b.text, served_demo))
            driver += [f"AT={b.line}", f'echo "== README.md line {b.line}" >&2']
            driver.append(f"{sys.executable} {script}")
    driver.append('echo "== README examples done" >&2')

    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BESMART_DATABASE_URL": served_demo.database_url,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", "\n".join(driver)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = f"{done.stderr[-6000:]}\n--- stdout ---\n{done.stdout[-4000:]}"
    assert done.returncode == 0, report
    assert "== README examples done" in done.stderr, report
    assert time.monotonic() - started < 300
    assert _demo_meters(served_demo, mids)[1] == before  # they wrote into a sensor of their own


# --- the quality table ------------------------------------------------------------------


def _section(text: str) -> str:
    begin, end = text.index(quality.README_BEGIN), text.index(quality.README_END)
    return text[begin : end + len(quality.README_END)]


def _rows(section: str) -> dict[str, list[str]]:
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| graph "):
            label, *cells = [c.strip() for c in line.strip("|").split("|")]
            rows[label] = cells
    return rows


def test_the_readme_quality_table_is_what_the_command_prints(tmp_path: Path) -> None:
    """`besmart graph quality --readme` writes the table it prints, and the README's block is
    exactly what the command writes today: the demo it measures runs up to a fixed day, so
    every figure is reproducible and none may be typed by hand."""
    copy = tmp_path / "README.md"
    copy.write_text(README)
    result = CliRunner().invoke(app, ["graph", "quality", "--readme", str(copy)])
    assert result.exit_code == 0, result.output
    fresh = _section(copy.read_text())
    printed = result.stdout.strip()
    assert printed.startswith(quality.TABLE_HEADER)
    assert printed in fresh
    assert copy.read_text().replace(fresh, "") == README.replace(_section(README), "")

    written = _section(README)
    rows = _rows(written)
    assert list(rows) == [label for _, label in quality.ROWS]
    assert quality.DEMO_DAY in written
    # Rerun `besmart graph quality --readme README.md` when this fails after a change of the
    # demo or of a graph: the figures moved. Only the summary's rounding noise (closure
    # errors of 1e-16) may differ, as floating-point sums may on another CPU.
    assert rows == _rows(fresh)
    assert _masked(written) == _masked(fresh)


def _masked(text: str) -> str:
    return re.sub(r"-?\d[\d.,]*(e-?\d+)?", "N", text)


def test_quality_splice_replaces_only_the_marked_block() -> None:
    text = f"before\n{quality.README_BEGIN}\nold\n{quality.README_END}\nafter\n"
    assert quality.splice(text, "NEW") == "before\nNEW\nafter\n"
    with pytest.raises(ValueError, match="graph-quality"):
        quality.splice("no markers", "NEW")
