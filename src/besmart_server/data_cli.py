"""`besmart data import|export`: signal data between files (CSV, Parquet) and a server, over
the API with the Python client."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

    from besmart_server.client import Client
    from besmart_server.client.table import FileFormat, Prepared, Reject, TimeFormat

data_app = typer.Typer(
    help="Signal data in files (CSV, Parquet) to and from a server, over the API.",
    no_args_is_help=True,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="BESMART_SERVER", help="Base URL of the server.")
]
LoginOpt = Annotated[
    str | None,
    typer.Option(
        "--login",
        envvar="BESMART_LOGIN",
        help="Log in as this user; the password comes from BESMART_PASSWORD or a prompt.",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="BESMART_TOKEN",
        help="A bearer token instead of --login (prefer the BESMART_TOKEN variable).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", help="csv or parquet (default: from the file's extension).", show_default=False
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _file_format(value: str | None) -> FileFormat | None:
    if value is None:
        return None
    if value not in ("csv", "parquet"):
        raise typer.BadParameter("use csv or parquet", param_hint="--format")
    return "csv" if value == "csv" else "parquet"


def _time_format(value: str, allowed: Sequence[str]) -> TimeFormat:
    if value not in allowed:
        raise typer.BadParameter(f"use one of {', '.join(allowed)}", param_hint="--time-format")
    fmt: TimeFormat = value  # type: ignore[assignment]  # checked just above
    return fmt


@contextmanager
def _connect(server: str, login: str | None, token: str | None) -> Iterator[Client]:
    """A client for the target: --login with BESMART_PASSWORD (or a prompt), or a token."""
    from besmart_server.client import Client

    if login:
        password = os.environ.get("BESMART_PASSWORD") or typer.prompt(
            f"Password for {login}", hide_input=True
        )
        client = Client(server, login=login, password=password)
    elif token:
        client = Client(server, token=token)
    else:
        raise _fail("give --login (password from BESMART_PASSWORD) or set BESMART_TOKEN", 2)
    with client:
        yield client


@contextmanager
def _progress(quiet: bool) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    ) as progress:
        yield progress


def _line_key(reject: Reject) -> tuple[int, str]:
    match = re.search(r"\d+", reject.where)
    return (int(match.group()) if match else 0, reject.where)


def _check_targets(bs: Client, prepared: Prepared) -> list[Reject]:
    """Series whose sensor, signal type or unit the server does not know, or that the
    caller may not write: each rejected with its rows (and dropped from `prepared`)."""
    from besmart_server.client import NotFound
    from besmart_server.client.table import Reject

    moids = {t.signal_type_moid for t in bs.signal_types()}
    units: set[str] = set()
    for u in bs.units():
        units.update([u.symbol, *u.aliases])
    sensors: dict[tuple[int, int], str | None] = {}
    rejects: list[Reject] = []
    keep = []
    for s in prepared.series:
        key = (s.client_cid, s.sensor_mid)
        if key not in sensors:
            try:
                sensor = bs.get_sensor(*key)
                sensors[key] = None if sensor.write else "no write permission on the sensor"
            except NotFound:
                sensors[key] = "sensor not found"
        problems = [p for p in (sensors[key],) if p]
        if s.signal_type_moid not in moids:
            problems.append(f"unknown signal type {s.signal_type_moid}")
        if s.unit is not None and s.unit not in units:
            problems.append(f"unknown unit {s.unit!r}")
        if problems:
            where = (
                f"{len(s.frame)} rows for {s.client_cid}.{s.sensor_mid} "
                f"signal type {s.signal_type_moid}"
            )
            rejects.append(Reject(where, tuple(problems)))
        else:
            keep.append(s)
    prepared.series = keep
    return rejects


@data_app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or Parquet.")
    ],
    server: ServerOpt = DEFAULT_SERVER,
    login: LoginOpt = None,
    token: TokenOpt = None,
    client: Annotated[
        int | None, typer.Option("--client", help="client_cid of every row (else a column).")
    ] = None,
    sensor: Annotated[
        int | None, typer.Option("--sensor", help="sensor_mid of every row (else a column).")
    ] = None,
    moid: Annotated[
        int | None,
        typer.Option("--moid", help="signal_type_moid of every row (else a column)."),
    ] = None,
    unit: Annotated[
        str | None, typer.Option("--unit", help="Unit the values are in (else a column).")
    ] = None,
    origin: Annotated[
        int | None,
        typer.Option("--origin", min=1, max=5, help="Origin of every row (else a column, or 1)."),
    ] = None,
    time_col: Annotated[str, typer.Option("--time-col", help="Capture time column.")] = "time",
    value_col: Annotated[str, typer.Option("--value-col", help="Value column.")] = "value",
    type_col: Annotated[str, typer.Option("--type-col", help="Type column (DBL...).")] = "type",
    origin_col: Annotated[str, typer.Option("--origin-col", help="Origin column.")] = "origin",
    acq_col: Annotated[
        str, typer.Option("--acq-col", help="Acquisition time column (keeps versions).")
    ] = "acq_time",
    unit_col: Annotated[str, typer.Option("--unit-col", help="Unit column.")] = "unit",
    client_col: Annotated[str, typer.Option("--client-col")] = "client_cid",
    sensor_col: Annotated[str, typer.Option("--sensor-col")] = "sensor_mid",
    moid_col: Annotated[str, typer.Option("--moid-col")] = "signal_type_moid",
    time_format: Annotated[
        str,
        typer.Option(
            "--time-format",
            help="auto (numbers are ms, text ISO 8601), ms, s or iso; naive times are UTC.",
        ),
    ] = "auto",
    fmt: FormatOpt = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="CSV field separator.")] = ",",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate (also against the server), write nothing.")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Write the good rows even when some are rejected.")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Points per series per request.")
    ] = 10_000,
    show: Annotated[int, typer.Option("--show", min=0, help="Rejected rows to list.")] = 20,
    quiet: QuietOpt = False,
) -> None:
    """Import points from a CSV or Parquet file (one row per point).

    Every row is validated first; when one is malformed nothing is written (unless
    --skip-bad), and the summary lists the rejected lines with the reasons. --dry-run also
    checks the targets on the server, and writes nothing.
    """
    from besmart_server.client import BesmartError
    from besmart_server.client.table import ColumnMap, TableError, prepare, read_table

    cmap = ColumnMap(
        time_col=time_col,
        value_col=value_col,
        type_col=type_col,
        origin_col=origin_col,
        acq_col=acq_col,
        unit_col=unit_col,
        client_col=client_col,
        sensor_col=sensor_col,
        moid_col=moid_col,
        time_format=_time_format(time_format, ("auto", "ms", "s", "iso")),
        client=client,
        sensor=sensor,
        moid=moid,
        origin=origin,
        unit=unit,
    )
    try:
        table, where, bad_lines = read_table(file, _file_format(fmt), delimiter=delimiter)
        prepared = prepare(table, where, cmap)
    except (TableError, OSError, ValueError) as exc:
        raise _fail(f"{file.name}: {exc}", 2) from exc
    rejects = sorted([*bad_lines, *prepared.rejects], key=_line_key)
    try:
        with _connect(server, login, token) as bs:
            rejects += _check_targets(bs, prepared)
            rows = prepared.rows + len(bad_lines)
            typer.echo(
                f"{file.name}: {rows} rows, {prepared.points} points in "
                f"{len(prepared.series)} series, {len(rejects)} rejected"
            )
            if prepared.duplicates:
                typer.echo(
                    f"  {prepared.duplicates} rows left out: a later row has the same time, "
                    "origin and acq_time of the same series (it is the one stored)"
                )
            for r in rejects[:show]:
                typer.echo(f"  rejected {r}")
            if len(rejects) > show:
                typer.echo(f"  ... and {len(rejects) - show} more")
            if rejects and not skip_bad:
                raise _fail("nothing written: fix the rejected rows or use --skip-bad")
            if dry_run:
                typer.echo(f"dry run: {prepared.points} points would be written; nothing written")
                return
            with _progress(quiet) as progress:
                task = progress.add_task("writing", total=prepared.points)
                written = bs.write_many(
                    prepared.series,
                    chunk_points=batch,
                    progress=lambda done, _total: progress.update(task, completed=done),
                )
    except BesmartError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"written: {written} points in {len(prepared.series)} series")


def _windows(since: int, till: int, window_ms: int | None) -> list[tuple[int, int]]:
    if window_ms is None or till - since <= window_ms:
        return [(since, till)]
    return [(s, min(s + window_ms, till)) for s in range(since, till, window_ms)]


@data_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(dir_okay=False, help="Output .csv or .parquet file.")],
    client: Annotated[int, typer.Option("--client", help="client_cid.")],
    sensor: Annotated[list[int], typer.Option("--sensor", help="sensor_mid (repeatable).")],
    moid: Annotated[list[int], typer.Option("--moid", help="signal_type_moid (repeatable).")],
    since: Annotated[str, typer.Option("--since", help="Start, inclusive: ms or ISO 8601.")],
    till: Annotated[str, typer.Option("--till", help="End, exclusive: ms or ISO 8601.")],
    server: ServerOpt = DEFAULT_SERVER,
    login: LoginOpt = None,
    token: TokenOpt = None,
    get_last: Annotated[
        bool, typer.Option("--get-last", help="Newest version per point only (else every one).")
    ] = False,
    delta_t: Annotated[
        str | None,
        typer.Option("--delta-t", help="Aggregate into buckets: minutes, or month, quarter, year."),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="IANA zone of the buckets (local days, months); default the client's timezone.",
        ),
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="No stitching across meter swaps.")] = False,
    apply_multiplier: Annotated[
        bool, typer.Option("--apply-multiplier", help="Apply transformer ratios.")
    ] = False,
    output_unit_id: Annotated[
        int | None, typer.Option("--output-unit-id", help="Convert to this unit.")
    ] = None,
    signal_origin_id: Annotated[
        int | None, typer.Option("--origin", min=1, max=5, help="Only this origin.")
    ] = None,
    is_chart: Annotated[
        bool, typer.Option("--is-chart", help="Convert to the chart unit.")
    ] = False,
    time_format: Annotated[
        str, typer.Option("--time-format", help="iso (UTC, ms), ms or s.")
    ] = "iso",
    fmt: FormatOpt = None,
    window_days: Annotated[
        int, typer.Option("--window-days", min=1, help="Read in windows of this many days.")
    ] = 30,
    quiet: QuietOpt = False,
) -> None:
    """Export signals to CSV or Parquet, with any read options.

    Columns: time, client_cid, sensor_mid, signal_type_moid, value, type, origin, acq_time,
    unit; the file imports back as it is. Without --get-last every stored version is kept.
    """
    import pandas as pd

    from besmart_server.client import BesmartError, to_ms
    from besmart_server.client.table import export_frame, write_table

    tfmt = _time_format(time_format, ("iso", "ms", "s"))
    kind = _file_format(fmt)
    try:
        since_ms, till_ms = to_ms(since), to_ms(till)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(f"not a time: {exc}", param_hint="--since/--till") from exc
    if since_ms >= till_ms:
        raise typer.BadParameter("--since must be before --till", param_hint="--since/--till")
    if delta_t is not None and not (
        delta_t in ("month", "quarter", "year") or (delta_t.isdigit() and int(delta_t) > 0)
    ):
        raise typer.BadParameter(
            "minutes (a positive whole number) or month, quarter, year", param_hint="--delta-t"
        )
    options: dict[str, Any] = {
        "get_last": get_last or None,
        "delta_t": delta_t,
        "raw": raw or None,
        "apply_multiplier": apply_multiplier or None,
        "output_unit_id": output_unit_id,
        "signal_origin_id": signal_origin_id,
        "is_chart": is_chart or None,
    }
    # Aggregated reads go whole: a bucket's value may depend on points around it.
    windows = _windows(since_ms, till_ms, None if delta_t else window_days * 86_400_000)
    targets = [(m, s) for m in sensor for s in moid]
    frames = []
    try:
        with _connect(server, login, token) as bs, _progress(quiet) as progress:
            if delta_t is not None:
                # Buckets count in the client's own zone unless --tz names one.
                zones = {c.client_cid: c.timezone for c in bs.clients()}
                options["tz"] = tz or zones.get(client, "UTC")
            task = progress.add_task("reading", total=len(targets) * len(windows))
            for mid, signal_type in targets:
                parts = []
                for w_since, w_till in windows:
                    parts.append(bs.read(client, mid, signal_type, w_since, w_till, **options))
                    progress.advance(task)
                frame = pd.concat(parts) if len(parts) > 1 else parts[0]
                frame.attrs = dict(parts[0].attrs)
                frames.append(frame)
    except BesmartError as exc:
        raise _fail(str(exc)) from exc
    table = export_frame(frames, tfmt)
    try:
        write_table(table, out, kind)
    except (OSError, ValueError) as exc:
        raise _fail(f"{out}: {exc}") from exc
    typer.echo(f"exported: {len(table)} points of {len(frames)} series to {out}")
