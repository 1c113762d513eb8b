from __future__ import annotations

from datetime import date

import pytest

from tickstock import calendar
from tickstock.grouped_daily import use_grouped_daily
from tickstock.refresh import (
    Extent,
    RefreshBatch,
    RefreshRange,
    batch_groups,
    calendar_keys,
    find_first_missing,
    group_ranges,
    plan_symbol_range,
    read_extents,
)
from tickstock.symbols import register_symbols, symbol_row
from tickstock.timeframes import Timeframe

SESSIONS = calendar.sessions(date(2025, 6, 1), date(2025, 12, 3))  # as_of 2025-12-03, a session
DEC_2 = date(2025, 12, 2)


def _extent(last, first=date(2025, 9, 2), stored=10, list_date=None):
    return Extent("SPY", list_date, first, last, stored)


def test_a_session_day_fetches_new_sessions_and_revises_the_last_two():
    r = plan_symbol_range(_extent(DEC_2), Timeframe.DAY, sessions=SESSIONS, first_missing=None, as_of_is_session=True)
    assert r == RefreshRange("SPY", Timeframe.DAY, DEC_2, date(2025, 12, 3), "revision window")


def test_the_open_week_and_month_are_refetched():
    week = plan_symbol_range(
        _extent(date(2025, 11, 30)), Timeframe.WEEK, sessions=SESSIONS, first_missing=None, as_of_is_session=True
    )
    assert (week.start, week.end) == (date(2025, 12, 1), date(2025, 12, 3))
    month = plan_symbol_range(
        _extent(date(2025, 11, 1)), Timeframe.MONTH, sessions=SESSIONS, first_missing=None, as_of_is_session=True
    )
    assert (month.start, month.reason) == (date(2025, 11, 3), "new periods")  # November may have been partial


def test_a_holiday_run_with_no_gap_needs_nothing():
    holiday_sessions = calendar.sessions(date(2025, 6, 1), date(2025, 11, 27))  # 11-27: Thanksgiving
    for tf, last in (
        (Timeframe.DAY, date(2025, 11, 26)),
        (Timeframe.WEEK, date(2025, 11, 23)),
        (Timeframe.MONTH, date(2025, 11, 1)),
    ):
        assert (
            plan_symbol_range(_extent(last), tf, sessions=holiday_sessions, first_missing=None, as_of_is_session=False)
            is None
        )


def test_gaps_start_the_range_and_new_symbols_get_a_bounded_history():
    gap = plan_symbol_range(
        _extent(DEC_2), Timeframe.DAY, sessions=SESSIONS, first_missing=date(2025, 10, 7), as_of_is_session=True
    )
    assert (gap.start, gap.reason) == (date(2025, 10, 7), "gap")
    new = plan_symbol_range(
        Extent("NEWCO", date(2025, 10, 15), None, None, 0),
        Timeframe.DAY,
        sessions=SESSIONS,
        first_missing=None,
        as_of_is_session=True,
    )
    assert (new.start, new.end, new.reason) == (date(2025, 10, 15), date(2025, 12, 3), "new")


def test_grouping_and_grouped_daily_economy():
    ranges = [RefreshRange(s, Timeframe.DAY, DEC_2, date(2025, 12, 3), "revision window") for s in ("A", "B", "C")]
    assert group_ranges(ranges) == {(Timeframe.DAY, DEC_2, date(2025, 12, 3)): ["A", "B", "C"]}
    assert use_grouped_daily(Timeframe.DAY, symbol_count=3, session_count=2)
    assert not use_grouped_daily(Timeframe.DAY, symbol_count=2, session_count=2)


def test_groups_are_batched_exactly_while_under_the_map_cap():
    dec_3 = date(2025, 12, 3)
    groups = {
        (Timeframe.WEEK, date(2025, 12, 1), dec_3): ["A", "B", "C"],
        (Timeframe.DAY, date(2025, 3, 12), dec_3): ["D"],
    }
    assert batch_groups(groups, batch_size=2, max_batches=10) == [
        RefreshBatch(Timeframe.DAY, date(2025, 3, 12), dec_3, ("D",)),
        RefreshBatch(Timeframe.WEEK, date(2025, 12, 1), dec_3, ("A", "B")),
        RefreshBatch(Timeframe.WEEK, date(2025, 12, 1), dec_3, ("C",)),
    ]


def test_a_large_refresh_staggers_its_first_round_only():
    dec_3 = date(2025, 12, 3)
    symbols = [f"S{i:04d}" for i in range(5000)]
    timeframes = (Timeframe.HOUR, Timeframe.WEEK, Timeframe.MONTH)
    groups = {(tf, DEC_2, dec_3): symbols for tf in timeframes}
    batches = batch_groups(groups, batch_size=500, max_batches=1000, others=2)
    sizes = {tf: [len(b.symbols) for b in batches if b.timeframe is tf] for tf in timeframes}
    # the first group in order (hour) starts with batches of 250..469 symbols, the others as before
    assert sizes[Timeframe.HOUR] == [250, 282, 313, 344, 375, 407, 438, 469, 500, 500, 500, 500, 122]
    assert sizes[Timeframe.WEEK] == sizes[Timeframe.MONTH] == [500] * 10
    assert sorted(s for b in batches if b.timeframe is Timeframe.HOUR for s in b.symbols) == symbols


def test_many_distinct_gaps_are_packed_under_the_map_cap_and_every_range_is_covered():
    dec_3 = date(2025, 12, 3)
    history = calendar.sessions(date(2021, 1, 4), dec_3)
    # Symbols whose gaps start on 700 (day) and 600 (week) different sessions: 1,300 exact batches.
    groups = {(Timeframe.DAY, start, dec_3): [f"D{i}-{n}" for n in range(3)] for i, start in enumerate(history[:700])}
    groups |= {(Timeframe.WEEK, start, dec_3): [f"W{i}"] for i, start in enumerate(history[:600])}
    wanted = {(key[0], symbol): key[1] for key, symbols in groups.items() for symbol in symbols}

    batches = batch_groups(groups, batch_size=50, max_batches=1000)

    assert len(batches) == 42 + 12  # 2,100 day and 600 week symbols, 50 per batch
    covered = [(b.timeframe, symbol, b.start, b.end) for b in batches for symbol in b.symbols]
    assert sorted((tf, symbol) for tf, symbol, _s, _e in covered) == sorted(wanted)  # each exactly once
    for timeframe, symbol, start, end in covered:
        assert start <= wanted[(timeframe, symbol)]  # its own range lies inside its batch's
        assert end == dec_3
    # sorted by start, so a batch spans only its members' starts
    assert batches[0].start == history[0]
    assert batches[0].symbols[-1] == "D16-1"


def test_packing_cannot_go_below_one_batch_per_timeframe():
    groups = {(tf, DEC_2, DEC_2): ["A"] for tf in (Timeframe.DAY, Timeframe.WEEK)}
    with pytest.raises(ValueError, match="cannot hold 2 timeframes"):
        batch_groups(groups, batch_size=1, max_batches=1)


@pytest.mark.integration
def test_gap_detection_in_the_database_finds_exactly_the_missing_sessions(pg_conn):
    keys = calendar_keys(Timeframe.DAY, SESSIONS)
    register_symbols(
        pg_conn,
        [symbol_row("SPY", {"name": "SPY", "active": True}), symbol_row("QQQ", {"name": "QQQ", "active": True})],
    )
    september = [k for k in keys if k.month == 9]
    with pg_conn.cursor() as cur:
        for symbol, days in (("SPY", september), ("QQQ", [d for d in september if d != date(2025, 9, 17)])):
            cur.executemany(
                "INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume) "
                "VALUES (%s, %s, 1, 2, 0.5, 1.5, 10)",
                [(symbol, d) for d in days],
            )
    extents = read_extents(pg_conn, Timeframe.DAY, ["QQQ", "SPY"])
    assert [(e.symbol, e.first_key, e.last_key, e.stored) for e in extents] == [
        ("QQQ", date(2025, 9, 2), date(2025, 9, 30), 20),
        ("SPY", date(2025, 9, 2), date(2025, 9, 30), 21),
    ]
    assert find_first_missing(pg_conn, Timeframe.DAY, extents, keys) == {"QQQ": date(2025, 9, 17)}
