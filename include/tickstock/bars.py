"""The typed bar record every part of the loader passes around.

One record for all four timeframes: ``start`` is the instant Massive's ``t`` names (the window
start, aware UTC); ``period`` is the America/New_York date that keys day/week/month bars. Prices
and volume are ``Decimal`` so values reach NUMERIC columns exactly as the API sent them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickstock.timeframes import Timeframe

if TYPE_CHECKING:
    from datetime import date, datetime
    from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar.

    :param symbol: ticker, upper case
    :param timeframe: hour, day, week or month
    :param start: window start as an aware UTC datetime (Massive's ``t``)
    :param period: ET date of the period start for day/week/month bars; ``None`` for hourly bars
    """

    symbol: str
    timeframe: Timeframe
    start: datetime
    period: date | None
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal | None = None
    transactions: int | None = None

    @property
    def key(self) -> date | datetime:
        """The value of the table's time column: ``start`` for hourly bars, else ``period``."""
        if self.timeframe is Timeframe.HOUR:
            return self.start
        assert self.period is not None
        return self.period
