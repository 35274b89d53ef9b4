"""The one Alembic history on an empty database of the engine under test: up, down, up."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, inspect, select
from sqlalchemy.engine import make_url

from besmart_server.server import migrate
from besmart_server.server.all_tables import metadata
from besmart_server.server.db import Database, psycopg_dsn
from besmart_server.server.signals.blocks import (
    FORMAT,
    FORMAT_2,
    LEGACY_FORMAT,
    decode,
    encode_batch,
    hour_summaries,
)
from besmart_server.server.signals.catalog import SIGNAL_TYPES
from besmart_server.server.signals.pipeline import Frame, concat
from besmart_server.server.signals.tables import blocks, signal_types


@pytest.fixture
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    option: str = request.config.getoption("--db-url")
    if option == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield db
        db.dispose()
        return
    name = f"besmart_mig_{uuid.uuid4().hex[:10]}"
    admin = psycopg_dsn(option)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(make_url(option).set(database=name).render_as_string(hide_password=False))
    try:
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_creates_every_table_and_seeds(empty_db: Database) -> None:
    assert migrate.current_revision(empty_db) is None
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision(empty_db)
    assert _tables(empty_db) == {t.name for t in metadata.sorted_tables}
    with empty_db.transaction(write=False) as conn:
        moids = set(conn.scalars(select(signal_types.c.moid)))
    assert moids == {s.moid for s in SIGNAL_TYPES}
    assert {32, 34, 139} <= moids


def test_downgrade_to_base_and_upgrade_again(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    migrate.upgrade(empty_db)  # idempotent at head
    from alembic import command

    cfg = migrate.alembic_config(empty_db)
    with empty_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert _tables(empty_db) == set()
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision(empty_db)


def test_schema_columns_match_the_table_definitions(empty_db: Database) -> None:
    """The hand-written migrations and the tables the code queries must not drift apart."""
    migrate.upgrade(empty_db)
    inspector = inspect(empty_db.engine)
    for table in metadata.sorted_tables:
        actual = {c["name"] for c in inspector.get_columns(table.name)}
        assert actual == {c.name for c in table.columns}, table.name
        pk = set(inspector.get_pk_constraint(table.name)["constrained_columns"])
        assert pk == {c.name for c in table.primary_key.columns}, table.name
        indexes = {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table.name)}
        declared = {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes}
        assert declared <= indexes, table.name


def test_deleted_ids_are_never_handed_out_again(empty_db: Database) -> None:
    """sensor_mid is unique in the installation for good: a deleted sensor's id is not reused
    (SQLite would reuse the highest rowid without AUTOINCREMENT)."""
    from sqlalchemy import delete, insert

    from besmart_server.server.sensors.tables import sensors
    from besmart_server.server.users.tables import clients

    migrate.upgrade(empty_db)
    with empty_db.transaction() as conn:
        cid = conn.execute(
            insert(clients).values(name="c", is_system=False, created_at=0).returning(clients.c.cid)
        ).scalar_one()
        row = {"client_cid": cid, "name": "s", "created_at": 0}
        first = conn.execute(insert(sensors).values(**row).returning(sensors.c.mid)).scalar_one()
        conn.execute(delete(sensors).where(sensors.c.mid == first))
        second = conn.execute(insert(sensors).values(**row).returning(sensors.c.mid)).scalar_one()
    assert second > first


# The blocks table as the revisions before 0015 (block hour sums) have it.
_BLOCK_COLUMNS_BEFORE_0015 = [c for c in blocks.c if c.name != "hours"]


def _series(conn: Connection, moids: Sequence[int]) -> list[int]:
    """A client, a sensor of it and one series per signal type `moids`, in raw SQL (the
    table definitions of the code may be newer than the schema at the revision tested);
    the series ids in order."""
    cid = conn.execute(
        sa.text(
            "INSERT INTO clients (name, is_system, created_at) VALUES ('c', false, 0) RETURNING cid"
        )
    ).scalar_one()
    mid = conn.execute(
        sa.text(
            "INSERT INTO sensors (client_cid, name, created_at) VALUES (:cid, 's', 0) RETURNING mid"
        ),
        {"cid": cid},
    ).scalar_one()
    return [
        conn.execute(
            sa.text(
                "INSERT INTO series (sensor_mid, signal_type_moid) VALUES (:mid, :moid) "
                "RETURNING id"
            ),
            {"mid": mid, "moid": moid},
        ).scalar_one()
        for moid in moids
    ]


_BLOCKS_BEFORE_0018 = sa.table(
    "blocks",
    *(sa.column(c.name, sa.BigInteger if c.name in ("t_last", "num_first", "num_last") else c.type)
      for c in blocks.c if c.name != "hours"),
)  # fmt: skip


def _insert_blocks(
    conn: Connection,
    series_col: np.ndarray[Any, np.dtype[np.int64]],
    f: Frame,
    *,
    fmt: int = FORMAT,
) -> None:
    """The frame's points as blocks written directly (series_col: each point's series), as
    the revisions before 0018 keep them: capture times since 1970 (BIGINT)."""
    for s, e in encode_batch(series_col, f, fmt=fmt):
        conn.execute(
            sa.insert(_BLOCKS_BEFORE_0018).values(
                series_id=s, day=e.day, origin=e.origin, n=e.n, t_last=e.t_last,
                num_first=e.num_first, num_last=e.num_last, body=e.body, latest=e.latest,
            )
        )  # fmt: skip


def _migrate_to(db: Database, revision: str, chunk: int | None, *, down: bool = False) -> None:
    from alembic import command

    cfg = migrate.alembic_config(db)
    if chunk is not None:
        cfg.attributes["blocks_chunk"] = chunk
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


_DAY = 86_400_000
_T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
_NAN = float("nan")
# (signal, time, origin, acq, type, value, text) as 0001's points held them: an RM's value
# NULL (the SQLite store) or NaN (the PostgreSQL store's COPY), a STR's value NULL.
_OLD_POINTS = [
    (32, _T0, 1, 10, 0, 1.5, None),
    (32, _T0, 1, 20, 0, 2.5, None),  # a second version of the same time
    (32, _T0, 2, 15, 0, -3.25, None),  # another origin, same time
    (32, _T0 + 900_000, 1, 10, 1, 7.0, None),
    (32, _T0 + 1_800_000, 1, 30, 3, None, None),
    (32, _T0 + 2_700_000, 1, 10, 2, None, 'hello, "world" ✓'),
    (32, _T0 + 2_700_000, 2, 12, 3, _NAN, None),
    (32, _T0 + _DAY, 1, 40, 0, 1e300, None),
    (32, _T0 + _DAY + 5, 2, 40, 1, -2.0, None),
    (32, _T0 + 2 * _DAY - 1, 1, 41, 0, 0.0, None),  # the last ms of that day
    (32, _T0 + 3 * _DAY + 7, 2, 50, 2, None, ""),  # a day of text only
    (34, -1, 1, 5, 0, 4.0, None),  # before the epoch: day -1
    (34, 0, 1, 5, 0, 5.0, None),
    (34, _T0 + 60_000, 1, 60, 0, 6.0, None),
    (34, _T0 + 60_000, 1, 61, 3, None, None),  # removed by a later RM
    (34, _T0 + 120_000, 1, 60, 2, None, "x"),
]


def _point_key(p: tuple[Any, ...]) -> tuple[Any, ...]:
    """(series, time, origin, acq, type, value or None, text): the value None for RM/STR
    and text only for STR, as 0001's reads gave them back."""
    series_id, time, origin, acq, kind, value, text = p
    none = kind in (2, 3) or value is None or math.isnan(value)
    return (
        series_id,
        time,
        origin,
        acq,
        kind,
        None if none else value,
        text if kind == 2 else None,
    )


@pytest.mark.parametrize("chunk", [None, 3], ids=["default-chunk", "chunk-3"])
def test_points_move_into_blocks_and_back(empty_db: Database, chunk: int | None) -> None:
    """0004 re-encodes every stored point, every version, as day blocks, and its downgrade
    gives the same rows back; with a chunk of 3 a day holds more rows than one read."""
    points_t = sa.table(
        "points",
        *(sa.column(c) for c in ("series_id", "time", "origin", "acq", "type", "value", "text")),
    )
    _migrate_to(empty_db, "0003", chunk)
    assert "points" in _tables(empty_db)
    with empty_db.transaction() as conn:
        sid = dict(zip((32, 34), _series(conn, (32, 34)), strict=True))
        rows = [(sid[moid], *rest) for moid, *rest in _OLD_POINTS]
        names = ("series_id", "time", "origin", "acq", "type", "value", "text")
        conn.execute(points_t.insert(), [dict(zip(names, r, strict=True)) for r in rows])
    want = sorted((_point_key(r) for r in rows), key=repr)

    _migrate_to(empty_db, "0005", chunk)  # 0007 moves these (µs) stamps to whole ms
    assert "points" not in _tables(empty_db)
    got: list[tuple[Any, ...]] = []
    with empty_db.transaction(write=False) as conn:
        stored = conn.execute(
            select(*_BLOCK_COLUMNS_BEFORE_0015).order_by(*blocks.primary_key.columns)
        ).all()
    keys = {(r[0], r[1] // _DAY, r[2]) for r in rows}
    assert [(b.series_id, b.day, b.origin) for b in stored] == sorted(keys)
    for b in stored:
        f = decode(b.day, b.origin, b.body)
        assert b.n == len(f)
        assert b.t_last == int(f.time.max())
        numeric = f.time[f.type <= 1]
        assert b.num_first == (int(numeric[0]) if len(numeric) else None)
        assert b.num_last == (int(numeric[-1]) if len(numeric) else None)
        assert f.time.tolist() == sorted(f.time.tolist())
        text = f.text or (None,) * len(f)
        for i in range(len(f)):
            got.append(
                _point_key(
                    (
                        b.series_id,
                        int(f.time[i]),
                        int(f.origin[i]),
                        int(f.acq[i]),
                        int(f.type[i]),
                        float(f.value[i]),
                        text[i],
                    )
                )
            )
            if f.type[i] in (2, 3):
                assert math.isnan(f.value[i])  # the Frame's convention for RM and STR
    assert sorted(got, key=repr) == want

    _migrate_to(empty_db, "0003", chunk, down=True)
    assert "blocks" not in _tables(empty_db)
    with empty_db.transaction(write=False) as conn:
        back = [tuple(r) for r in conn.execute(select(points_t))]
    assert sorted(back, key=repr) == want  # RM and STR values NULL again, not NaN


def test_server_stamps_become_distinct_whole_ms_in_order() -> None:
    from importlib import import_module

    restamped = import_module("migrations.versions.0007_whole_ms_stamps").restamped
    old = np.array([1_000_001, 1_000_002, 1_000_999, 1_002_500, 1_500_001], dtype=np.int64)
    none = np.empty(0, dtype=np.int64)
    assert restamped(old, none).tolist() == [1_001_000, 1_002_000, 1_003_000, 1_004_000, 1_501_000]
    taken = np.array([1_002_000, 1_003_000, 1_501_000], dtype=np.int64)  # imports' stamps
    assert restamped(old, taken).tolist() == [1_001_000, 1_004_000, 1_005_000, 1_006_000, 1_502_000]


@pytest.mark.parametrize("chunk", [None, 1], ids=["default-chunk", "chunk-1"])
def test_0007_gives_every_version_its_own_ms(empty_db: Database, chunk: int | None) -> None:
    """Versions stamped within one ms before 0007 (µs stamps) each get a whole ms of their
    own, in order; imported stamps (whole ms) and every value stay; the clock moves past."""
    _migrate_to(empty_db, "0005", chunk)
    stamps = [5_000_001, 5_000_002, 5_000_900, 5_001_000, 9_000_007]  # 5_001_000: an import
    with empty_db.transaction() as conn:
        (sid,) = _series(conn, (32,))
        n = len(stamps)
        f = Frame.from_columns(
            [_T0] * n + [_T0 + _DAY],
            [1] * (n + 1),
            [*stamps, 5_000_003],
            [0] * (n + 1),
            [float(i) for i in range(n + 1)],
        )
        _insert_blocks(conn, np.full(n + 1, sid, dtype=np.int64), f)
        conn.execute(sa.text("UPDATE version_clock SET last_us = 9000007"))
    _migrate_to(empty_db, "0009", chunk)  # 0010 moves the clock into each series
    with empty_db.transaction(write=False) as conn:
        stored = conn.execute(select(*_BLOCK_COLUMNS_BEFORE_0015).order_by(blocks.c.day)).all()
        clock = conn.execute(sa.text("SELECT last_us FROM version_clock")).scalar_one()
    day0 = decode(stored[0].day, stored[0].origin, stored[0].body)
    day1 = decode(stored[1].day, stored[1].origin, stored[1].body)
    # 5_000_001, _002, _003 (the next day's block), _900 in order, then 9_000_007, around
    # the import's 5_001_000, which keeps its stamp.
    assert day0.acq.tolist() == [5_001_000, 5_002_000, 5_003_000, 5_005_000, 9_001_000]
    assert day0.value.tolist() == [3.0, 0.0, 1.0, 2.0, 4.0]
    assert day1.acq.tolist() == [5_004_000]
    assert day1.value.tolist() == [5.0]
    assert stored[0].n == 5
    assert clock == 9_001_000


def test_client_timezone_up_and_down(empty_db: Database) -> None:
    """0008 gives existing clients the timezone UTC; its downgrade drops the column and keeps
    the clients."""
    _migrate_to(empty_db, "0007", None)
    with empty_db.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO clients (name, is_system, created_at) VALUES ('a', false, 1)")
        )
    _migrate_to(empty_db, "0008", None)
    with empty_db.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT name, timezone FROM clients")).all() == [("a", "UTC")]
        conn.execute(sa.text("UPDATE clients SET timezone = 'Europe/Warsaw'"))
    _migrate_to(empty_db, "0007", None, down=True)
    columns = {c["name"] for c in inspect(empty_db.engine).get_columns("clients")}
    assert "timezone" not in columns
    with empty_db.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT name FROM clients")).scalars().all() == ["a"]


def test_series_clocks_up_and_down(empty_db: Database) -> None:
    """0010 gives every series the old single clock's value (at least every stored stamp), so
    each series' next live write is newer than all; its downgrade puts the newest series
    clock back into version_clock and drops the column."""
    _migrate_to(empty_db, "0009", None)
    with empty_db.engine.begin() as conn:
        _series(conn, (32, 34))
        conn.execute(sa.text("UPDATE version_clock SET last_us = 9000000"))
    _migrate_to(empty_db, "0010", None)
    assert "version_clock" not in _tables(empty_db)
    with empty_db.engine.begin() as conn:
        clocks = conn.execute(sa.text("SELECT acq_us FROM series ORDER BY id")).scalars().all()
        assert clocks == [9_000_000, 9_000_000]
        conn.execute(sa.text("UPDATE series SET acq_us = 12000000 WHERE signal_type_moid = 34"))
    _migrate_to(empty_db, "0009", None, down=True)
    assert "acq_us" not in {c["name"] for c in inspect(empty_db.engine).get_columns("series")}
    with empty_db.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT id, last_us FROM version_clock")).all() == [
            (1, 12_000_000)
        ]
        assert conn.execute(sa.text("SELECT count(*) FROM series")).scalar_one() == 2


def _format_1_blocks() -> tuple[np.ndarray[Any, np.dtype[np.int64]], Frame]:
    """Points of three series over days and origins, with versions (so `latest` is set),
    text, removals and values that format 2 stores scaled, as exceptions or as float64."""
    rows = [
        # series, time, origin, acq, type, value, text
        (0, _T0, 1, 10, 0, 1.5, None),
        (0, _T0, 1, 20, 0, 2.5, None),  # a second version: `latest` is kept
        (0, _T0 + 900_000, 1, 10, 0, -0.0, None),
        (0, _T0 + 1_800_000, 1, 30, 3, _NAN, None),
        (0, _T0 + 2_700_000, 1, 10, 2, _NAN, 'hello, "world" ✓'),
        (0, _T0, 2, 15, 0, 230.1, None),
        (0, _T0 + _DAY, 1, 40, 0, 5e-324, None),  # not decimal: float64 planes
        (0, _T0 + _DAY + 5, 1, 41, 1, 1e250, None),
        (1, _T0 + _DAY, 1, 50, 0, 12_345.678, None),
        (1, _T0 + _DAY + 900_000, 1, 50, 0, 12_345.913, None),
        (1, _T0 + 2 * _DAY, 1, 51, 0, float("inf"), None),
        (2, -1, 1, 5, 0, 4.0, None),  # before the epoch
        (2, 0, 1, 5, 0, 5.0, None),
    ]
    rows.sort(key=lambda r: (r[0], r[2], r[1], r[3]))
    sid = np.array([r[0] for r in rows], dtype=np.int64)
    texts = [r[6] for r in rows]
    cols = [list(c) for c in zip(*rows, strict=True)]
    f = Frame.from_columns(cols[1], cols[2], cols[3], cols[4], cols[5], texts)
    return sid, f


def _stored_blocks(db: Database) -> list[Any]:
    with db.transaction(write=False) as conn:
        return list(
            conn.execute(
                select(*_BLOCK_COLUMNS_BEFORE_0015).order_by(*blocks.primary_key.columns)
            ).all()
        )


def _assert_reencoded(before: Sequence[Any], after: Sequence[Any], fmt: int) -> None:
    """Each block of `after` (body and latest) in format `fmt`, holding the points of the
    block of `before` in its place, every value bit for bit."""
    for old, new in zip(before, after, strict=True):
        assert new.body[0] == fmt
        assert (new.latest is None) == (old.latest is None)
        for o, n in ((old.body, new.body), (old.latest, new.latest)):
            if o is None:
                continue
            a, b = decode(old.day, old.origin, o), decode(new.day, new.origin, n)
            assert (a.time.tolist(), a.acq.tolist(), a.type.tolist(), a.text) == (
                b.time.tolist(), b.acq.tolist(), b.type.tolist(), b.text,
            )  # fmt: skip
            assert a.value.view(np.uint64).tolist() == b.value.view(np.uint64).tolist()
            assert n[0] == fmt


@pytest.mark.parametrize("chunk", [None, 2], ids=["default-chunk", "chunk-2"])
def test_0011_reencodes_blocks_in_format_2_and_back(empty_db: Database, chunk: int | None) -> None:
    """Format 1 blocks (body and latest) become format 2 with the same points and summary
    columns; downgrade gives back format 1 blocks byte for byte."""
    _migrate_to(empty_db, "0009", chunk)
    sid, f = _format_1_blocks()
    with empty_db.transaction() as conn:
        ids = _series(conn, (32, 34, 53))
        series_col = np.array(ids, dtype=np.int64)[sid]
        _insert_blocks(conn, series_col, f, fmt=LEGACY_FORMAT)
    before = _stored_blocks(empty_db)
    assert {b.body[0] for b in before} == {1}
    assert any(b.latest is not None for b in before)

    _migrate_to(empty_db, "0011", chunk)
    after = _stored_blocks(empty_db)
    assert [tuple(b)[:7] for b in after] == [tuple(b)[:7] for b in before]  # key, summaries
    _assert_reencoded(before, after, 2)
    if empty_db.dialect == "postgresql":
        with empty_db.engine.connect() as conn:
            options = conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'blocks'")
            ).scalar_one()
        assert options == ["fillfactor=90"]

    _migrate_to(empty_db, "0009", chunk, down=True)
    back = _stored_blocks(empty_db)
    assert [tuple(b) for b in back] == [tuple(b) for b in before]  # byte for byte
    if empty_db.dialect == "postgresql":
        with empty_db.engine.connect() as conn:
            options = conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'blocks'")
            ).scalar_one()
        assert options is None


def test_0014_band_types_up_and_down(empty_db: Database) -> None:
    """0014 seeds the forecast bands' signal types; its downgrade drops those no series names
    and keeps one a series still uses (its points would lose their meaning)."""
    bands = {1013, 1014, 1071, 1072}

    def moids() -> set[int]:
        with empty_db.engine.begin() as conn:
            return set(conn.execute(sa.text("SELECT moid FROM signal_types")).scalars())

    _migrate_to(empty_db, "0014", None)
    assert bands <= moids()
    with empty_db.engine.begin() as conn:
        _series(conn, (1013,))
    _migrate_to(empty_db, "0013", None, down=True)
    assert moids() & bands == {1013}
    assert {32, 70, 1011} <= moids()
    _migrate_to(empty_db, "0014", None)
    assert bands <= moids()


@pytest.mark.parametrize("chunk", [None, 2], ids=["default-chunk", "chunk-2"])
def test_0015_block_hour_sums_up_down_up(empty_db: Database, chunk: int | None) -> None:
    """0015 adds `hours` and fills it for every stored block with what a write gives it now
    (the newest live numeric points' hour sums: a re-write, an RM and text excluded); its
    downgrade drops the column, and upgrading again fills it the same."""
    _migrate_to(empty_db, "0014", chunk)
    sid, f = _with_dense_days(*_format_1_blocks())
    with empty_db.transaction() as conn:
        series_col = np.array(_series(conn, (32, 34, 53)), dtype=np.int64)[sid]
        _insert_blocks(conn, series_col, f)
    want = _summaries(series_col, f, extremes=False)
    assert any(h for h in want.values())
    assert None in want.values()  # a block of few points: none (a read decodes it)
    _migrate_to(empty_db, "0015", chunk)
    assert _stored_hours(empty_db) == want
    _migrate_to(empty_db, "0014", chunk, down=True)
    assert "hours" not in {c["name"] for c in inspect(empty_db.engine).get_columns("blocks")}
    assert len(_stored_blocks(empty_db)) == len(want)  # the blocks stay
    _migrate_to(empty_db, "0015", chunk)
    assert _stored_hours(empty_db) == want


def _with_dense_days(
    sid: np.ndarray[Any, np.dtype[np.int64]], f: Frame
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], Frame]:
    """`_format_1_blocks` and dense days (those keep hours): 1-minute decimals with a second
    version of some minutes, and points at odd ms whose values no decimal scale gives back
    (float64); sorted as encode_batch wants."""
    t = np.arange(1440, dtype=np.int64) * 60_000
    rng = np.random.default_rng(7)
    dense = [
        Frame.from_columns(_T0 + 5 * _DAY + t, [1] * 1440, [70] * 1440, [0] * 1440,
                           np.round(rng.normal(5, 2, 1440), 3)),
        Frame.from_columns(_T0 + 5 * _DAY + t[:300:7], [1] * 43, [71] * 43, [0] * 43,
                           np.round(rng.normal(5, 2, 43), 3)),
        Frame.from_columns(_T0 + 6 * _DAY + t + 7, [1] * 1440, [72] * 1440, [0] * 1440,
                           rng.normal(0, 1e250, 1440)),
    ]  # fmt: skip
    f = concat([f, *dense])
    sid = np.concatenate([sid, [2] * (1440 + 43 + 1440)])
    order = np.lexsort((f.acq, f.time, f.origin, sid))
    return sid[order], f.take(order)


def _summaries(
    series_col: np.ndarray[Any, np.dtype[np.int64]], f: Frame, *, extremes: bool
) -> dict[tuple[int, int, int], bytes | None]:
    """Each block's summary (blocks.hour_summaries) of points sorted as encode_batch wants;
    none for a block of fewer than 48 points (every version), as a write keeps none."""
    encoded = encode_batch(series_col, f)
    key = np.stack([series_col, f.time // _DAY, f.origin])
    first = np.ones(len(f), dtype=np.bool_)
    first[1:] = (key[:, 1:] != key[:, :-1]).any(axis=0)
    sums = hour_summaries(series_col, f, first, extremes=extremes)
    return {
        (s, e.day, e.origin): h if e.n >= 48 else None
        for (s, e), h in zip(encoded, sums, strict=True)
    }


def _stored_hours(db: Database) -> dict[tuple[int, int, int], bytes | None]:
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(blocks.c.series_id, blocks.c.day, blocks.c.origin, blocks.c.hours)
        )
        return {(r[0], r[1], r[2]): None if r[3] is None else bytes(r[3]) for r in rows}


@pytest.mark.parametrize("chunk", [None, 2], ids=["default-chunk", "chunk-2"])
def test_0016_block_extremes_up_down_up(empty_db: Database, chunk: int | None) -> None:
    """0016 rewrites every block's summary with its hours' (or day's) min and max, as a
    write gives it now: to a block of 48 points or more (a day whose newest numeric points
    include inf: none, decoded), none to one of fewer; its downgrade writes them back as
    0015 does, and upgrading again gives the same."""
    _migrate_to(empty_db, "0014", chunk)
    sid, f = _with_dense_days(*_format_1_blocks())
    with empty_db.transaction() as conn:
        series_col = np.array(_series(conn, (32, 34, 53)), dtype=np.int64)[sid]
        _insert_blocks(conn, series_col, f)
    old = _summaries(series_col, f, extremes=False)
    new = _summaries(series_col, f, extremes=True)
    # What a write gives: the summaries, and none to a block of fewer than 48 points.
    written = {(s, e.day, e.origin): (e.n, e.hours) for s, e in encode_batch(series_col, f)}
    assert new == {k: h for k, (_, h) in written.items()}
    assert {h for n, h in written.values() if n < 48} == {None}
    assert any(n < 48 for n, _ in written.values())
    assert {k for k, h in new.items() if h} == {k for k, h in old.items() if h}
    assert sorted(h[:1] for h in new.values() if h and h[:1] != b"\x03") == [b"\x04", b"\x05"]
    _migrate_to(empty_db, "0015", chunk)
    assert _stored_hours(empty_db) == old
    _migrate_to(empty_db, "0016", chunk)
    assert _stored_hours(empty_db) == new
    _migrate_to(empty_db, "0015", chunk, down=True)
    assert _stored_hours(empty_db) == old
    _migrate_to(empty_db, "0016", chunk)
    assert _stored_hours(empty_db) == new


def _block_indexes(db: Database) -> dict[str, str]:
    """Each index of `blocks` and its definition as the engine keeps it."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blocks'"
                " AND sql IS NOT NULL"
            ).all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'blocks'"
                " AND indexname <> 'blocks_pkey'"
            ).all()
    return {str(name): " ".join(str(sql).split()) for name, sql in rows}


def _block_options(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        return set()
    with db.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'blocks'"
        ).scalar_one()
    return set(row or ())


def test_0017_measured_blocks_leave_the_origin_index_up_down_up(empty_db: Database) -> None:
    """0017 turns the (series_id, origin, day) index into one of the origins other than
    measured; on PostgreSQL it keeps blocks of up to a page in their row, fills pages whole
    and gives `blocks` autovacuum thresholds of its own. Down restores 0016's index and
    options."""
    _migrate_to(empty_db, "0016", None)
    before = _block_indexes(empty_db)
    assert list(before) == ["ix_blocks_series_origin_day"]
    options_before = _block_options(empty_db)
    _migrate_to(empty_db, "0017", None)
    after = _block_indexes(empty_db)
    assert list(after) == ["ix_blocks_other_origins"]
    assert "origin <> 1" in after["ix_blocks_other_origins"]
    if empty_db.dialect == "postgresql":
        assert options_before == {"fillfactor=90"}
        assert _block_options(empty_db) == {
            "fillfactor=100",
            "toast_tuple_target=8160",
            "autovacuum_vacuum_scale_factor=0.05",
            "autovacuum_vacuum_threshold=1000",
        }
    _migrate_to(empty_db, "0016", None, down=True)
    assert _block_indexes(empty_db) == before
    assert _block_options(empty_db) == options_before
    _migrate_to(empty_db, "0017", None)
    assert _block_indexes(empty_db) == after


def _block_times(db: Database) -> dict[tuple[int, int, int], tuple[int, int | None, int | None]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT series_id, day, origin, t_last, num_first, num_last FROM blocks")
        ).all()
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def test_0018_block_times_become_ms_into_the_day_up_down_up(empty_db: Database) -> None:
    """0018 stores each block's t_last, num_first and num_last as ms into its day (days
    before 1970 too; a block without numeric points keeps NULLs), as a write stores them
    now; down gives the times back, and the store reads the same either side."""
    from besmart_server.server.signals.store import SeriesStore

    _migrate_to(empty_db, "0017", None)
    sid, f = _format_1_blocks()
    early = Frame.from_columns([-2 * _DAY + 7, -3], [1, 1], [5, 5], [0, 2], [1.0, _NAN])
    sid = np.concatenate([sid, [1, 1]])
    f = concat([f, early])
    order = np.lexsort((f.acq, f.time, f.origin, sid))
    f, sid = f.take(order), sid[order]
    with empty_db.transaction() as conn:
        series_col = np.array(_series(conn, (32, 34, 53)), dtype=np.int64)[sid]
        _insert_blocks(conn, series_col, f)
    absolute = {
        (s, e.day, e.origin): (e.t_last, e.num_first, e.num_last)
        for s, e in encode_batch(series_col, f)
    }
    assert _block_times(empty_db) == absolute
    assert any(v[1] is None for v in absolute.values())  # the text-only day
    assert min(d for _, d, _ in absolute) < 0
    in_day = {
        k: tuple(None if t is None else t - k[1] * _DAY for t in v) for k, v in absolute.items()
    }
    assert all(0 <= t < _DAY for v in in_day.values() for t in v if t is not None)

    def neighbours() -> list[Any]:
        store = SeriesStore(empty_db.dialect)
        with empty_db.transaction(write=False) as conn:
            return [
                store.neighbours(conn, int(s), _T0 + 3_600_000, _T0 + 3_600_001,
                                 origin=None, acq_before=None).time.tolist()
                for s in sorted(set(series_col.tolist()))
            ]  # fmt: skip

    _migrate_to(empty_db, "0018", None)
    assert _block_times(empty_db) == in_day
    # Series 0 around its first hour: measured -0.0 at 00:15 and 1e250 the next day, the
    # predicted 230.1 at 00:00.
    found = neighbours()
    assert found[0] == [_T0, _T0 + 900_000, _T0 + _DAY]
    _migrate_to(empty_db, "0017", None, down=True)
    assert _block_times(empty_db) == absolute
    _migrate_to(empty_db, "0018", None)
    assert _block_times(empty_db) == in_day
    assert neighbours() == found


def _all_blocks(db: Database) -> list[Any]:
    with db.transaction(write=False) as conn:
        return list(conn.execute(select(blocks).order_by(*blocks.primary_key.columns)).all())


@pytest.mark.parametrize("chunk", [None, 2], ids=["default-chunk", "chunk-2"])
def test_0019_reencodes_blocks_in_format_3_and_back(empty_db: Database, chunk: int | None) -> None:
    """Format 2 blocks (body and latest) become format 3 with the same points and every other
    column as it was; a day of noisy decimal readings gets smaller; downgrade gives back the
    format 2 blocks byte for byte."""
    from besmart_server.server.signals.store import COLUMNS, stored_row

    _migrate_to(empty_db, "0018", chunk)
    sid, f = _format_1_blocks()
    t = _T0 + 5 * _DAY + np.arange(96, dtype=np.int64) * 900_000
    power = np.round(1.5 + np.random.default_rng(3).uniform(-1.0, 1.0, 96), 3)
    noisy = Frame.from_columns(t, np.ones(96), np.full(96, 70), np.zeros(96), power)
    sid = np.concatenate([sid, np.full(96, 2)])
    f = concat([f, noisy])
    order = np.lexsort((f.acq, f.time, f.origin, sid))
    f, sid = f.take(order), sid[order]
    with empty_db.transaction() as conn:
        series_col = np.array(_series(conn, (32, 34, 53)), dtype=np.int64)[sid]
        for s, e in encode_batch(series_col, f, fmt=FORMAT_2):
            conn.execute(
                sa.insert(blocks).values(dict(zip(COLUMNS, stored_row(s, e), strict=True)))
            )
    before = _all_blocks(empty_db)
    assert {b.body[0] for b in before} == {2}
    assert any(b.latest is not None for b in before)

    _migrate_to(empty_db, "0019", chunk)
    after = _all_blocks(empty_db)
    same = [c for c in COLUMNS if c not in ("body", "latest")]
    assert [[getattr(b, c) for c in same] for b in after] == [
        [getattr(b, c) for c in same] for b in before
    ]
    _assert_reencoded(before, after, 3)
    (old_day,) = [b for b in before if b.n == 96]
    (new_day,) = [b for b in after if b.n == 96]
    assert len(new_day.body) < len(old_day.body) * 0.9

    _migrate_to(empty_db, "0018", chunk, down=True)
    assert [tuple(b) for b in _all_blocks(empty_db)] == [tuple(b) for b in before]


def test_pending_downgrades_refuse_while_points_are_pending(empty_db: Database) -> None:
    """The write-ahead table (0020) goes away only empty, and its `stamp` (0021) only with no
    row relying on it: their points, or their acq, would be lost, and the code before reads
    blocks alone. Merged (by any transaction), the downgrades go through."""
    from besmart_server.server.signals.store import SeriesStore

    _migrate_to(empty_db, "0021", None)
    store = SeriesStore(empty_db.dialect)
    with empty_db.transaction(settle=False) as conn:
        (sid,) = _series(conn, (32,))
        f = Frame.from_columns([_T0], [1], [0], [0], [1.5])
        live = np.ones(1, dtype=np.bool_)  # a live write: its row has the stamp
        store.insert(conn, np.full(1, sid, dtype=np.int64), f, live=live, defer=True)
    with pytest.raises(RuntimeError, match="with their stamp apart"):
        _migrate_to(empty_db, "0020", None, down=True)
    with empty_db.transaction() as conn:  # merges first
        assert conn.execute(sa.text("SELECT count(*) FROM pending")).scalar_one() == 0
    _migrate_to(empty_db, "0020", None, down=True)
    with empty_db.transaction(settle=False) as conn:  # a row as the code of 0020 wrote it
        conn.execute(
            sa.text(f"INSERT INTO pending (series_id, body) VALUES ({sid}, :b)"), {"b": b"?"}
        )
    with pytest.raises(RuntimeError, match="still pending"):
        _migrate_to(empty_db, "0019", None, down=True)
    with empty_db.transaction(settle=False) as conn:
        conn.execute(sa.text("DELETE FROM pending"))
    _migrate_to(empty_db, "0019", None, down=True)
    assert "pending" not in _tables(empty_db)
    assert len(_all_blocks(empty_db)) == 1


def test_points_pending_from_before_0021_are_merged_with_their_own_acq(
    empty_db: Database,
) -> None:
    """A row the code of 0020 appended keeps each point's acq in its body (no stamp): after
    the upgrade, the first read merges it as it was written."""
    from besmart_server.server.signals.store import pack_runs

    _migrate_to(empty_db, "0020", None)
    with empty_db.transaction(settle=False) as conn:
        (sid,) = _series(conn, (32,))
        f = Frame.from_columns([_T0, _T0 + 900_000], [1, 1], [7_000, 8_000], [0, 0], [1.5, 2.5])
        (body,) = pack_runs(f, [0, 2])
        conn.execute(
            sa.text(f"INSERT INTO pending (series_id, body) VALUES ({sid}, :b)"), {"b": body}
        )
    _migrate_to(empty_db, "0021", None)
    with empty_db.transaction(write=False) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pending")).scalar_one() == 0
    (block,) = _all_blocks(empty_db)
    assert block.n == 2
    from besmart_server.server.signals.store import SeriesStore

    with empty_db.reads() as conn:
        got = SeriesStore(empty_db.dialect).read(
            conn, sid, _T0, _T0 + 86_400_000, origin=None, limit=10
        )
    assert got.acq.tolist() == [7_000, 8_000]
    assert got.value.tolist() == [1.5, 2.5]
