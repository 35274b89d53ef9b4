"""Run the Alembic history programmatically (CLI `db upgrade`, first `serve`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from besmart_server.server.db import Database


def _script_location() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parent.parent / "migrations", here.parents[3] / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise RuntimeError("migrations folder not found next to the package or the checkout")


def alembic_config(db: Database) -> Config:
    """An Alembic config bound to this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision` in one transaction."""
    cfg = alembic_config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None when empty)."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(db: Database) -> str | None:
    """The newest revision of the history."""
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()
