"""The four bar timeframes and the table each one is stored in.

This is the one place that maps a timeframe to its Massive ``timespan``, its table and its time
column; DDL, upserts, checks and the loader all read it, so the four OHLCV tables are described
once rather than as four hand-copied definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Timeframe(StrEnum):
    """A bar timeframe; the value is the Massive Custom Bars ``timespan``."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class OhlcvTable:
    """Where bars of one timeframe live.

    :param timeframe: the timeframe stored in this table
    :param table: table name (the design document's names)
    :param time_column: the bar's start: a ``timestamptz`` for hourly bars, else the period's
        first date in America/New_York
    :param time_type: SQL type of ``time_column``
    :param chunk_interval: TimescaleDB chunk size, sized for ~100+ rows per symbol per chunk
    """

    timeframe: Timeframe
    table: str
    time_column: str
    time_type: str
    chunk_interval: str

    @property
    def is_intraday(self) -> bool:
        return self.time_type == "timestamptz"


OHLCV_TABLES: dict[Timeframe, OhlcvTable] = {
    Timeframe.HOUR: OhlcvTable(Timeframe.HOUR, "ohlcv_hourly", "timestamp", "timestamptz", "30 days"),
    Timeframe.DAY: OhlcvTable(Timeframe.DAY, "ohlcv_daily", "date", "date", "365 days"),
    Timeframe.WEEK: OhlcvTable(Timeframe.WEEK, "ohlcv_weekly", "week_start", "date", "1825 days"),
    Timeframe.MONTH: OhlcvTable(Timeframe.MONTH, "ohlcv_monthly", "month_start", "date", "3650 days"),
}

ALL_TIMEFRAMES: tuple[Timeframe, ...] = tuple(OHLCV_TABLES)


def table_for(timeframe: Timeframe | str) -> OhlcvTable:
    """Return the table description for ``timeframe`` (``"hour"``, ``Timeframe.DAY``, ...)."""
    try:
        return OHLCV_TABLES[Timeframe(timeframe)]
    except ValueError:
        choices = ", ".join(t.value for t in Timeframe)
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {choices}") from None
