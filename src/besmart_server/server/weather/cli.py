"""`besmart weather ...`: fetch from a provider or import a weather file or table into the grid."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from besmart_server.server.cli_db import open_database
from besmart_server.server.weather.providers import Kind, ProviderError, ProviderResult

weather_app = typer.Typer(help="Weather grid: fetch forecasts and history, import files.")


class ProviderName(StrEnum):
    """Providers the fetch command knows."""

    OPEN_METEO = "open-meteo"


def parse_time(text: str) -> int:
    """UTC ms from an ISO date or datetime (naive means UTC) or from plain milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"not a time: {text!r} (use 2024-06-21, 2024-06-21T12:00Z or milliseconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _store(result: ProviderResult) -> None:
    from besmart_server.server.weather import service

    total = result.points()
    with (
        open_database() as db,
        db.transaction() as conn,
        typer.progressbar(length=total, label="storing") as bar,
    ):
        summary = service.import_weather(conn, result, progress=bar.update)
    for note in result.notes:
        typer.echo(note)
    counts = ", ".join(f"{k} {v}" for k, v in summary.points.items())
    typer.echo(
        f"stored {summary.total} points from {result.source} at grid point "
        f"{summary.sensor_mid} ({summary.lat:.4f}, {summary.lon:.4f}): {counts}"
    )


LatOpt = Annotated[float, typer.Option(min=-90, max=90, help="Latitude (degrees north).")]
LonOpt = Annotated[float, typer.Option(min=-180, max=180, help="Longitude (degrees east).")]


@weather_app.command("fetch")
def fetch(
    lat: LatOpt,
    lon: LonOpt,
    since: Annotated[str, typer.Option(help="Start (UTC): 2024-06-21, ISO datetime or ms.")],
    till: Annotated[str, typer.Option(help="End, exclusive (UTC), same forms.")],
    provider: Annotated[ProviderName, typer.Option(help="Where to fetch from.")] = (
        ProviderName.OPEN_METEO
    ),
    kind: Annotated[
        Kind, typer.Option(help="forecast: the latest run (origin 2); archive: history.")
    ] = Kind.FORECAST,
) -> None:
    """Fetch weather for a position and store it at the provider's grid point."""
    from besmart_server.server.weather.providers.open_meteo import OpenMeteo

    start, end = parse_time(since), parse_time(till)
    if start >= end:
        raise typer.BadParameter("--since must be before --till")
    source = OpenMeteo()
    try:
        result = source.fetch(lat, lon, start, end, kind)
    except ProviderError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        source.close()
    _store(result)


@weather_app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            help="An EPW or TMY3 file, or a CSV/Parquet table (time, T_AIR[°C], GHI[W/m2], ...).",
            exists=True,
            dir_okay=False,
        ),
    ],
    lat: Annotated[
        float | None,
        typer.Option(min=-90, max=90, help="Place at this latitude (else header; tables: needed)."),
    ] = None,
    lon: Annotated[
        float | None,
        typer.Option(
            min=-180, max=180, help="Place at this longitude (else header; tables: needed)."
        ),
    ] = None,
    year: Annotated[
        int | None,
        typer.Option(help="Put the typical year into this calendar year (else the file's years)."),
    ] = None,
    origin: Annotated[
        int | None,
        typer.Option(
            min=1, max=5, help="Tables: 1 measured (default), 2 forecast, 3 model. EPW/TMY3: 3."
        ),
    ] = None,
) -> None:
    """Import a weather file at a position: EPW/TMY3 (origin 3) or a CSV/Parquet table."""
    from besmart_server.server.weather.providers import ORIGIN_OBSERVED
    from besmart_server.server.weather.providers.files import read_weather_file
    from besmart_server.server.weather.providers.table import SUFFIXES, read_weather_table

    try:
        if file.suffix.lower() in SUFFIXES:
            if lat is None or lon is None:
                raise ProviderError(f"{file.name}: a table has no position: give --lat and --lon")
            if year is not None:
                raise ProviderError("--year places typical years (EPW/TMY3), not tables")
            result = read_weather_table(
                file, lat=lat, lon=lon, origin=ORIGIN_OBSERVED if origin is None else origin
            )
        else:
            if origin is not None:
                raise ProviderError("--origin is for tables: EPW/TMY3 files are origin 3")
            result = read_weather_file(file, lat=lat, lon=lon, year=year)
    except ProviderError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _store(result)
