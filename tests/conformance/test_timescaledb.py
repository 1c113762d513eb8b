"""The loader's SQL on a real TimescaleDB: migrations, both acceptance loads, compressed chunks.

Everything else in the suite runs on plain PostgreSQL, where ``hypertable.sql`` returns early.
Here the same code runs against TimescaleDB 2.23.0-dev (PostgreSQL 17.5, the PGlite WASM build
served by ``devtools/tsdb_server``; see README "TimescaleDB in tests"): the real migrations
(``tickstock.schema.upgrade``), the real fetch -> COPY into staging -> merge path of
``universe_load`` (``fetch_batch`` on ``MassiveHook`` against the simulator over HTTP,
``stage_bars``, ``merge_staged``) and the exact bar-count check (``checks/bar_counts.sql``).
Only the Airflow task wrappers are left out; they pass a connection to the same functions.

Run alone: ``.venv/bin/pytest -m timescaledb``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from massive_sim import DEFAULT_API_KEY
from massive_sim.testing import TEST_NOW
from tickstock.checks import SymbolCount, count_bars, evaluate
from tickstock.load_request import parse_load_request
from tickstock.plan import plan_load
from tickstock.schema import head_revision, upgrade
from tickstock.staging import merge_staged, stage_bars
from tickstock.symbols import register_symbols, symbol_row
from tickstock.timeframes import OHLCV_TABLES, Timeframe
from tickstock_dev.timescale import TimescaleServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

    from massive_sim.testing import SimHandle
    from tickstock.bars import Bar
    from tickstock.staging import MergeResult
    from tickstock_airflow.hooks.massive import MassiveHook

pytestmark = [pytest.mark.integration, pytest.mark.timescaledb]

SIM_NOW = datetime.fromisoformat(TEST_NOW)
TABLES = tuple(t.table for t in OHLCV_TABLES.values())


@dataclass(frozen=True)
class AcceptanceLoad:
    """One of the README's acceptance loads and the bars per symbol it must produce."""

    as_of: str
    days: int
    symbols: tuple[str, ...]
    per_symbol: dict[Timeframe, int]

    @property
    def name(self) -> str:
        return f"{self.as_of}-days{self.days}-{'+'.join(self.symbols)}"


LOADS = (
    AcceptanceLoad(
        "2025-12-02", 2, ("SCHG", "VUG"), {Timeframe.HOUR: 14, Timeframe.DAY: 2, Timeframe.WEEK: 1, Timeframe.MONTH: 1}
    ),
    AcceptanceLoad(
        "2025-11-30", 90, ("SPY",), {Timeframe.HOUR: 11, Timeframe.DAY: 63, Timeframe.WEEK: 13, Timeframe.MONTH: 3}
    ),
)


@dataclass
class LoadOutcome:
    """What one load did: the bars fetched, each merge's counts, the exact check's counts."""

    bars: dict[Timeframe, list[Bar]]
    merged: dict[Timeframe, MergeResult]
    counts: list[SymbolCount]


def run_load(conn: psycopg.Connection, hook: MassiveHook, load: AcceptanceLoad, *, run_id: str) -> LoadOutcome:
    """``universe_load``'s steps without Airflow: plan, register, fetch -> stage -> merge, check."""
    from tickstock_airflow.operators.massive import fetch_batch

    request = parse_load_request({"symbols": list(load.symbols), "days": load.days, "as_of": load.as_of})
    plan = plan_load(request, run_id=run_id, now=SIM_NOW)
    register_symbols(conn, [symbol_row(s, hook.get_ticker_details(s)) for s in request.symbols])
    outcome = LoadOutcome({}, {}, [])
    assert plan.grouped == []  # too few symbols for grouped daily: every bar comes per symbol
    for batch in plan.batches:
        timeframe = Timeframe(batch["timeframe"])
        fetched = fetch_batch(
            hook, batch["symbols"], timeframe, date.fromisoformat(batch["start"]), date.fromisoformat(batch["end"]),
            adjusted=batch["adjusted"], extended_hours=batch["extended_hours"],
        )  # fmt: skip
        assert (fetched.failed, fetched.invalid) == ({}, {})
        stage_bars(conn, batch["staging_key"], fetched.bars, timeframe=timeframe)
        outcome.bars[timeframe] = fetched.bars
        outcome.merged[timeframe] = merge_staged(conn, batch["staging_key"], timeframe)
    for window in plan.windows.values():
        outcome.counts += count_bars(conn, window, list(request.symbols))
    return outcome


def exact_counts(load: AcceptanceLoad) -> list[SymbolCount]:
    """The check's rows when every expected bar is present and nothing else is."""
    return [
        SymbolCount(symbol, timeframe.value, n, n, 0, 0)
        for timeframe, n in load.per_symbol.items()
        for symbol in sorted(load.symbols)
    ]


def stored_rows(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every row of every OHLCV table (all columns, updated_at included), in key order."""
    return {
        t.table: conn.execute(f'SELECT * FROM {t.table} ORDER BY symbol, "{t.time_column}"').fetchall()
        for t in OHLCV_TABLES.values()
    }


def compress_all_chunks(conn: psycopg.Connection) -> int:
    """Compress every chunk that is not (fully) compressed; return how many chunks there are."""
    total = 0
    for table in TABLES:
        total += len(
            conn.execute(
                "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s) c", (table,)
            ).fetchall()
        )
    conn.commit()
    return total


def uncompressed_chunks(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT chunk_name FROM timescaledb_information.chunks"
        " WHERE hypertable_name = ANY(%s) AND NOT is_compressed ORDER BY 1",
        (list(TABLES),),
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def tsdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimescaleServer]:
    """One TimescaleDB server for the module, upgraded to the migrations' head."""
    with TimescaleServer(None, log_path=tmp_path_factory.mktemp("tsdb") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def first_upgrade(tsdb: TimescaleServer):
    return upgrade(tsdb.url)


@pytest.fixture(scope="module")
def massive_hook(massive_sim: SimHandle) -> Iterator[MassiveHook]:
    """``massive_default`` on the session simulator (clock 2025-12-02T21:00Z), no rate budget."""
    from tickstock_airflow.hooks.massive import MassiveHook

    massive_sim.reset()
    with pytest.MonkeyPatch.context() as patch:
        conn = {"conn_type": "http", "host": massive_sim.url, "password": DEFAULT_API_KEY}
        patch.setenv("AIRFLOW_CONN_MASSIVE_DEFAULT", json.dumps(conn))
        yield MassiveHook(retry_base_delay=0.05)


@pytest.fixture(scope="module")
def loaded(tsdb: TimescaleServer, first_upgrade, massive_hook: MassiveHook) -> dict[str, LoadOutcome]:
    """Both acceptance loads, run once on the migrated database."""
    with tsdb.connect() as conn:
        return {load.name: run_load(conn, massive_hook, load, run_id=f"first|{load.name}") for load in LOADS}


@pytest.fixture(scope="module")
def compression_enabled(tsdb: TimescaleServer, loaded: dict[str, LoadOutcome]) -> dict[str, list[tuple]]:
    """Columnstore on every OHLCV table (segmentby symbol); returns the rows before compression."""
    with tsdb.connect() as conn:
        rows = stored_rows(conn)
        for t in OHLCV_TABLES.values():
            conn.execute(
                f"ALTER TABLE {t.table} SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol',"
                f" timescaledb.compress_orderby = '\"{t.time_column}\" DESC')"
            )
        conn.commit()
    return rows


@pytest.fixture
def compressed(tsdb: TimescaleServer, compression_enabled: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Every OHLCV chunk compressed before the test (an earlier upsert may have decompressed some)."""
    with tsdb.connect() as conn:
        assert compress_all_chunks(conn) > 0
        assert uncompressed_chunks(conn) == []
    return compression_enabled


def test_migrations_make_the_ohlcv_tables_hypertables_with_the_timeframes_chunk_intervals(tsdb, first_upgrade):
    head = head_revision()
    assert (first_upgrade.before, first_upgrade.after) == (None, head)
    again = upgrade(tsdb.url)  # every upgrade re-runs the TimescaleDB step: a no-op on hypertables
    assert (again.before, again.after, again.warnings) == (head, head, [])
    with tsdb.connect() as conn:
        dimensions = conn.execute(
            "SELECT d.hypertable_name, d.column_name, d.time_interval"
            "  FROM timescaledb_information.hypertables h"
            "  JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)"
            " WHERE h.hypertable_schema = 'public'"
        ).fetchall()
        expected = {
            (t.table, t.time_column, conn.execute("SELECT %s::interval", (t.chunk_interval,)).fetchone()[0])
            for t in OHLCV_TABLES.values()
        }
    assert set(dimensions) == expected
    assert len(dimensions) == 4  # one (time) dimension each, no space partitioning
    assert {name: interval for name, _, interval in dimensions}["ohlcv_hourly"] == timedelta(days=30)


@pytest.mark.parametrize("load", LOADS, ids=lambda load: load.name)
def test_an_acceptance_load_upserts_through_staging_and_passes_the_exact_check(tsdb, loaded, load):
    outcome = loaded[load.name]
    for timeframe, n in load.per_symbol.items():
        merged = outcome.merged[timeframe]
        assert merged.staged == Counter(dict.fromkeys(load.symbols, n)), timeframe
        assert merged.inserted == merged.staged, timeframe
        assert merged.updated == Counter(), timeframe
    assert outcome.counts == exact_counts(load)
    assert evaluate(outcome.counts).summary() == "all bar counts exact"
    with tsdb.connect() as conn:
        for timeframe, bars in outcome.bars.items():
            table = OHLCV_TABLES[timeframe]
            stored = conn.execute(
                f'SELECT symbol, "{table.time_column}", open, high, low, close, volume, vwap, transactions'
                f" FROM {table.table} WHERE symbol = ANY(%s) ORDER BY 1, 2",
                (list(load.symbols),),
            ).fetchall()
            fetched = sorted(
                (b.symbol, b.key, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions) for b in bars
            )
            assert stored == fetched, timeframe


def test_a_rerun_into_compressed_chunks_changes_no_row(tsdb, loaded, compressed, massive_hook):
    with tsdb.connect() as conn:
        before = stored_rows(conn)
        for load in LOADS:
            outcome = run_load(conn, massive_hook, load, run_id=f"rerun|{load.name}")
            for timeframe, n in load.per_symbol.items():
                merged = outcome.merged[timeframe]
                assert merged.staged == Counter(dict.fromkeys(load.symbols, n)), (load.name, timeframe)
                assert (merged.inserted, merged.updated) == (Counter(), Counter()), (load.name, timeframe)
            assert outcome.counts == exact_counts(load)
        after = stored_rows(conn)
    assert after == before  # not a value, not an updated_at
    values = {table: [row[:-1] for row in rows] for table, rows in after.items()}
    assert values == {table: [row[:-1] for row in rows] for table, rows in compressed.items()}


def test_a_revised_bar_in_a_compressed_chunk_updates_exactly_that_row(tsdb, loaded, compressed):
    spy = next(load for load in LOADS if load.symbols == ("SPY",))
    original = loaded[spy.name].bars[Timeframe.DAY][-1]  # 2025-11-28, the early close
    revised_close = original.close + Decimal("0.01")
    revised = replace(original, close=revised_close, high=max(original.high, revised_close))
    with tsdb.connect() as conn:
        chunk = conn.execute(
            "SELECT is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'ohlcv_daily' AND %(day)s >= range_start AND %(day)s < range_end",
            {"day": original.period},
        ).fetchall()
        assert chunk == [(True,)]
        before = stored_rows(conn)
        for bar, label in ((revised, "revise"), (original, "restore")):
            key = f"{label}|SPY|day"
            stage_bars(conn, key, [bar], timeframe=Timeframe.DAY)
            merged = merge_staged(conn, key, Timeframe.DAY)
            assert (merged.staged, merged.inserted, merged.updated) == (
                Counter(SPY=1),
                Counter(),
                Counter(SPY=1),
            ), label
            if bar is revised:
                after = stored_rows(conn)
        restored = stored_rows(conn)
    assert {t: rows for t, rows in after.items() if t != "ohlcv_daily"} == {
        t: rows for t, rows in before.items() if t != "ohlcv_daily"
    }
    changed = [(old, new) for old, new in zip(before["ohlcv_daily"], after["ohlcv_daily"], strict=True) if old != new]
    assert len(changed) == 1
    old, new = changed[0]
    assert new[:2] == ("SPY", original.period)
    assert (new[2], new[3], new[5]) == (revised.open, revised.high, revised.close)
    assert new[-1] > old[-1]  # updated_at moved for the revised row only
    assert [row[:-1] for row in restored["ohlcv_daily"]] == [row[:-1] for row in before["ohlcv_daily"]]
