"""The one way a `besmart` command opens the configured database.

`./data/besmart.db`, the default, is relative to the current directory: a command run from
anywhere but the checkout the server uses would silently make and use a new empty database
there. So every command names the database it uses (on stderr, so stdout stays the
command's answer), and only the commands meant to create one (`db upgrade`, `serve`,
`demo`) may; the others refuse a database that does not exist or holds no schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from besmart_server.server.config import Settings
from besmart_server.server.db import Database, normalize_url
from besmart_server.server.errors import AppError


def describe(url: str) -> str:
    """The URL as a person should read it: a SQLite file by its absolute path, no password."""
    sa_url = make_url(normalize_url(url))
    database = sa_url.database
    if sa_url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return f"sqlite:///{Path(database).resolve()}"
    return make_url(url).render_as_string(hide_password=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _missing_sqlite_file(url: str) -> Path | None:
    sa_url = make_url(normalize_url(url))
    database = sa_url.database
    if sa_url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    path = Path(database).resolve()
    return None if path.is_file() else path


_CREATE_HINT = (
    "run the command where the server runs (the default ./data/besmart.db is relative to the "
    "current directory), set BESMART_DATABASE_URL, or create the database with "
    "`besmart db upgrade` (or `besmart serve` / `besmart demo`)"
)


@contextmanager
def open_database(
    settings: Settings | None = None, *, create: bool = False, upgrade: bool = True
) -> Iterator[Database]:
    """The configured database, named on stderr, at the newest schema (unless `upgrade` is
    False), closed afterwards. Without `create`, a missing database or one without a schema
    is an error (exit 1) instead of a new empty one. An AppError raised inside becomes its
    message on stderr and exit 1."""
    settings = settings or Settings()
    url = settings.database_url
    typer.echo(f"database: {describe(url)}", err=True)
    if not create and (path := _missing_sqlite_file(url)) is not None:
        # Checked before the engine exists: connecting would create the file.
        raise _fail(f"no database at {path}; {_CREATE_HINT}")
    db = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        from besmart_server.server import migrate

        if not create:
            try:
                revision = migrate.current_revision(db)
            except OperationalError as exc:
                raise _fail(f"cannot open the database: {exc.orig or exc}") from None
            if revision is None:
                raise _fail(f"the database holds no besmart schema; {_CREATE_HINT}")
        if upgrade:
            migrate.upgrade(db)
        yield db
    except AppError as exc:
        typer.echo(f"error ({exc.status}): {exc.detail}", err=True)
        loc = getattr(exc, "loc", None)
        if loc:
            typer.echo(f"  at {'/'.join(str(p) for p in loc)}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
