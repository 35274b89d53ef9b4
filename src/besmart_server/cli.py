"""The `besmart` command: serve, migrate, administer users, clients, keys and tokens."""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from besmart_server.data_cli import data_app
from besmart_server.schemas.users import Role
from besmart_server.server.cli_db import open_database
from besmart_server.server.config import Settings
from besmart_server.server.graphs.cli import graph_app
from besmart_server.server.mqtt.cli import device_app, mqtt_app
from besmart_server.server.vee.cli import beside_serve, vee_app
from besmart_server.server.weather.cli import weather_app

app = typer.Typer(
    help="besmart-server: energy-data platform (besmart REST API).", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema and upkeep.", no_args_is_help=True)
client_app = typer.Typer(help="Clients (tenants).", no_args_is_help=True)
user_app = typer.Typer(help="Users and roles.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the X-Auth header.", no_args_is_help=True)
token_app = typer.Typer(help="Long-lived bearer tokens for devices.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(client_app, name="client")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(token_app, name="token")
app.add_typer(weather_app, name="weather")
app.add_typer(data_app, name="data")
app.add_typer(graph_app, name="graph")
app.add_typer(device_app, name="device")
app.add_typer(mqtt_app, name="mqtt")
app.add_typer(vee_app, name="vee")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdwy]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> int:
    """'90m', '12h', '30d', '1y' or plain seconds → seconds."""
    match = _DURATION.match(text.lower())
    if not match or int(match.group(1)) <= 0:
        raise typer.BadParameter(f"not a duration: {text!r} (use e.g. 3600, 90m, 12h, 30d, 1y)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _settings() -> Settings:
    return Settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Upgrade the schema, load demo data into an empty database, and serve the API, with a
    validation worker beside it (`besmart vee worker`; BESMART_VALIDATE_IN_SERVE=0: none)."""
    import uvicorn

    from besmart_server import demo

    settings = _settings()
    with open_database(settings, create=True) as db:
        if settings.demo and demo.is_empty(db):
            _print_demo(demo.load_demo(db))
    with beside_serve(settings):
        uvicorn.run(
            "besmart_server.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            # Tokens travel in headers, never in URLs; access lines show paths only.
            access_log=True,
        )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or upgrade the schema (one Alembic history for SQLite and PostgreSQL)."""
    from besmart_server.server import migrate

    with open_database(create=True, upgrade=False) as db:
        migrate.upgrade(db, revision)
        typer.echo(f"database at revision {migrate.current_revision(db)}")


@db_app.command("compact")
def db_compact() -> None:
    """Rewrite the database without the space rewrites and deletions left free (SQLite
    VACUUM, PostgreSQL VACUUM FULL): for a maintenance window, it holds each table it
    rewrites exclusively and needs free disk for a copy."""
    from besmart_server.server.compact import compact

    with open_database() as db:
        done = compact(db)
    saved = done.before - done.after
    typer.echo(f"compacted: {done.before:,} -> {done.after:,} bytes ({saved:,} freed)")


@client_app.command("add")
def client_add(name: Annotated[str, typer.Argument(help="Client name.")]) -> None:
    """Create a client and print its client_cid."""
    from besmart_server.server.users import service

    with open_database() as db, db.transaction() as conn:
        cid = service.create_client(conn, name=name)
    typer.echo(cid)


@user_app.command("add")
def user_add(
    login: Annotated[str, typer.Argument(help="Login name.")],
    client: Annotated[int, typer.Option("--client", help="client_cid to grant the role on.")],
    role: Annotated[Role, typer.Option("--role", help="Role on that client.")] = Role.read,
    password: Annotated[
        str | None, typer.Option("--password", help="Password (else BESMART_PASSWORD or prompt).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Admin: sees every client.")] = False,
) -> None:
    """Create a user with a role on a client (or grant the role to an existing user)."""
    from besmart_server.server.errors import AppError
    from besmart_server.server.users import service

    password = password or os.environ.get("BESMART_PASSWORD")
    with open_database() as db, db.transaction() as conn:
        try:
            uid = service.user_id_by_login(conn, login)
            created = False
        except AppError:
            if not password:
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            uid = service.create_user(conn, login=login, password=password, is_admin=admin)
            created = True
        service.grant_role(conn, user_id=uid, client_cid=client, role=role)
    verb = "created" if created else "updated"
    typer.echo(f"user {login} (id {uid}) {verb}: {role.value} on client {client}")


@apikey_app.command("create")
def apikey_create(
    client: Annotated[int, typer.Option("--client", help="client_cid the key reads.")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
) -> None:
    """Create an API key for a client and print it once."""
    from besmart_server.server.users import service

    settings = _settings()
    with open_database(settings) as db, db.transaction() as conn:
        key = service.create_api_key(
            conn, client_cid=client, name=name, pepper=settings.secret_pepper.get_secret_value()
        )
    typer.echo(key)


@token_app.command("create")
def token_create(
    login: Annotated[str, typer.Argument(help="The user the token acts as.")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 3600, 90m, 12h, 30d, 1y.")] = "365d",
) -> None:
    """Issue a long-lived token for a device and print it once."""
    from besmart_server.server.users import service

    seconds = parse_duration(ttl)
    settings = _settings()
    with open_database(settings) as db, db.transaction() as conn:
        uid = service.user_id_by_login(conn, login)
        issued = service.issue_token(
            conn,
            user_id=uid,
            ttl_seconds=seconds,
            pepper=settings.secret_pepper.get_secret_value(),
            kind="device",
        )
    typer.echo(issued.token)


@token_app.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="The token to revoke.")]) -> None:
    """Revoke a token."""
    from besmart_server.server.users import service

    settings = _settings()
    with open_database(settings) as db, db.transaction() as conn:
        ok = service.revoke_token(conn, token, pepper=settings.secret_pepper.get_secret_value())
    if not ok:
        typer.echo("error: unknown or already revoked token", err=True)
        raise typer.Exit(1)
    typer.echo("revoked")


@app.command()
def demo() -> None:
    """Load the demo data (a client, a user whose password is printed once, and more)."""
    from besmart_server import demo as demo_data

    with open_database(create=True) as db:
        if not demo_data.is_empty(db):
            typer.echo(
                "error: the database already holds clients; demo data goes into an empty one",
                err=True,
            )
            raise typer.Exit(1)
        _print_demo(demo_data.load_demo(db))


def _print_demo(info: object) -> None:
    from besmart_server.server.demo_info import DemoInfo

    assert isinstance(info, DemoInfo)
    typer.echo("demo data loaded:")
    typer.echo(f"  client_cid: {info.client_cid}")
    typer.echo(f"  login:      {info.login}")
    typer.echo(f"  password:   {info.password}   (shown once; keep it)")
    for note in info.notes:
        typer.echo(f"  {note}")


# `besmart graph quality` drives a benchmark harness that lives outside the server package
# (besmart_server.tools.quality), so it is declared here, where the CLI is put together.
@graph_app.command("quality")
def graph_quality(
    database_url: Annotated[
        str | None,
        typer.Option(help="a database for the demo (default: a temporary SQLite file)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="every figure, as JSON")] = False,
    readme: Annotated[
        Path | None,
        typer.Option(
            help="also write the table into this README between its graph-quality markers",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Load the demo into a fresh database and print the shipped graphs' measured quality."""
    from besmart_server.demo import load_demo
    from besmart_server.tools import quality as q

    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'quality.db'}"
        settings = Settings(database_url=url, demo=False)
        # The demo needs a database of its own: this command makes one.
        with open_database(settings, create=True) as db:
            day = datetime.fromisoformat(q.DEMO_DAY).replace(tzinfo=UTC)
            measured = q.measure(db, load_demo(db, today=int(day.timestamp()) * 1000), settings)
    if as_json:
        typer.echo(json.dumps(measured, indent=2, default=str))
    else:
        typer.echo(f"{q.table(measured)}\n\n{q.summary(measured)}")
    if readme is not None:
        try:
            section = q.readme_section(measured, q.DEMO_DAY)
            readme.write_text(q.splice(readme.read_text(), section))
        except (OSError, ValueError) as exc:
            typer.echo(f"error: {readme}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote the table into {readme}", err=True)


def main() -> None:
    """Entry point of the `besmart` script."""
    app()
