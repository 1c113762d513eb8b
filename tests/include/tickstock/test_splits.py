"""tickstock.splits: parsing, the query range, and the stored watermark and adjustment basis."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from tickstock.refresh import Extent, reload_range
from tickstock.splits import (
    AdjustmentMismatch,
    InvalidSplit,
    Split,
    advance_watermark,
    already_reloaded,
    check_basis,
    initialise_watermark,
    parse_splits,
    read_watermark,
    record_basis,
    record_reloads,
    split_query_range,
    split_results,
    splits_of_stored,
)
from tickstock.timeframes import Timeframe

ROW = {
    "id": "E1",
    "ticker": "SCHG",
    "execution_date": "2025-12-03",
    "split_from": 1,
    "split_to": 4,
    "adjustment_type": "forward_split",
    "historical_adjustment_factor": 0.25,
}


def test_rows_parse_into_splits_with_readable_ratios():
    reverse = {**ROW, "ticker": "VUG", "split_from": 10, "split_to": 1, "adjustment_type": "reverse_split"}
    dividend = {**ROW, "ticker": "AAA", "split_from": 20, "split_to": 21, "adjustment_type": "stock_dividend"}
    splits = parse_splits([ROW, reverse, dividend])
    assert [(s.symbol, s.ratio, s.adjustment_type) for s in splits] == [
        ("AAA", "21:20", "stock_dividend"),
        ("SCHG", "4:1", "forward_split"),
        ("VUG", "1:10", "reverse_split"),
    ]
    assert Split.from_json(splits[1].to_json()) == splits[1]


@pytest.mark.parametrize(
    "bad",
    [
        {k: v for k, v in ROW.items() if k != "split_to"},
        {**ROW, "execution_date": "12/03/2025"},
        {**ROW, "split_from": 0},
        {**ROW, "ticker": ""},
        "not a row",
    ],
)
def test_a_malformed_row_fails_the_whole_answer(bad):
    with pytest.raises(InvalidSplit):
        parse_splits([ROW, bad])


def test_query_range_overlaps_the_watermark_for_late_listings_and_covers_non_sessions():
    friday = date(2025, 12, 5)
    # Monday's run after a Friday watermark asks for the weekend too, and for the 7 days up to
    # Friday again (a split listed late); splits already reloaded are skipped by the caller
    assert split_query_range(friday, date(2025, 12, 8), None) == (date(2025, 11, 29), date(2025, 12, 8))
    assert split_query_range(friday, date(2025, 12, 8), None, late_days=0) == (date(2025, 12, 6), date(2025, 12, 8))
    assert split_query_range(date(2025, 12, 8), date(2025, 12, 1), None) is None  # a past as_of: nothing new
    assert split_query_range(None, date(2025, 12, 8), date(2024, 12, 2)) == (date(2024, 12, 2), date(2025, 12, 8))
    assert split_query_range(None, date(2025, 12, 8), None) is None  # nothing stored, nothing to ask


def test_reloaded_splits_are_remembered_exactly(pg_conn):
    splits = parse_splits([ROW, {**ROW, "execution_date": "2025-12-06", "split_from": 20, "split_to": 21}])
    assert already_reloaded(pg_conn, splits) == set()
    record_reloads(pg_conn, splits[:1], {"SCHG": 1042}, "run-1")
    record_reloads(pg_conn, splits[:1], {"SCHG": 7}, "run-2")  # a rerun keeps the first record
    assert already_reloaded(pg_conn, splits) == {splits[0]}
    assert pg_conn.execute("SELECT rows_rewritten, run_id FROM split_reloads").fetchall() == [(1042, "run-1")]


def test_only_stored_symbols_count_and_two_splits_of_one_symbol_stay_together():
    splits = parse_splits(
        [ROW, {**ROW, "execution_date": "2025-12-06", "split_from": 20, "split_to": 21}, {**ROW, "ticker": "AAPL"}]
    )
    grouped = splits_of_stored(splits, ["SCHG", "SPY"])
    assert list(grouped) == ["SCHG"]
    assert [s.execution_date for s in grouped["SCHG"]] == [date(2025, 12, 3), date(2025, 12, 6)]
    assert split_results(grouped["SCHG"], {"SCHG": 300}) == [
        {
            "symbol": "SCHG",
            "date": "2025-12-03",
            "ratio": "4:1",
            "adjustment_type": "forward_split",
            "rows_rewritten": 300,
        },
        {
            "symbol": "SCHG",
            "date": "2025-12-06",
            "ratio": "21:20",
            "adjustment_type": "forward_split",
            "rows_rewritten": 300,
        },
    ]


def test_reload_range_covers_the_whole_stored_history():
    sessions = [date(2025, 12, 1), date(2025, 12, 2), date(2025, 12, 3)]
    week = Extent("SCHG", None, date(2025, 11, 30), date(2025, 11, 30), 1)  # a Sunday week key
    assert reload_range(week, Timeframe.WEEK, sessions).start == date(2025, 12, 1)
    # an hourly bar's key is an instant: its New York date, not its UTC date (00:30Z is still 12-01 in NY)
    hour = Extent("SCHG", None, datetime(2025, 12, 2, 0, 30, tzinfo=UTC), None, 1)
    item = reload_range(hour, Timeframe.HOUR, sessions)
    assert (item.start, item.end, item.reason) == (date(2025, 12, 1), date(2025, 12, 3), "split")
    assert reload_range(Extent("SCHG", None, None, None, 0), Timeframe.DAY, sessions) is None


def test_watermark_starts_once_and_only_moves_forward(pg_conn):
    assert read_watermark(pg_conn) is None
    initialise_watermark(pg_conn, date(2025, 12, 2))
    initialise_watermark(pg_conn, date(2025, 12, 9))  # a later load does not move it
    assert read_watermark(pg_conn) == date(2025, 12, 2)
    advance_watermark(pg_conn, date(2025, 12, 5))
    advance_watermark(pg_conn, date(2025, 12, 3))  # an older as_of rerun never moves it back
    assert read_watermark(pg_conn) == date(2025, 12, 5)


def test_basis_is_claimed_once_and_a_different_flag_is_rejected_and_rolled_back(pg_conn, service_urls):
    record_basis(pg_conn, ["SCHG", "VUG"], "ohlcv_daily", True)
    check_basis(pg_conn, ["SCHG", "VUG", "NEW"], ["ohlcv_daily", "ohlcv_hourly"], True)
    with pytest.raises(AdjustmentMismatch, match=r"SCHG in ohlcv_daily \(stored adjusted=True\)") as caught:
        check_basis(pg_conn, ["SCHG", "NEW"], ["ohlcv_daily"], False)
    assert caught.value.conflicts == [("SCHG", "ohlcv_daily", True)]
    # in a merge's transaction: the conflicting claim raises and takes NEW's claim down with it
    with psycopg.connect(service_urls.postgres_url) as conn, pytest.raises(AdjustmentMismatch), conn.transaction():
        record_basis(conn, ["NEW", "VUG"], "ohlcv_daily", False)
    rows = pg_conn.execute("SELECT symbol, adjusted FROM adjustment_basis ORDER BY 1").fetchall()
    assert rows == [("SCHG", True), ("VUG", True)]  # NEW's claim was rolled back with it
    record_basis(pg_conn, ["VUG"], "ohlcv_hourly", False)  # another table may hold the other basis
    check_basis(pg_conn, ["VUG"], ["ohlcv_hourly"], False)
