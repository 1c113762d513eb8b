from __future__ import annotations

from datetime import UTC, date, datetime

from tickstock.load_request import LoadRequest
from tickstock.plan import MAX_MAPPED_TASKS, effective_batch_size, plan_load

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
            "sessions": ["2025-12-01", "2025-12-02"],
            "staging_key": "manual__x|day|g.0",
            "adjusted": True,
        }
    ]
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
    # 100 batches of 50 x hour, week, month; the day bars come from 250 grouped-daily requests in 4 keys
    assert len(plan.batches) == 300
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
