"""The final data-quality gate of a load: exact bar counts from the NYSE calendar.

The design document accepted "±10%" because it could not say how many bars should exist. The
calendar can: every expected bar key is known (sessions, early closes, periods), so the check
demands each one, and flags bars stored where none may exist (a time-zone shift puts a daily
bar on a weekend or holiday). ``min_completeness`` < 1 tolerates illiquid symbols whose quiet
hours legitimately have no bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from psycopg import sql

from tickstock.schema import column_types, is_naive_instant
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from tickstock.windows import LoadWindow

# The ET calendar days a bar key's period covers, used to bound expectations by list/delist dates.
_PERIOD_DAYS: dict[Timeframe, tuple[str, str]] = {
    Timeframe.HOUR: (
        "(keys.key AT TIME ZONE 'America/New_York')::date",
        "(keys.key AT TIME ZONE 'America/New_York')::date",
    ),
    Timeframe.DAY: ("keys.key", "keys.key"),
    Timeframe.WEEK: ("keys.key", "keys.key + 6"),
    Timeframe.MONTH: ("keys.key", "(keys.key + interval '1 month' - interval '1 day')::date"),
}


@dataclass(frozen=True)
class SymbolCount:
    """Bars of one symbol and timeframe in the load window."""

    symbol: str
    timeframe: str
    expected: int
    present: int
    unexpected: int
    invalid: int

    def describe(self) -> str:
        return f"{self.symbol}/{self.timeframe}={self.present}/{self.expected}"


@dataclass
class CheckOutcome:
    """Every count, and the ones that fail the gate."""

    counts: list[SymbolCount] = field(default_factory=list)
    short: list[SymbolCount] = field(default_factory=list)
    unexpected: list[SymbolCount] = field(default_factory=list)
    invalid: list[SymbolCount] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.short or self.unexpected or self.invalid)

    def summary(self, limit: int = 20) -> str:
        """One line per failure kind, listing at most ``limit`` pairs each."""
        parts = []
        for label, items, fmt in (
            ("short", self.short, SymbolCount.describe),
            (
                "bars outside the calendar",
                self.unexpected,
                lambda c: f"{c.symbol}/{c.timeframe}+{c.unexpected}",
            ),
            ("OHLC violations", self.invalid, lambda c: f"{c.symbol}/{c.timeframe}:{c.invalid}"),
        ):
            if items:
                shown = ", ".join(fmt(c) for c in items[:limit])
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {label}: {shown}{more}")
        return "; ".join(parts) or "all bar counts exact"


def count_bars(
    conn: psycopg.Connection, window: LoadWindow, symbols: list[str], since: Mapping[str, date] | None = None
) -> list[SymbolCount]:
    """Run ``checks/bar_counts.sql`` for one timeframe's window.

    :param since: per-symbol first date to expect bars from (default: the whole window)
    """
    table = table_for(window.timeframe)
    first_day, last_day = _PERIOD_DAYS[window.timeframe]
    first, last = window.expected[0], window.expected[-1]
    stored_key: sql.Composable = sql.SQL("t.{}").format(sql.Identifier(table.time_column))
    if is_naive_instant(column_types(conn, table.table)[table.time_column]):
        # UTC wall time in the column: compare the column with naive UTC bounds (its index
        # applies) and turn it into an instant for matching the calendar's keys.
        stored_key = sql.SQL("({} AT TIME ZONE 'UTC')").format(stored_key)
        first, last = (_naive_utc(first), _naive_utc(last))
    statement = sql.SQL(read_sql("checks/bar_counts.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        stored_key=stored_key,
        key_type=sql.SQL(table.time_type),
        period_first_day=sql.SQL(first_day),
        period_last_day=sql.SQL(last_day),
    )
    params = {
        "keys": list(window.expected),
        "symbols": symbols,
        "since": [(since or {}).get(symbol) for symbol in symbols],
        "first": first,
        "last": last,
    }
    rows = conn.execute(statement, params).fetchall()
    return [SymbolCount(row[0], window.timeframe.value, *row[1:]) for row in rows]


def _naive_utc(key: datetime) -> datetime:
    """An aware instant as naive UTC wall time (what an adopted ``timestamp`` column holds)."""
    return key.astimezone(UTC).replace(tzinfo=None)


def evaluate(counts: list[SymbolCount], *, min_completeness: float = 1.0) -> CheckOutcome:
    """Decide which counts fail: short of ``min_completeness``, stray bars, invalid OHLC."""
    outcome = CheckOutcome(counts=counts)
    for count in counts:
        if count.present < math.ceil(count.expected * min_completeness - 1e-9):
            outcome.short.append(count)
        # Hourly keys outside the regular session may legitimately exist (an earlier extended-
        # hours load); for dated bars a stray key means a shifted date.
        if count.unexpected and count.timeframe != Timeframe.HOUR.value:
            outcome.unexpected.append(count)
        if count.invalid:
            outcome.invalid.append(count)
    return outcome
