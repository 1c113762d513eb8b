from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tickstock.checks import SymbolCount, count_bars, evaluate
from tickstock.symbols import register_symbols, symbol_row
from tickstock.timeframes import ALL_TIMEFRAMES, Timeframe
from tickstock.windows import plan_windows

pytestmark = pytest.mark.integration
NOW = datetime(2025, 12, 2, 21, 0, tzinfo=UTC)


def _insert(conn, table, column, symbol, keys, high="2"):
    with conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO {table} (symbol, "{column}", open, high, low, close, volume) VALUES (%s, %s, 1, %s, 0.5, 1.5, 10)',
            [(symbol, k, high) for k in keys],
        )


def _windows():
    return plan_windows(as_of=date(2025, 11, 30), days=90, timeframes=ALL_TIMEFRAMES, now=NOW)


def test_exact_counts_pass_and_a_missing_bar_is_named(pg_conn):
    windows = _windows()
    day = windows[Timeframe.DAY]
    _insert(pg_conn, "ohlcv_daily", "date", "SPY", day.expected)
    _insert(pg_conn, "ohlcv_daily", "date", "QQQ", day.expected[:-1])
    counts = count_bars(pg_conn, day, ["QQQ", "SPY"])
    assert counts == [SymbolCount("QQQ", "day", 63, 62, 0, 0), SymbolCount("SPY", "day", 63, 63, 0, 0)]
    outcome = evaluate(counts)
    assert not outcome.passed
    assert outcome.summary() == "1 short: QQQ/day=62/63"
    assert evaluate(counts, min_completeness=0.98).passed


def test_a_bar_shifted_onto_a_non_session_fails(pg_conn):
    day = _windows()[Timeframe.DAY]
    shifted = [d + timedelta(days=1) for d in day.expected]  # a UTC-date bug: Fridays land on Saturdays
    _insert(pg_conn, "ohlcv_daily", "date", "SPY", shifted)
    outcome = evaluate(count_bars(pg_conn, day, ["SPY"]))
    assert [c.symbol for c in outcome.unexpected] == ["SPY"]
    assert "bars outside the calendar" in outcome.summary()


def test_ohlc_violations_fail_and_hourly_and_periods_are_counted(pg_conn):
    windows = _windows()
    _insert(pg_conn, "ohlcv_hourly", "timestamp", "SPY", windows[Timeframe.HOUR].expected)
    _insert(pg_conn, "ohlcv_weekly", "week_start", "SPY", windows[Timeframe.WEEK].expected)
    _insert(pg_conn, "ohlcv_monthly", "month_start", "SPY", windows[Timeframe.MONTH].expected, high="1.2")
    counts = [
        c for tf in (Timeframe.HOUR, Timeframe.WEEK, Timeframe.MONTH) for c in count_bars(pg_conn, windows[tf], ["SPY"])
    ]
    assert [(c.timeframe, c.expected, c.present, c.invalid) for c in counts] == [
        ("hour", 11, 11, 0),
        ("week", 13, 13, 0),
        ("month", 3, 3, 3),
    ]
    assert evaluate(counts).summary() == "1 OHLC violations: SPY/month:3"


def test_expectations_start_at_the_list_date(pg_conn):
    windows = _windows()
    register_symbols(pg_conn, [symbol_row("NEWCO", {"name": "NewCo", "list_date": "2025-10-15", "active": True})])
    counts = {
        c.timeframe: c
        for tf in (Timeframe.DAY, Timeframe.WEEK, Timeframe.MONTH)
        for c in count_bars(pg_conn, windows[tf], ["NEWCO"])
    }
    assert counts["day"].expected == 32  # sessions 2025-10-15 .. 2025-11-28 (13 + 19)
    assert counts["week"].expected == 7  # the week of 10-12 (contains the list date) onwards
    assert counts["month"].expected == 2  # October and November


def test_a_per_symbol_since_date_bounds_expectations(pg_conn):
    day = _windows()[Timeframe.DAY]
    _insert(pg_conn, "ohlcv_daily", "date", "SPY", [d for d in day.expected if d >= date(2025, 11, 24)])
    counts = count_bars(pg_conn, day, ["SPY"], since={"SPY": date(2025, 11, 24)})
    assert counts == [SymbolCount("SPY", "day", 4, 4, 0, 0)]


def test_bars_outside_a_listing_are_unexpected_not_present(pg_conn):
    """Bars stored before a symbol's list date or after its delisting do not count as present."""
    day = _windows()[Timeframe.DAY]
    register_symbols(
        pg_conn,
        [
            symbol_row("NEWCO", {"name": "NewCo", "list_date": "2025-10-15", "active": True}),
            symbol_row("GONE", {"name": "Gone", "active": False, "delisted_utc": "2025-10-01T20:00:00Z"}),
        ],
    )
    for symbol in ("NEWCO", "GONE", "SPY"):
        _insert(pg_conn, "ohlcv_daily", "date", symbol, day.expected)
    counts = {c.symbol: c for c in count_bars(pg_conn, day, ["GONE", "NEWCO", "SPY"])}
    before_listing = sum(1 for d in day.expected if d < date(2025, 10, 15))
    through_delisting = sum(1 for d in day.expected if d <= date(2025, 10, 1))
    assert counts["NEWCO"] == SymbolCount("NEWCO", "day", 32, 32, before_listing, 0)
    assert counts["GONE"] == SymbolCount(
        "GONE", "day", through_delisting, through_delisting, len(day.expected) - through_delisting, 0
    )
    assert counts["SPY"] == SymbolCount("SPY", "day", len(day.expected), len(day.expected), 0, 0)
    assert [c.symbol for c in evaluate(list(counts.values())).unexpected] == ["GONE", "NEWCO"]
