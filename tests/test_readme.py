"""The README documents every setting, and its CLI list names commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from besmart_server.cli import app
from besmart_server.server.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


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
