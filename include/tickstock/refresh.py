"""Incremental refresh: which bars each symbol still needs, and the cheapest way to ask for them.

Every night each active symbol is brought up to date from its last stored bar, with a small
revision window (Massive revises recent bars after the close), the open week and month are
re-fetched, and gaps the calendar exposes inside what a symbol already has are backfilled. On a
day that is not a session (a holiday or weekend run) nothing is revised: only real gaps cost
requests, so a holiday run finishes without any bar request.

Daily bars for many symbols needing the same few sessions are cheaper through the grouped-daily
endpoint (one request per session for the whole market) than one request per symbol: the rule
and the requests are :mod:`tickstock.grouped_daily`'s, shared with ``universe_load``.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from tickstock import calendar
from tickstock.plan import cut_batches
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import psycopg

DATED_TIMEFRAMES = (Timeframe.DAY, Timeframe.WEEK, Timeframe.MONTH)
DEFAULT_REVISION_SESSIONS = 2
DEFAULT_NEW_SYMBOL_DAYS = 365


@dataclass(frozen=True)
class Extent:
    """What one table holds for one symbol."""

    symbol: str
    list_date: date | None
    first_key: date | None
    last_key: date | None
    stored: int


@dataclass(frozen=True)
class RefreshRange:
    """One symbol's request for one timeframe: sessions ``start``..``end`` and why."""

    symbol: str
    timeframe: Timeframe
    start: date
    end: date
    reason: str


def period_key(timeframe: Timeframe, day: date) -> date:
    """Return the key of the bar that contains session ``day``."""
    if timeframe is Timeframe.WEEK:
        return calendar.week_start(day)
    if timeframe is Timeframe.MONTH:
        return calendar.month_start(day)
    return day


def calendar_keys(timeframe: Timeframe, sessions: list[date]) -> list[date]:
    """Return the sorted bar keys the given sessions produce."""
    return sorted({period_key(timeframe, day) for day in sessions})


def _first_session_on_or_after(sessions: list[date], day: date) -> date | None:
    index = bisect.bisect_left(sessions, day)
    return sessions[index] if index < len(sessions) else None


def plan_symbol_range(
    extent: Extent,
    timeframe: Timeframe,
    *,
    sessions: list[date],
    first_missing: date | None,
    as_of_is_session: bool,
    revision_sessions: int = DEFAULT_REVISION_SESSIONS,
    new_symbol_days: int = DEFAULT_NEW_SYMBOL_DAYS,
) -> RefreshRange | None:
    """Decide what one symbol needs for one dated timeframe (``sessions`` end at ``as_of``)."""
    if not sessions:
        return None
    last_session = sessions[-1]
    if extent.last_key is None:
        floor = last_session - timedelta(days=new_symbol_days)
        if extent.list_date and extent.list_date > floor:
            floor = extent.list_date
        start = _first_session_on_or_after(sessions, floor)
        return RefreshRange(extent.symbol, timeframe, start, last_session, "new") if start else None
    candidates: list[tuple[date, str]] = []
    if first_missing is not None:
        candidates.append((first_missing, "gap"))
    last_key_session = _first_session_on_or_after(sessions, extent.last_key)
    if timeframe is Timeframe.DAY:
        after_last = _first_session_on_or_after(sessions, extent.last_key + timedelta(days=1))
        if after_last is not None:
            candidates.append((after_last, "new sessions"))
    elif last_key_session is not None and period_key(timeframe, last_session) > extent.last_key:
        candidates.append((last_key_session, "new periods"))
    if as_of_is_session:
        if timeframe is Timeframe.DAY:
            index = max(0, len(sessions) - revision_sessions)
            candidates.append((sessions[index], "revision window"))
        else:
            open_period = _first_session_on_or_after(sessions, period_key(timeframe, last_session))
            if open_period is not None:
                candidates.append((open_period, "open period"))
    if not candidates:
        return None
    start, reason = min(candidates)
    return RefreshRange(extent.symbol, timeframe, start, last_session, reason)


def reload_range(extent: Extent, timeframe: Timeframe, sessions: list[date]) -> RefreshRange | None:
    """The whole stored history of one symbol in one timeframe: what a split invalidates.

    From the session of its first stored bar (an hourly bar's New York date; the first session of
    a stored week or month) to the last session, so the reload rewrites every stored bar on the
    new basis and the fetch -> upsert -> check path proves the result complete.
    """
    if extent.first_key is None or not sessions:
        return None
    first = extent.first_key
    if isinstance(first, datetime):
        first = first.astimezone(calendar.NEW_YORK).date()
    start = _first_session_on_or_after(sessions, first)
    if start is None:
        return None
    return RefreshRange(extent.symbol, timeframe, start, sessions[-1], "split")


def read_extents(conn: psycopg.Connection, timeframe: Timeframe, symbols: list[str]) -> list[Extent]:
    """Return each symbol's first/last key and stored count in the timeframe's table."""
    table = table_for(timeframe)
    statement = sql.SQL(read_sql("dml/refresh_extent.sql")).format(
        table=sql.Identifier(table.table), time_column=sql.Identifier(table.time_column)
    )
    return [Extent(*row) for row in conn.execute(statement, {"symbols": symbols}).fetchall()]


def find_first_missing(
    conn: psycopg.Connection, timeframe: Timeframe, extents: list[Extent], keys: list[date]
) -> dict[str, date]:
    """Return, per symbol with a gap between its first and last stored bar, the first missing key.

    Counting first (stored vs calendar keys between the bounds) keeps the expensive anti-join to
    the symbols that really have a gap.
    """
    suspects = []
    for extent in extents:
        if extent.first_key is None or extent.last_key is None:
            continue
        first = (
            extent.first_key if not extent.list_date else max(extent.first_key, period_key(timeframe, extent.list_date))
        )
        expected = bisect.bisect_right(keys, extent.last_key) - bisect.bisect_left(keys, first)
        if extent.stored < expected:
            suspects.append((extent.symbol, first, extent.last_key))
    if not suspects:
        return {}
    table = table_for(timeframe)
    statement = sql.SQL(read_sql("dml/missing_keys.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        key_type=sql.SQL(table.time_type),
    )
    params = {
        "symbols": [s[0] for s in suspects],
        "firsts": [s[1] for s in suspects],
        "lasts": [s[2] for s in suspects],
        "keys": keys,
    }
    return {symbol: first for symbol, first, _count in conn.execute(statement, params).fetchall()}


def group_ranges(ranges: list[RefreshRange]) -> dict[tuple[Timeframe, date, date], list[str]]:
    """Group symbols that need the same timeframe and range, so they share batches."""
    groups: dict[tuple[Timeframe, date, date], list[str]] = defaultdict(list)
    for item in ranges:
        groups[(item.timeframe, item.start, item.end)].append(item.symbol)
    return dict(groups)


@dataclass(frozen=True)
class RefreshBatch:
    """One mapped fetch: ``symbols`` in one timeframe over ``start``..``end``."""

    timeframe: Timeframe
    start: date
    end: date
    symbols: tuple[str, ...]


def batch_groups(
    groups: Mapping[tuple[Timeframe, date, date], Sequence[str]],
    *,
    batch_size: int,
    max_batches: int,
    others: int = 0,
) -> list[RefreshBatch]:
    """Cut the range groups into fetch batches: at most ``max_batches`` of them.

    Normally each group is cut into batches of ``batch_size`` and every symbol is fetched over
    exactly its own range. A universe whose symbols have many different gaps gives many small
    groups, and Airflow refuses to map more than ``[core] max_map_length`` tasks; then each
    timeframe's symbols are sorted by start and packed into larger batches covering the union of
    their members' ranges. A symbol may re-fetch bars it already has: that costs bars, not
    requests (one per symbol either way), and the merge writes nothing for unchanged bars.
    The exact cut staggers its first round (:func:`tickstock.plan.cut_batches`; ``others`` is
    the number of grouped-daily fetches mapped beside the batches).
    """
    ordered = sorted(groups.items())
    cut = cut_batches([symbols for _key, symbols in ordered], batch_size, others=others)
    exact = [
        RefreshBatch(timeframe, start, end, tuple(chunk))
        for ((timeframe, start, end), _symbols), chunks in zip(ordered, cut, strict=True)
        for chunk in chunks
    ]
    if len(exact) <= max_batches:
        return exact
    members: dict[Timeframe, list[tuple[date, date, str]]] = defaultdict(list)
    for (timeframe, start, end), symbols in groups.items():
        members[timeframe].extend((start, end, symbol) for symbol in symbols)
    if max_batches <= len(members):
        raise ValueError(f"max_batches {max_batches} cannot hold {len(members)} timeframes")
    total = sum(len(items) for items in members.values())
    # sum(ceil(n / size)) <= total / size + timeframes <= max_batches
    size = max(batch_size, math.ceil(total / (max_batches - len(members))))
    packed = []
    for timeframe in sorted(members):
        items = sorted(members[timeframe])
        for offset in range(0, len(items), size):
            chunk = items[offset : offset + size]
            packed.append(
                RefreshBatch(
                    timeframe,
                    min(item[0] for item in chunk),
                    max(item[1] for item in chunk),
                    tuple(item[2] for item in chunk),
                )
            )
    return packed


def refresh_summary(ranges: list[RefreshRange]) -> dict[str, Any]:
    """Count ranges by timeframe and reason, for the log and the job status."""
    summary: dict[str, Any] = defaultdict(lambda: defaultdict(int))
    for item in ranges:
        summary[item.timeframe.value][item.reason] += 1
    return {tf: dict(reasons) for tf, reasons in summary.items()}
