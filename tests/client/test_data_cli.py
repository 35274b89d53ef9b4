"""`besmart data import|export` against a live server on loopback (the real app and database)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uvicorn
from typer.testing import CliRunner

from besmart_server.cli import app as cli
from besmart_server.client import Client
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from tests.factories import Actor

A_PLUS, A_MINUS = 32, 34
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000
H = 60 * MIN

runner = CliRunner()


@pytest.fixture
def server(settings: Settings, db: Database) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def bs(server: str, tenant: tuple[int, Actor]) -> Iterator[Client]:
    _, actor = tenant
    with Client(server, login=actor.login, password=actor.password) as c:
        yield c


@pytest.fixture
def env(server: str, tenant: tuple[int, Actor]) -> dict[str, str]:
    _, actor = tenant
    return {"BESMART_SERVER": server, "BESMART_PASSWORD": actor.password}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["data", *args], env=env)
    return result.exit_code, result.output


def login_args(tenant: tuple[int, Actor]) -> list[str]:
    return ["--login", tenant[1].login]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


# --- import -----------------------------------------------------------------------------------


def test_import_csv_with_mapped_columns_and_units(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    csv = write_csv(
        tmp_path / "readings.csv",
        """
ts;energy
2026-01-01T00:00:00Z;1000
2026-01-01T00:15:00Z;1.235e+03

2026-01-01 00:30;1500.5
""",
    )
    code, out = run(
        env, "import", str(csv), *login_args(tenant), "--client", str(cid), "--sensor", str(mid),
        "--moid", str(A_PLUS), "--unit", "Wh", "--origin", "4", "--time-col", "ts",
        "--value-col", "energy", "--delimiter", ";", "-q",
    )  # fmt: skip
    assert code == 0, out
    assert "3 rows, 3 points in 1 series, 0 rejected" in out
    assert "written: 3 points in 1 series" in out
    back = bs.read(cid, mid, A_PLUS, T0, T0 + H)
    assert back["value"].tolist() == [1.0, 1.235, 1.5005]
    assert back["origin"].tolist() == [4, 4, 4]


def test_a_malformed_csv_writes_nothing_and_names_the_lines(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    csv = write_csv(
        tmp_path / "bad.csv",
        f"""
time,value,origin,type
{T0},1.0,1,DBL
{T0 + MIN},abc,1,DBL
not a time,2.0,1,DBL
{T0 + 3 * MIN},3.0,7,DBL
{T0 + 4 * MIN},4.5,1,INT
{T0 + 5 * MIN},,1,DBL
{T0 + 6 * MIN},6.0,1,XYZ
{T0 + 7 * MIN},7.0
{T0 + 8 * MIN},nan,1,DBL
{T0 + 9 * MIN},,1,RM
""",
    )
    args = ["import", str(csv), *login_args(tenant), "--client", str(cid), "--sensor", str(mid)]
    code, out = run(env, *args, "--moid", str(A_PLUS))
    assert code == 1, out
    assert "10 rows, 2 points in 1 series, 8 rejected" in out
    for expected in (
        "line 3: value 'abc' is not a finite number",
        "line 4: time 'not a time' is neither ms nor an ISO 8601 time",
        "line 5: origin '7' is not one of 1..5",
        "line 6: value '4.5' is not an integer (type INT)",
        "line 7: missing value",
        "line 8: type 'XYZ' is not one of DBL INT STR RM",
        "line 9: expected 4 fields, found 2",
        "line 10: value 'nan' is not a finite number",
    ):
        assert expected in out
    assert "nothing written" in out
    assert bs.read(cid, mid, A_PLUS, T0, T0 + H).empty

    code, out = run(env, *args, "--moid", str(A_PLUS), "--skip-bad", "-q")
    assert code == 0, out
    assert "written: 2 points" in out
    back = bs.read(cid, mid, A_PLUS, T0, T0 + H)
    assert back["type"].tolist() == ["DBL", "RM"]


def test_dry_run_checks_the_targets_and_writes_nothing(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    csv = write_csv(
        tmp_path / "rows.csv",
        f"""
time,client_cid,sensor_mid,signal_type_moid,value,unit
{T0},{cid},{mid},{A_PLUS},1.0,kWh
{T0},{cid},{mid},{A_MINUS},2.0,
{T0},{cid},999999,{A_PLUS},3.0,
{T0},{cid},{mid},{A_PLUS},4.0,furlong
""",
    )
    code, out = run(env, "import", str(csv), *login_args(tenant), "--dry-run")
    assert code == 1, out
    assert f"1 rows for {cid}.999999 signal type {A_PLUS}: sensor not found" in out
    assert "unknown unit 'furlong'" in out
    assert bs.read(cid, mid, A_PLUS, T0, T0 + H).empty

    good = write_csv(tmp_path / "good.csv", "\n".join(csv.read_text().splitlines()[:3]) + "\n")
    code, out = run(env, "import", str(good), *login_args(tenant), "--dry-run")
    assert code == 0, out
    assert "dry run: 2 points would be written; nothing written" in out
    assert bs.read(cid, mid, A_PLUS, T0, T0 + H).empty
    assert bs.read(cid, mid, A_MINUS, T0, T0 + H).empty


def test_import_parquet_with_a_token_from_the_environment(
    server: str, bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    cid, actor = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    path = tmp_path / "points.parquet"
    pd.DataFrame(
        {
            "t": pd.to_datetime(T0 + 15 * MIN * np.arange(4), unit="ms", utc=True),
            "value": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_parquet(path)
    env = {"BESMART_SERVER": server, "BESMART_TOKEN": actor.token}
    args = ["import", str(path), "--client", str(cid), "--sensor", str(mid), "--time-col", "t"]
    code, out = run(env, *args, "--moid", str(A_PLUS), "-q")
    assert code == 0, out
    assert bs.read(cid, mid, A_PLUS, T0, T0 + H)["value"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_import_needs_credentials_and_a_readable_table(
    server: str, tmp_path: Path, tenant: tuple[int, Actor]
) -> None:
    csv = write_csv(tmp_path / "a.csv", f"time,value\n{T0},1\n")
    target = ["--client", "1", "--sensor", "1", "--moid", "32"]
    code, out = run({"BESMART_SERVER": server}, "import", str(csv), *target)
    assert code == 2
    assert "give --login" in out
    code, out = run({"BESMART_SERVER": server}, "import", str(csv))
    assert code == 2
    assert "no --client option and no 'client_cid' column" in out
    code, out = run(
        {"BESMART_SERVER": server, "BESMART_PASSWORD": "wrong"},
        "import", str(csv), *login_args(tenant), *target,
    )  # fmt: skip
    assert code == 1
    assert "401" in out


# --- export and the round trip ----------------------------------------------------------------


def history(bs: Client, cid: int, mid: int) -> None:
    """Two signals with versions, tombstones, every type and several origins."""
    acq = T0 + 30 * 86_400_000
    frame = pd.DataFrame(
        {
            "value": [0.1, 0.30000000000000004, 12345.678901234567, 3, None, "text, with comma"],
            "type": ["DBL", "DBL", "DBL", "INT", "RM", "STR"],
            "origin": [1, 1, 2, 1, 1, 5],
            "acq_time": pd.to_datetime(
                [acq, acq + 1, acq, acq + 5, acq + 9, acq + 7], unit="ms", utc=True
            ),
        },
        index=pd.to_datetime(
            [T0, T0, T0 + 15 * MIN, T0 + 30 * MIN, T0 + 30 * MIN, T0 + 45 * MIN],
            unit="ms",
            utc=True,
        ),
    )
    bs.write(frame, cid, mid, A_PLUS)
    plain = pd.Series(
        np.random.default_rng(7).normal(size=200),
        index=pd.to_datetime(T0 + MIN * np.arange(200), unit="ms", utc=True),
    )
    bs.write(plain, cid, mid, A_MINUS)


@pytest.mark.parametrize(
    ("name", "time_format"),
    [
        pytest.param("out.csv", "iso", id="csv-iso"),
        pytest.param("out.csv", "ms", id="csv-ms"),
        pytest.param("out.parquet", "iso", id="parquet-iso"),
        pytest.param("out.parquet", "s", id="parquet-s"),
    ],
)
def test_export_then_import_reproduces_the_series_exactly(
    env: dict[str, str],
    bs: Client,
    tenant: tuple[int, Actor],
    tmp_path: Path,
    name: str,
    time_format: str,
) -> None:
    cid, _ = tenant
    src = bs.create_sensor(cid, "source").sensor_mid
    dst = bs.create_sensor(cid, "copy").sensor_mid
    history(bs, cid, src)
    out = tmp_path / name
    code, text = run(
        env, "export", str(out), *login_args(tenant), "--client", str(cid), "--sensor", str(src),
        "--moid", str(A_PLUS), "--moid", str(A_MINUS), "--since", "2026-01-01T00:00:00Z",
        "--till", str(T0 + 4 * H), "--time-format", time_format, "--window-days", "1",
    )  # fmt: skip
    assert code == 0, text
    assert f"exported: 206 points of 2 series to {out}" in text

    code, text = run(
        env, "import", str(out), *login_args(tenant), "--sensor", str(dst), "-q",
        *(["--time-format", "s"] if time_format == "s" else []),
    )  # fmt: skip
    assert code == 0, text
    assert "written: 206 points in 2 series" in text
    for moid in (A_PLUS, A_MINUS):
        original = bs.read(cid, src, moid, T0, T0 + 4 * H)
        copy = bs.read(cid, dst, moid, T0, T0 + 4 * H)
        pd.testing.assert_frame_equal(copy, original, check_exact=True)
        assert copy.attrs["unit"] == original.attrs["unit"]
    assert bs.read(cid, dst, A_PLUS, T0, T0 + H)["value"].tolist() == [
        0.1,
        0.30000000000000004,
        12345.678901234567,
        3,
        None,
        "text, with comma",
    ]


def test_export_with_read_options_and_an_aggregate(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    history(bs, cid, mid)
    out = tmp_path / "hourly.csv"
    code, text = run(
        env, "export", str(out), *login_args(tenant), "--client", str(cid), "--sensor", str(mid),
        "--moid", str(A_MINUS), "--since", str(T0), "--till", str(T0 + 2 * H), "--delta-t", "60",
        "--output-unit-id", "4", "--get-last", "-q",
    )  # fmt: skip
    assert code == 0, text
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "time",
        "client_cid",
        "sensor_mid",
        "signal_type_moid",
        "value",
        "type",
        "origin",
        "acq_time",
        "unit",
    ]
    assert table["time"].tolist() == ["2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z"]
    assert table["unit"].unique().tolist() == ["Wh"]


def test_export_refuses_a_bad_window(env: dict[str, str], tenant: tuple[int, Actor]) -> None:
    code, out = run(
        env, "export", "x.csv", *login_args(tenant), "--client", "1", "--sensor", "1",
        "--moid", "32", "--since", str(T0), "--till", str(T0),
    )  # fmt: skip
    assert code == 2
    assert "--since must be before --till" in out


# --- versions, duplicates and bounds (issue #14) -------------------------------------------


def test_export_then_import_keeps_every_version_of_a_burst(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    """Versions written faster than one per ms each keep their own acq_time: exported and
    imported, every one arrives, the count printed is the count stored, and the copy
    exports to the same rows."""
    cid, _ = tenant
    src = bs.create_sensor(cid, "source").sensor_mid
    dst = bs.create_sensor(cid, "copy").sensor_mid
    n = 300
    for i in range(n):
        bs.put_signals(
            [{"client_cid": cid, "sensor_mid": src, "signal_type_moid": A_PLUS,
              "data": {"time": [T0, T0 + MIN], "value": [i, -i]}}]
        )  # fmt: skip
    original = bs.read(cid, src, A_PLUS, T0, T0 + H)
    assert original["acq_time"].iloc[:n].is_unique  # the versions at T0
    first, again = tmp_path / "first.csv", tmp_path / "again.csv"
    window = ["--since", str(T0), "--till", str(T0 + H), "--time-format", "ms", "-q"]
    code, text = run(
        env, "export", str(first), *login_args(tenant), "--client", str(cid),
        "--sensor", str(src), "--moid", str(A_PLUS), *window,
    )  # fmt: skip
    assert code == 0, text
    assert f"exported: {2 * n} points" in text
    code, text = run(env, "import", str(first), *login_args(tenant), "--sensor", str(dst), "-q")
    assert code == 0, text
    assert f"written: {2 * n} points in 1 series" in text
    copy = bs.read(cid, dst, A_PLUS, T0, T0 + H)
    pd.testing.assert_frame_equal(copy, original, check_exact=True)
    code, text = run(
        env, "export", str(again), *login_args(tenant), "--client", str(cid),
        "--sensor", str(dst), "--moid", str(A_PLUS), *window,
    )  # fmt: skip
    assert code == 0, text
    a, b = pd.read_csv(first), pd.read_csv(again)
    pd.testing.assert_frame_equal(a.drop(columns="sensor_mid"), b.drop(columns="sensor_mid"))
    # Imported again into the same series: the same versions, replaced, not doubled.
    code, text = run(env, "import", str(first), *login_args(tenant), "--sensor", str(dst), "-q")
    assert code == 0, text
    assert len(bs.read(cid, dst, A_PLUS, T0, T0 + H)) == 2 * n


def test_import_counts_what_is_stored_when_rows_repeat_a_point(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    """Rows with the same point (and acq_time) are one stored version, the later row: the
    import sends only that one, so `written` is what is stored, in any number of requests."""
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    csv = write_csv(
        tmp_path / "dup.csv",
        f"""
time,value,origin,acq_time
{T0},1,1,{T0 + H}
{T0},2,1,{T0 + H}
{T0},3,2,{T0 + H}
{T0 + MIN},4,1,{T0 + H}
{T0 + MIN},5,1,{T0 + 2 * H}
""",
    )
    args = ["import", str(csv), *login_args(tenant), "--client", str(cid), "--sensor", str(mid)]
    code, out = run(env, *args, "--moid", str(A_PLUS), "--batch", "1", "-q")
    assert code == 0, out
    assert "5 rows, 4 points in 1 series, 0 rejected" in out
    assert "1 rows left out" in out
    assert "written: 4 points in 1 series" in out
    back = bs.read(cid, mid, A_PLUS, T0, T0 + H)
    assert back["value"].tolist() == [2.0, 3.0, 4.0, 5.0]

    plain = write_csv(tmp_path / "plain.csv", f"time,value\n{T0 + 2 * MIN},1\n{T0 + 2 * MIN},7\n")
    args = ["import", str(plain), *login_args(tenant), "--client", str(cid), "--sensor", str(mid)]
    code, out = run(env, *args, "--moid", str(A_PLUS), "--batch", "1", "-q")
    assert code == 0, out
    assert "written: 1 points in 1 series" in out
    assert bs.read(cid, mid, A_PLUS, T0 + 2 * MIN, T0 + H)["value"].tolist() == [7.0]


def test_import_refuses_values_and_acq_times_the_server_would_refuse(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    """Checked before the first request, so nothing of a many-request import is written."""
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    future = int(time.time() * 1000) + 3_600_000
    csv = write_csv(
        tmp_path / "big.csv",
        f"""
time,value,type,acq_time
{T0},1,DBL,{T0}
{T0 + MIN},9007199254740993,INT,{T0}
{T0 + 2 * MIN},1e300,DBL,{T0}
{T0 + 3 * MIN},2,DBL,{future}
""",
    )
    args = ["import", str(csv), *login_args(tenant), "--client", str(cid), "--sensor", str(mid)]
    code, out = run(env, *args, "--moid", str(A_PLUS), "--batch", "1")
    assert code == 1, out
    assert "4 rows, 1 points in 1 series, 3 rejected" in out
    assert "line 3: value '9007199254740993' is beyond ±(2**53 - 1)" in out
    assert "line 4: value '1e300' is beyond ±1e+250" in out
    assert f"line 5: acq_time '{future}' is in the future" in out
    assert bs.read(cid, mid, A_PLUS, T0, T0 + H).empty
    with pytest.raises(ValueError, match="beyond"):
        bs.write(
            pd.Series([2.0**60], index=[T0]).to_frame("value").assign(type="INT"), cid, mid, A_PLUS
        )
    with pytest.raises(ValueError, match="time at position 0"):
        bs.write(pd.Series([1.0], index=[2**62]), cid, mid, A_PLUS)


def test_client_write_sends_and_counts_one_row_per_point(
    bs: Client, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    frame = pd.DataFrame({"value": [1.0, 2.0, 3.0], "origin": [1, 1, 2]}, index=[T0, T0, T0])
    assert bs.write(frame, cid, mid, A_PLUS, chunk_points=1) == 2
    back = bs.read(cid, mid, A_PLUS, T0, T0 + H)
    assert back["value"].tolist() == [2.0, 3.0]  # one version each, the later row


def test_export_counts_local_days_in_the_clients_timezone(
    env: dict[str, str], bs: Client, tenant: tuple[int, Actor], tmp_path: Path
) -> None:
    """Without --tz the buckets are the client's local days; --tz overrides it."""
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    start = 1_774_738_800_000  # 2026-03-29 00:00 Europe/Warsaw, a 23-hour day
    quarter = 15 * MIN
    times = pd.to_datetime(start - 2 * H + quarter * np.arange(4 * 27), unit="ms", utc=True)
    bs.write(pd.Series(np.ones(len(times)), index=times), cid, mid, 1011)  # EA+: kWh per 15 min
    assert bs.set_client_timezone(cid, "Europe/Warsaw").timezone == "Europe/Warsaw"
    args = [*login_args(tenant), "--client", str(cid), "--sensor", str(mid), "--moid", "1011"]
    window = ["--since", str(start - 2 * H), "--till", str(start + 25 * H), "--time-format", "ms"]
    for extra, expected in (
        ([], {start - 24 * H: 8.0, start: 92.0, start + 23 * H: 8.0}),
        (["--tz", "UTC"], {start - 23 * H: 12.0, start + H: 96.0}),
    ):
        out = tmp_path / "daily.csv"
        code, text = run(env, "export", str(out), *args, *window, "--delta-t", "1440", "-q", *extra)
        assert code == 0, text
        table = pd.read_csv(out)
        assert dict(zip(table["time"], table["value"], strict=True)) == expected
