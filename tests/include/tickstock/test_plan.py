from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tickstock.load_request import LoadRequest
from tickstock.plan import (
    FETCH_ROUNDS,
    FETCH_SLOTS,
    MAX_MAPPED_TASKS,
    auto_batch_size,
    cut_batches,
    effective_batch_size,
    first_round_sizes,
    mapped_batches,
    plan_load,
    stagger_extra,
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
    # 938 per batch, capped at 500: 10 batches x week and month, 13 x hour (its first round
    # staggered); the day bars come from 250 grouped-daily requests in 4 keys
    assert plan.batch_size == 500
    hour = [len(b["symbols"]) for b in plan.batches if b["timeframe"] == "hour"]
    assert hour == [250, 282, 313, 344, 375, 407, 438, 469, 500, 500, 500, 500, 122]
    assert len(plan.batches) == 33
    # the four grouped-daily fetches lead every 9 per-symbol batches, not all at the start
    mapped = mapped_batches(plan.grouped, plan.batches)
    assert len(mapped) == 37
    assert [i for i, item in enumerate(mapped) if item["sessions"]] == [0, 10, 20, 30]
    assert [item for item in mapped if not item["sessions"]] == plan.batches
    assert {b["timeframe"] for b in plan.batches} == {"hour", "week", "month"}
    assert [len(g["sessions"]) for g in plan.grouped] == [63, 63, 63, 61]
    tiny = plan_load(
        LoadRequest(symbols=symbols, days=365, as_of=date(2025, 11, 28), batch_size=1), run_id="r", now=NOW
    )
    assert len(tiny.batches) + len(tiny.grouped) <= MAX_MAPPED_TASKS
    assert tiny.batch_size == effective_batch_size(5000, 3, 1, max_tasks=MAX_MAPPED_TASKS - 4 - stagger_extra()) == 16
    assert len(tiny.batches) + len(tiny.grouped) == 945


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
    # 2 sessions: day bars from 2 grouped requests, 3,000 per-symbol fetches in batches of 188:
    # 6 per week and month (5 of 188, one of 60), 8 per hour (the staggered first round)
    assert plan.batch_size == 188
    assert [len(b["symbols"]) for b in plan.batches if b["timeframe"] == "hour"] == [
        94,
        106,
        118,
        130,
        141,
        153,
        165,
        93,
    ]
    assert len(plan.batches) == 20
    assert len(plan.grouped) == 1
    explicit = plan_load(
        LoadRequest(symbols=request.symbols, days=2, as_of=date(2025, 12, 2), batch_size=50), run_id="r", now=NOW
    )
    assert (explicit.batch_size, len(explicit.batches)) == (50, 63)


def test_the_first_round_is_staggered_so_equal_batches_do_not_end_together():
    # eight slots: the first round's batches grow from half a batch to nearly a whole one
    assert first_round_sizes(500) == [250, 282, 313, 344, 375, 407, 438, 469]
    assert first_round_sizes(2, slots=4) == [1, 2, 2, 2]
    symbols = [f"S{i}" for i in range(1200)]
    cut = cut_batches([symbols, symbols], 100)  # 24 plain batches: three rounds of 8
    assert [len(b) for b in cut[0]] == [50, 57, 63, 69, 75, 82, 88, 94, 100, 100, 100, 100, 100, 100, 22]
    assert [len(b) for b in cut[1]] == [100] * 12  # the later groups are cut as before
    assert [s for b in cut[0] for s in b] == symbols  # every symbol once, in order
    assert len(cut[0]) + len(cut[1]) - 24 <= stagger_extra() == 3
    # the stagger carries on into the next group when the first one is short (its last,
    # 13-symbol batch took the third size)
    short = cut_batches([symbols[:120], symbols], 100)
    assert [len(b) for b in short[0]] == [50, 57, 13]
    assert [len(b) for b in short[1]] == [69, 75, 82, 88, 94] + [100] * 7 + [92]


def test_one_round_or_less_is_cut_exactly_as_before():
    symbols = [f"S{i}" for i in range(250)]
    assert [[len(b) for b in g] for g in cut_batches([symbols] * 2, 100)] == [[100, 100, 50]] * 2
    # 7 plain batches plus one grouped-daily fetch still fit one round of 8 slots
    assert [len(b) for b in cut_batches([symbols[:200]] * 1, 30, others=1)[0]] == [30] * 6 + [20]
    # one more and the load needs a second round: staggered
    assert [len(b) for b in cut_batches([symbols[:200]], 30, others=2)[0]][:2] == [15, 17]
    assert cut_batches([[]], 10) == [[]]
    with pytest.raises(ValueError, match="size must be positive"):
        cut_batches([symbols], 0)
