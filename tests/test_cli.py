"""Each CLI command against the test database, and `besmart serve` end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from typer.testing import CliRunner

from besmart_server.cli import app, parse_duration
from besmart_server.server.db import Database
from besmart_server.server.users import service
from besmart_server.server.users.tables import clients, tokens, user_roles, users
from tests.processes import free_port

runner = CliRunner()


@pytest.fixture
def env(database_url: str, db: Database) -> dict[str, str]:
    return {"BESMART_DATABASE_URL": database_url}


def invoke(env: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env, input=input)
    # A command's answer is on stdout, and its errors on stderr; stderr also names the
    # database, which is not part of the answer.
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_db_upgrade_reports_head(env: dict[str, str]) -> None:
    code, out = invoke(env, "db", "upgrade")
    assert code == 0
    assert re.search(r"database at revision \d{4}", out)


def test_client_add_prints_the_new_cid(env: dict[str, str], db: Database) -> None:
    code, out = invoke(env, "client", "add", "Grid Operator North")
    assert code == 0
    cid = int(out.strip())
    with db.transaction() as conn:
        assert conn.scalar(select(clients.c.name).where(clients.c.cid == cid)) == (
            "Grid Operator North"
        )


def _add_client(env: dict[str, str]) -> int:
    return int(invoke(env, "client", "add", "c")[1].strip())


def test_user_add_with_password_option_can_log_in(env: dict[str, str], db: Database) -> None:
    cid = _add_client(env)
    code, out = invoke(
        env,
        "user",
        "add",
        "alice",
        "--password",
        "s3cret!",
        "--client",
        str(cid),
        "--role",
        "write",
    )
    assert code == 0, out
    with db.transaction() as conn:
        uid = service.user_id_by_login(conn, "alice")
        role = conn.scalar(select(user_roles.c.role).where(user_roles.c.user_id == uid))
        stored = conn.scalar(select(users.c.password_hash).where(users.c.id == uid))
    assert role == "write"
    assert stored is not None
    assert stored.startswith("$argon2id$")
    from besmart_server.server.users import security

    assert security.verify_password(stored, "s3cret!")


def test_user_add_reads_password_from_env_and_prompt(env: dict[str, str], db: Database) -> None:
    cid = _add_client(env)
    code, _ = invoke(
        {**env, "BESMART_PASSWORD": "from-env"}, "user", "add", "bob", "--client", str(cid)
    )
    assert code == 0
    code, out = invoke(env, "user", "add", "carol", "--client", str(cid), input="typed\ntyped\n")
    assert code == 0, out
    from besmart_server.server.users import security

    with db.transaction() as conn:
        hashes = {
            r.login: r.password_hash
            for r in conn.execute(select(users.c.login, users.c.password_hash))
        }
    assert security.verify_password(hashes["bob"], "from-env")
    assert security.verify_password(hashes["carol"], "typed")


def test_user_add_admin_flag_and_bad_client(env: dict[str, str], db: Database) -> None:
    cid = _add_client(env)
    code, _ = invoke(env, "user", "add", "root", "--password", "x", "--client", str(cid), "--admin")
    assert code == 0
    with db.transaction() as conn:
        assert conn.scalar(select(users.c.is_admin).where(users.c.login == "root")) is True
    code, out = invoke(env, "user", "add", "dave", "--password", "x", "--client", "999999")
    assert code == 1
    assert "Client 999999 not found" in out
    with db.transaction() as conn:
        assert conn.scalar(select(users.c.id).where(users.c.login == "dave")) is None
    code, _ = invoke(
        env, "user", "add", "erin", "--password", "x", "--client", "1", "--role", "god"
    )
    assert code == 2


def test_apikey_create_prints_a_working_key_once(env: dict[str, str], db: Database) -> None:
    cid = _add_client(env)
    code, out = invoke(env, "apikey", "create", "--client", str(cid))
    assert code == 0
    key = out.strip()
    assert key.startswith("bsk_")
    with db.transaction() as conn:
        principal = service.authenticate_api_key(conn, key)
    assert principal.roles == {cid: "read"}
    code, out = invoke(env, "apikey", "create", "--client", "999999")
    assert code == 1


def test_token_create_issues_a_long_lived_device_token(env: dict[str, str], db: Database) -> None:
    cid = _add_client(env)
    invoke(env, "user", "add", "gateway", "--password", "x", "--client", str(cid))
    code, out = invoke(env, "token", "create", "gateway", "--ttl", "30d")
    assert code == 0, out
    token = out.strip()
    with db.transaction() as conn:
        principal = service.authenticate_token(conn, token)
        expires = conn.scalar(select(tokens.c.expires_at).where(tokens.c.kind == "device"))
    assert principal.login == "gateway"
    assert expires is not None
    assert abs(expires / 1000 - (time.time() + 30 * 86400)) < 60
    assert invoke(env, "token", "revoke", token)[0] == 0
    assert invoke(env, "token", "revoke", token)[0] == 1
    assert invoke(env, "token", "create", "nobody")[0] == 1
    assert invoke(env, "token", "create", "gateway", "--ttl", "soon")[0] == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("1y", 31536000)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_demo_loads_once_into_an_empty_database(env: dict[str, str], db: Database) -> None:
    code, out = invoke(env, "demo")
    assert code == 0, out
    password = re.search(r"password:\s+(\S+)", out)
    assert password
    with db.transaction() as conn:
        stored = conn.scalar(select(users.c.password_hash).where(users.c.login == "demo"))
    from besmart_server.server.users import security

    assert security.verify_password(stored, password.group(1))
    code, out = invoke(env, "demo")
    assert code == 1
    assert "already" in out


def test_demo_ignores_system_clients(env: dict[str, str], db: Database) -> None:
    with db.transaction() as conn:
        service.create_client(conn, name="Weather (system)", is_system=True)
    code, out = invoke(env, "demo")
    assert code == 0, out


def test_serve_on_a_fresh_sqlite_database_with_demo_login(tmp_path: Path) -> None:
    """The README's first command: empty default database → schema, demo user, live API."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BESMART_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "besmart_server", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        password = None
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"password:\s+(\S+)", line):
                password = m.group(1)
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
        assert password, "".join(lines)
        assert (tmp_path / "data" / "besmart.db").exists()
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/api/users/token", json={"login": "demo", "password": password})
        assert token.status_code == 200, token.text
        me = httpx.get(
            f"{base}/api/clients", headers={"Authorization": f"Bearer {token.json()['token']}"}
        )
        assert me.status_code == 200
        assert me.json()[0]["role"] == "owner"
        assert httpx.get(f"{base}/openapi.json").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


# --- which database a command uses, and which commands may create one -------------------

WEATHER_FILE = Path(__file__).parent / "data" / "weather" / "krakow_2days.epw"
# Every command that opens the database but must not create one.
NO_CREATE = [
    ["client", "add", "x"],
    ["user", "add", "alice", "--client", "1", "--password", "x"],
    ["apikey", "create", "--client", "1"],
    ["token", "create", "gateway"],
    ["token", "revoke", "bst_x"],
    ["graph", "list"],
    ["graph", "show", "balance"],
    ["graph", "put", "g", "{}"],
    ["graph", "run", "balance", "--since", "0", "--till", "1"],
    ["graph", "evaluate", "load_forecast", "--since", "0", "--till", "1"],
    ["graph", "worker"],
    ["vee", "worker"],
    ["weather", "import", str(WEATHER_FILE)],
]


@pytest.mark.parametrize("args", NO_CREATE, ids=lambda a: " ".join(a[:2]))
def test_a_command_run_elsewhere_refuses_to_create_the_default_database(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a directory without ./data/besmart.db, no command but db upgrade, serve and
    demo makes a new empty database there: it names the one it looked for and exits 1."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args, env={"BESMART_DATABASE_URL": None})
    expected = tmp_path.resolve() / "data" / "besmart.db"
    assert result.exit_code == 1, result.output
    assert f"database: sqlite:///{expected}" in result.stderr
    assert f"error: no database at {expected}" in result.stderr
    assert "besmart db upgrade" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but holds no schema: an empty SQLite file, or a new
    PostgreSQL database on the test server."""
    from bench.scratch import scratch_database

    option: str = request.config.getoption("--db-url")
    if option == "sqlite":
        (tmp_path / "empty.db").touch()
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with scratch_database(option, "besmart_empty") as url:
        yield url


def test_a_command_refuses_a_database_without_schema_and_leaves_it_empty(
    empty_database_url: str,
) -> None:
    result = runner.invoke(
        app, ["client", "add", "x"], env={"BESMART_DATABASE_URL": empty_database_url}
    )
    assert result.exit_code == 1, result.output
    assert "error: the database holds no besmart schema" in result.stderr
    db = Database(empty_database_url)
    try:
        from besmart_server.server import migrate

        assert migrate.current_revision(db) is None
        with db.engine.connect() as conn:
            assert not sa_inspect(conn).get_table_names()
    finally:
        db.dispose()


def test_db_upgrade_and_demo_create_the_database_and_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["db", "upgrade"], env={"BESMART_DATABASE_URL": None})
    default = tmp_path.resolve() / "data" / "besmart.db"
    assert result.exit_code == 0, result.output
    assert f"database: sqlite:///{default}" in result.stderr
    assert default.is_file()
    # ... and once it exists, the other commands use it (and still name it).
    result = runner.invoke(app, ["client", "add", "x"], env={"BESMART_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1"
    assert f"database: sqlite:///{default}" in result.stderr

    other = tmp_path / "elsewhere" / "demo.db"
    result = runner.invoke(app, ["demo"], env={"BESMART_DATABASE_URL": f"sqlite:///{other}"})
    assert result.exit_code == 0, result.output
    assert f"database: sqlite:///{other.resolve()}" in result.stderr
    assert "password:" in result.stdout


def test_the_database_line_hides_the_password() -> None:
    from besmart_server.server.cli_db import describe

    assert describe("postgresql://alice:s3cret@db.example:5432/besmart") == (
        "postgresql://alice:***@db.example:5432/besmart"
    )
    assert describe("sqlite:///relative/x.db") == f"sqlite:///{Path('relative/x.db').resolve()}"


def test_a_missing_postgresql_database_is_a_clear_error(request: pytest.FixtureRequest) -> None:
    option: str = request.config.getoption("--db-url")
    if option == "sqlite":
        pytest.skip("PostgreSQL only (run with --db-url postgresql://...)")
    from sqlalchemy.engine import make_url

    url = make_url(option).set(database="besmart_no_such_database").render_as_string(False)
    result = runner.invoke(app, ["graph", "list"], env={"BESMART_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert "error: cannot open the database:" in result.stderr
    assert "besmart_no_such_database" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_db_compact_gives_back_what_deletions_and_rewrites_left_free(
    env: dict[str, str], db: Database
) -> None:
    """A sensor's blocks deleted and another's rewritten leave free space (SQLite pages,
    PostgreSQL dead rows); `db compact` shrinks the database and every point stays."""
    import numpy as np

    from besmart_server.server.compact import database_bytes
    from besmart_server.server.signals.pipeline import Frame
    from besmart_server.server.signals.store import SeriesStore
    from besmart_server.server.signals.tables import blocks
    from besmart_server.wire import TYPE_DBL
    from tests.api.signal_helpers import make_sensor, moid
    from tests.factories import make_client

    store = SeriesStore(db.dialect)
    cid = make_client(db)
    kept, gone = make_sensor(db, cid), make_sensor(db, cid)
    with db.transaction() as conn:
        ids = store.series_ids(conn, [(kept, moid("P+")), (gone, moid("P+"))], create=True)
    t0 = 1_767_225_600_000
    times = t0 + np.arange(200 * 96, dtype=np.int64) * 900_000  # 200 days of 15-min data
    rng = np.random.default_rng(3)
    for half in (times[::2], times[1::2]):  # every day's block written twice
        n = len(half)
        f = Frame.from_columns(half, [1] * n, [0] * n, [TYPE_DBL] * n, rng.normal(5, 1, n))
        with db.transaction() as conn:
            for sid in ids.values():
                store.insert(conn, np.full(n, sid, dtype=np.int64), f,
                             live=np.ones(n, dtype=np.bool_))  # fmt: skip
    with db.transaction() as conn:
        conn.execute(blocks.delete().where(blocks.c.series_id == ids[(gone, moid("P+"))]))
    sid = ids[(kept, moid("P+"))]
    with db.transaction(write=False) as conn:
        stored = store.read(conn, sid, t0, t0 + 201 * 86_400_000, origin=None, limit=100_000)
    before = database_bytes(db)
    code, out = invoke(env, "db", "compact")
    assert code == 0, out
    m = re.fullmatch(r"compacted: ([\d,]+) -> ([\d,]+) bytes \(([\d,-]+) freed\)\n", out)
    assert m, out
    was, now = (int(g.replace(",", "")) for g in m.groups()[:2])
    assert was >= before
    assert now < was
    assert now == database_bytes(db)
    with db.transaction(write=False) as conn:
        again = store.read(conn, sid, t0, t0 + 201 * 86_400_000, origin=None, limit=100_000)
    assert len(again) == len(times)
    for col in ("time", "origin", "acq", "type", "value"):
        assert np.array_equal(getattr(again, col), getattr(stored, col)), col


def test_db_compact_refuses_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    result = runner.invoke(
        app, ["db", "compact"], env={"BESMART_DATABASE_URL": f"sqlite:///{missing}"}
    )
    assert result.exit_code == 1
    assert f"error: no database at {missing.resolve()}" in result.stderr
    assert not missing.exists()


def test_db_compact_rewrites_the_schemas_tables_not_the_shared_catalogs(db: Database) -> None:
    """On PostgreSQL the blocks table is rewritten, but not pg_authid or pg_database: a
    VACUUM FULL of them would stop new connections to every database of the server."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite's VACUUM is the one file")
    from besmart_server.server.compact import compact

    def filenodes() -> dict[str, int]:
        with db.engine.connect() as conn:
            return {
                name: int(
                    conn.exec_driver_sql(f"SELECT pg_relation_filenode('{name}')").scalar_one()
                )
                for name in ("blocks", "pg_authid", "pg_database")
            }

    before = filenodes()
    compact(db)
    after = filenodes()
    assert after["blocks"] != before["blocks"]
    assert after["pg_authid"] == before["pg_authid"]
    assert after["pg_database"] == before["pg_database"]
