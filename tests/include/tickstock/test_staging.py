from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from tickstock.bars import Bar
from tickstock.staging import (
    VALUE_COLUMNS,
    DuplicateStagedBars,
    clear_staged,
    load_key,
    merge_staged,
    purge_stale_staging,
    stage_bars,
    staged_counts,
    staged_table,
)
from tickstock.timeframes import Timeframe

pytestmark = pytest.mark.integration


def _day_bar(symbol: str, day: int, close: str = "101.5", volume: str = "1.029145e+06") -> Bar:
    start = datetime(2025, 12, day, 5, tzinfo=UTC)
    return Bar(
        symbol,
        Timeframe.DAY,
        start,
        date(2025, 12, day),
        Decimal("100.25"),
        Decimal("102"),
        Decimal("99.5"),
        Decimal(close),
        Decimal(volume),
        Decimal("100.9"),
        1234,
    )


def _rows(conn, table="ohlcv_daily"):
    return conn.execute(f"SELECT symbol, date, close, volume FROM {table} ORDER BY 1, 2").fetchall()


def test_stage_then_merge_inserts_then_rerun_changes_nothing_then_new_values_update(pg_conn):
    key = load_key("manual__1", "day", 0)
    bars = [_day_bar("SCHG", 1), _day_bar("SCHG", 2), _day_bar("VUG", 1)]
    assert stage_bars(pg_conn, key, bars, timeframe="day") == {"SCHG": 2, "VUG": 1}
    first = merge_staged(pg_conn, key, Timeframe.DAY)
    assert (first.inserted.total(), first.updated.total(), first.unchanged) == (3, 0, 0)
    assert first.staged == {"SCHG": 2, "VUG": 1}
    assert _rows(pg_conn) == [
        ("SCHG", date(2025, 12, 1), Decimal("101.5"), Decimal("1029145")),
        ("SCHG", date(2025, 12, 2), Decimal("101.5"), Decimal("1029145")),
        ("VUG", date(2025, 12, 1), Decimal("101.5"), Decimal("1029145")),
    ]
    assert staged_counts(pg_conn, key) == {"SCHG": 2, "VUG": 1}  # kept until the run ends

    stage_bars(pg_conn, key, bars, timeframe="day")
    again = merge_staged(pg_conn, key, Timeframe.DAY)
    assert (again.inserted.total(), again.updated.total(), again.unchanged) == (0, 0, 3)

    stage_bars(pg_conn, key, [_day_bar("SCHG", 2, close="103.75")], timeframe="day")
    changed = merge_staged(pg_conn, key, Timeframe.DAY)
    assert changed.updated == {"SCHG": 1}
    assert _rows(pg_conn)[1][2] == Decimal("103.75")
    assert len(_rows(pg_conn)) == 3


def test_a_merge_repeated_after_it_committed_reports_the_same_bars_and_clear_removes_them(pg_conn):
    # An upsert task retried after its first try's merge committed (worker killed before it
    # reported success, or the job status write hit a restarting Redis) merges the key again.
    key = load_key("manual__4", "day", 0)
    stage_bars(pg_conn, key, [_day_bar("SCHG", 1), _day_bar("SCHG", 2), _day_bar("VUG", 1)], timeframe="day")
    first = merge_staged(pg_conn, key, Timeframe.DAY)
    retry = merge_staged(pg_conn, key, Timeframe.DAY)
    assert retry.staged == first.staged == {"SCHG": 2, "VUG": 1}
    assert (retry.inserted.total(), retry.updated.total(), retry.unchanged) == (0, 0, 3)
    assert len(_rows(pg_conn)) == 3
    other = load_key("manual__5", "day", 0)
    stage_bars(pg_conn, other, [_day_bar("QQQ", 1)], timeframe="day")
    assert clear_staged(pg_conn, [key]) == 3
    assert pg_conn.execute("SELECT load_key FROM ohlcv_staging_batches").fetchall() == [(other,)]
    assert staged_counts(pg_conn, key) is None
    assert pg_conn.execute("SELECT to_regclass(%s)", (staged_table(key),)).fetchone() == (None,)  # dropped
    assert clear_staged(pg_conn, []) == 0


def test_restaging_a_key_replaces_a_failed_attempts_rows(pg_conn):
    key = load_key("manual__2", Timeframe.DAY, 7)
    stage_bars(pg_conn, key, [_day_bar("SPY", 1), _day_bar("SPY", 2)], timeframe="day")
    stage_bars(pg_conn, key, [_day_bar("SPY", 1)], timeframe="day")  # the retry
    assert merge_staged(pg_conn, key, "day").staged == {"SPY": 1}


def test_hourly_bars_are_keyed_by_their_instant_and_a_duplicate_is_refused_losing_nothing(pg_conn):
    key = load_key("manual__3", Timeframe.HOUR, 0)
    start = datetime(2025, 12, 1, 14, tzinfo=UTC)
    bar = Bar("SPY", Timeframe.HOUR, start, None, *(Decimal(v) for v in ("1", "2", "0.5", "1.5", "10")))
    stage_bars(pg_conn, key, [bar, bar], timeframe="hour")  # tickstock.bars never returns this
    with pytest.raises(DuplicateStagedBars, match=r"staged batch manual__3\|hour\|0 holds the same timestamp twice"):
        merge_staged(pg_conn, key, Timeframe.HOUR)
    assert staged_counts(pg_conn, key) == {"SPY": 2}  # still staged
    assert pg_conn.execute("SELECT count(*) FROM ohlcv_hourly").fetchone() == (0,)

    stage_bars(pg_conn, key, [bar], timeframe="hour")  # the retried fetch
    result = merge_staged(pg_conn, key, Timeframe.HOUR)
    assert (result.inserted, result.staged, result.unchanged) == ({"SPY": 1}, {"SPY": 1}, 0)
    stored = pg_conn.execute('SELECT "timestamp", vwap, transactions FROM ohlcv_hourly').fetchall()
    assert stored == [(start, None, None)]


def test_a_key_staged_twice_that_is_already_stored_is_refused_whatever_the_values(pg_conn):
    # Not a new key, so no unique index stops it: the merge counts the stored matches itself.
    key = load_key("manual__6", Timeframe.DAY, 0)
    stage_bars(pg_conn, key, [_day_bar("SCHG", 1), _day_bar("SCHG", 2)], timeframe="day")
    merge_staged(pg_conn, key, Timeframe.DAY)
    before = pg_conn.execute("SELECT symbol, date, close, updated_at FROM ohlcv_daily ORDER BY 1, 2").fetchall()
    for twice in ([_day_bar("SCHG", 1), _day_bar("SCHG", 1)], [_day_bar("SCHG", 1, close="7"), _day_bar("SCHG", 1)]):
        stage_bars(pg_conn, key, [*twice, _day_bar("VUG", 1)], timeframe="day")
        with pytest.raises(DuplicateStagedBars, match="holds the same date twice"):
            merge_staged(pg_conn, key, Timeframe.DAY)
        assert (
            pg_conn.execute("SELECT symbol, date, close, updated_at FROM ohlcv_daily ORDER BY 1, 2").fetchall()
            == before
        )


def test_a_key_a_concurrent_load_inserts_during_the_merge_is_merged_again_with_on_conflict(
    pg_conn, service_urls, caplog
):
    # The merge's snapshot does not see the other load's uncommitted row, so its plain INSERT
    # waits for that row and then fails with unique_violation; the batch is merged again by
    # INSERT ... ON CONFLICT, which updates the other load's row and inserts the rest.
    key = load_key("manual__7", Timeframe.DAY, 0)
    stage_bars(pg_conn, key, [_day_bar("SCHG", 1), _day_bar("SCHG", 2, close="103.75")], timeframe="day")
    url = service_urls.postgres_url
    with (
        psycopg.connect(url) as other_load,
        psycopg.connect(url, autocommit=True) as upsert,
        ThreadPoolExecutor(1) as pool,
        caplog.at_level(logging.INFO, logger="tickstock.staging"),
    ):
        other_load.execute(
            "INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume) VALUES ('SCHG', '2025-12-02', 1, 1, 1, 1, 1)"
        )
        merging = pool.submit(merge_staged, upsert, key, Timeframe.DAY)
        deadline = time.monotonic() + 120  # a guard against a hang, not a speed assertion
        blocked = "SELECT %s = ANY (pg_blocking_pids(%s))"
        while not pg_conn.execute(blocked, (other_load.info.backend_pid, upsert.info.backend_pid)).fetchone()[0]:
            assert not merging.done(), f"the merge did not wait for the concurrent insert: {merging.result()}"
            assert time.monotonic() < deadline, "the merge never waited for the concurrent insert"
        other_load.commit()
        result = merging.result()
    assert "met a concurrent insert" in caplog.text
    assert (result.staged, result.inserted, result.updated) == ({"SCHG": 2}, {"SCHG": 1}, {"SCHG": 1})
    assert _rows(pg_conn) == [
        ("SCHG", date(2025, 12, 1), Decimal("101.5"), Decimal("1029145")),
        ("SCHG", date(2025, 12, 2), Decimal("103.75"), Decimal("1029145")),
    ]


def test_a_batch_is_an_unlogged_table_of_its_own_without_index_and_listed_with_its_counts(pg_conn):
    key = load_key("r0", "day", 0)
    stage_bars(pg_conn, key, [_day_bar("SPY", 1), _day_bar("SPY", 2), _day_bar("QQQ", 1)], timeframe="day")
    table = staged_table(key)
    assert table.startswith("ohlcv_staged_")
    assert len(table) <= 63
    persistence, indexes = pg_conn.execute(
        "SELECT relpersistence, relhasindex FROM pg_class WHERE relname = %s", (table,)
    ).fetchone()
    assert (persistence, indexes) == ("u", False)
    columns = pg_conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", (table,)
    ).fetchall()
    assert [c for (c,) in columns] == ["symbol", "period", *VALUE_COLUMNS]
    listed = pg_conn.execute(
        "SELECT staged_table, bars, offered, keys_ascending FROM ohlcv_staging_batches WHERE load_key = %s", (key,)
    ).fetchone()
    assert listed == (table, 3, {"SPY": 2, "QQQ": 1}, True)
    # keys out of order (grouped daily stages session by session) are recorded so: the merge checks them
    stage_bars(pg_conn, key, [_day_bar("SPY", 2), _day_bar("SPY", 1)], timeframe="day")
    assert pg_conn.execute("SELECT keys_ascending FROM ohlcv_staging_batches").fetchone() == (False,)
    assert merge_staged(pg_conn, key, "day").inserted == {"SPY": 2}


def test_a_batch_emptied_by_a_crash_merges_nothing_and_says_so(pg_conn, caplog):
    # A crash resets every unlogged table to empty; the (logged) registry still lists the batch.
    key = load_key("r9", "day", 0)
    stage_bars(pg_conn, key, [_day_bar("SPY", 1), _day_bar("SPY", 2)], timeframe="day")
    pg_conn.execute(f"TRUNCATE {staged_table(key)}")  # what crash recovery does to an unlogged table
    with caplog.at_level(logging.WARNING, logger="tickstock.staging"):
        result = merge_staged(pg_conn, key, "day")
    assert (result.staged, result.inserted) == ({}, {})  # the upsert task refuses this for a fetched batch
    assert f"Staged batch {key} holds 0 of the 2 bars staged" in caplog.text
    assert _rows(pg_conn) == []


def test_a_key_never_staged_merges_nothing(pg_conn):
    assert merge_staged(pg_conn, load_key("r8", "day", 0), "day").staged == {}


def test_other_load_keys_are_untouched_and_stale_rows_are_purged(pg_conn):
    stage_bars(pg_conn, load_key("r1", "day", 0), [_day_bar("SPY", 1)], timeframe="day")
    stage_bars(pg_conn, load_key("r2", "day", 0), [_day_bar("QQQ", 1)], timeframe="day")
    merge_staged(pg_conn, load_key("r1", "day", 0), "day")
    clear_staged(pg_conn, [load_key("r1", "day", 0)])
    assert staged_counts(pg_conn, load_key("r2", "day", 0)) == {"QQQ": 1}
    assert purge_stale_staging(pg_conn, "1 hour") == 0
    pg_conn.execute("UPDATE ohlcv_staging_batches SET staged_at = now() - interval '2 days'")
    assert purge_stale_staging(pg_conn) == 1
    assert staged_counts(pg_conn, load_key("r2", "day", 0)) is None
    assert pg_conn.execute(r"SELECT count(*) FROM pg_class WHERE relname LIKE 'ohlcv\_staged\_%'").fetchone() == (0,)
