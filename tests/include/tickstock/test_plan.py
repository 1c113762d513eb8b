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
        ("day", ["SCHG", "VUG"]),
        ("day", ["SPY"]),
        ("week", ["SCHG", "VUG"]),
        ("week", ["SPY"]),
        ("month", ["SCHG", "VUG"]),
        ("month", ["SPY"]),
    ]
    assert len({b["staging_key"] for b in plan.batches}) == 8
    day = plan.batches[2]
    assert (day["start"], day["end"], day["adjusted"], day["extended_hours"]) == (
        "2025-12-01",
        "2025-12-02",
        True,
        False,
    )


def test_five_thousand_symbols_stay_well_under_max_map_length():
    symbols = tuple(f"S{i:04d}" for i in range(5000))
    plan = plan_load(LoadRequest(symbols=symbols, days=365, as_of=date(2025, 11, 28)), run_id="r", now=NOW)
    assert len(plan.batches) == 400  # 100 batches of 50 x 4 timeframes
    tiny = plan_load(
        LoadRequest(symbols=symbols, days=365, as_of=date(2025, 11, 28), batch_size=1), run_id="r", now=NOW
    )
    assert len(tiny.batches) <= MAX_MAPPED_TASKS
    assert tiny.batch_size == effective_batch_size(5000, 4, 1) == 20


def test_as_of_defaults_to_today_in_new_york():
    late_evening_utc = datetime(2025, 12, 3, 3, 0, tzinfo=UTC)  # still Dec 2 in New York
    plan = plan_load(LoadRequest(symbols=("SPY",), days=2), run_id="r", now=late_evening_utc)
    assert plan.as_of == date(2025, 12, 2)
