from __future__ import annotations

from datetime import UTC, date, datetime

from tickstock.load_request import LoadRequest
from tickstock.plan import (
    FETCH_ROUNDS,
    FETCH_SLOTS,
    MAX_MAPPED_TASKS,
    auto_batch_size,
    effective_batch_size,
    mapped_batches,
    plan_load,
)

NOW = datetime(2025, 12, 2, 21, 0, tzinfo=UTC)


def test_batches_are_timeframe_by_symbol_chunk_with_unique_staging_keys():
    request = LoadRequest(symbols=("SCHG", "VUG", "SPY"), days=2, as_of=date(2025, 12, 2), batch_size=2)
    plan = plan_load(request, run_id="manual__x", now=NOW)
    assert plan.as_of == date(2025, 12, 2)
    assert [(b["timeframe"], b["symbols"]) for b in plan.batches] == [
        ("hour", ["SCHG", "VUG"]),
        ("hour", ["SPY"]),
        ("week", ["SCHG", "VUG"]),
        ("week", ["SPY"]),
        ("month", ["SCHG", "VUG"]),
        ("month", ["SPY"]),
    ]
    # 3 symbols over 2 sessions: the day bars take 2 grouped-daily requests instead of 3
    assert plan.grouped == [
        {
            "symbols": ["SCHG", "VUG", "SPY"],
            "timeframe": "day",
            "start": "2025-12-01",
            "end": "2025-12-02",
            "staging_key": "manual__x|day|g.0",
            "adjusted": True,
            "extended_hours": False,
            "sessions": ["2025-12-01", "2025-12-02"],
        }
    ]
    # one map over both kinds, grouped first; every item has the same keys (a mapped task group
    # takes each as keyword arguments)
    mapped = mapped_batches(plan.grouped, plan.batches)
    assert mapped[0] is plan.grouped[0]
    assert mapped[1:] == plan.batches
    assert {frozenset(item) for item in mapped} == {frozenset(plan.grouped[0])}
    assert {b["sessions"] for b in plan.batches} == {None}
    assert len({b["staging_key"] for b in plan.batches + plan.grouped}) == 7
    week = plan.batches[2]
    assert (week["start"], week["end"], week["adjusted"], week["extended_hours"]) == (
        "2025-12-01",
        "2025-12-02",
        True,
        False,
    )


def test_five_thousand_symbols_stay_well_under_max_map_length():
    symbols = tuple(f"S{i:04d}" for i in range(5000))
    plan = plan_load(LoadRequest(symbols=symbols, days=365, as_of=date(2025, 11, 28)), run_id="r", now=NOW)
    # sized to the workers: 15,000 symbol x timeframe fetches over two rounds of 8 slots would be
    # 938 per batch, capped at 500: 10 batches x hour, week, month; the day bars come from 250
    # grouped-daily requests in 4 keys
    assert plan.batch_size == 500
    assert len(plan.batches) == 30
    # the four grouped-daily fetches lead every 8 per-symbol batches, not all at the start
    mapped = mapped_batches(plan.grouped, plan.batches)
    assert len(mapped) == 34
    assert [i for i, item in enumerate(mapped) if item["sessions"]] == [0, 9, 18, 27]
    assert [item for item in mapped if not item["sessions"]] == plan.batches
    assert {b["timeframe"] for b in plan.batches} == {"hour", "week", "month"}
    assert [len(g["sessions"]) for g in plan.grouped] == [63, 63, 63, 61]
    tiny = plan_load(
        LoadRequest(symbols=symbols, days=365, as_of=date(2025, 11, 28), batch_size=1), run_id="r", now=NOW
    )
    assert len(tiny.batches) + len(tiny.grouped) <= MAX_MAPPED_TASKS
    assert tiny.batch_size == effective_batch_size(5000, 3, 1, max_tasks=MAX_MAPPED_TASKS - 4) == 16


def test_day_bars_stay_per_symbol_when_grouped_daily_would_need_as_many_requests():
    request = LoadRequest(symbols=("SCHG", "VUG"), days=2, as_of=date(2025, 12, 2))
    plan = plan_load(request, run_id="r", now=NOW)
    assert plan.grouped == []
    assert [b["timeframe"] for b in plan.batches] == ["hour", "day", "week", "month"]


def test_as_of_defaults_to_today_in_new_york():
    late_evening_utc = datetime(2025, 12, 3, 3, 0, tzinfo=UTC)  # still Dec 2 in New York
    plan = plan_load(LoadRequest(symbols=("SPY",), days=2), run_id="r", now=late_evening_utc)
    assert plan.as_of == date(2025, 12, 2)


def test_automatic_batches_fill_two_rounds_of_the_pool_within_bounds():
    assert (FETCH_SLOTS, FETCH_ROUNDS) == (8, 2)
    # a small job: one batch per timeframe (a task instance costs more than a few requests)
    assert auto_batch_size(2, 4) == 100
    assert auto_batch_size(100, 4) == 100
    # 1,000 symbols x 3 timeframes: 3,000 fetches / 16 tasks = 188 symbols per batch
    assert auto_batch_size(1000, 3) == 188
    assert auto_batch_size(5000, 3) == 500
    assert auto_batch_size(5000, 1, floor=250) == 313
    assert auto_batch_size(0, 4) == 100
    request = LoadRequest(symbols=tuple(f"S{i:04d}" for i in range(1000)), days=2, as_of=date(2025, 12, 2))
    plan = plan_load(request, run_id="r", now=NOW)
    # 2 sessions: day bars from 2 grouped requests, 3,000 per-symbol fetches in 16 batches of 188
    assert plan.batch_size == 188
    assert len(plan.batches) == 18  # 6 per timeframe: 5 of 188 and one of 60
    assert len(plan.grouped) == 1
    explicit = plan_load(
        LoadRequest(symbols=request.symbols, days=2, as_of=date(2025, 12, 2), batch_size=50), run_id="r", now=NOW
    )
    assert (explicit.batch_size, len(explicit.batches)) == (50, 60)
