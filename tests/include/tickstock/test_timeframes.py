from __future__ import annotations

import pytest

from tickstock.timeframes import ALL_TIMEFRAMES, OHLCV_TABLES, Timeframe, table_for


def test_every_timeframe_has_the_design_documents_table_and_column():
    assert {tf: (t.table, t.time_column) for tf, t in OHLCV_TABLES.items()} == {
        Timeframe.HOUR: ("ohlcv_hourly", "timestamp"),
        Timeframe.DAY: ("ohlcv_daily", "date"),
        Timeframe.WEEK: ("ohlcv_weekly", "week_start"),
        Timeframe.MONTH: ("ohlcv_monthly", "month_start"),
    }
    assert ALL_TIMEFRAMES == (Timeframe.HOUR, Timeframe.DAY, Timeframe.WEEK, Timeframe.MONTH)


def test_only_hourly_bars_are_stored_as_instants():
    assert [t.timeframe for t in OHLCV_TABLES.values() if t.is_intraday] == [Timeframe.HOUR]


def test_table_for_accepts_strings_and_rejects_unknown_timeframes():
    assert table_for("week").table == "ohlcv_weekly"
    with pytest.raises(ValueError, match="unknown timeframe '2h'; expected one of hour, day, week, month"):
        table_for("2h")
