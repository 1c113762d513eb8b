"""The simulator's statistics: its own event-loop stalls, told apart from the client's bursts."""

from __future__ import annotations

from massive_sim.knobs import STALL_S, Stats


def _arrivals(stats: Stats, times: list[float]) -> None:
    for t in times:
        entry = stats.arrive("aggs", "/v2/aggs")
        entry[4] = t
        stats.finish(entry, 200)


def test_a_stall_before_the_busiest_second_is_reported_with_it() -> None:
    stats = Stats()
    # 50 requests over 5 s, then 30 stamped within 20 ms after a 0.3-s stall of the loop.
    _arrivals(stats, [i * 0.1 for i in range(50)] + [5.3 + i * 0.0007 for i in range(30)])
    stats.loop_lag(5.3, 0.3)
    stats.loop_lag(2.0, STALL_S / 2)  # a late wake-up, not a stall
    snap = stats.snapshot(include_log=False)
    assert snap["max_in_any_1s"] == 36  # 4.4 .. 4.9 (6) and the 30 stamped together
    assert snap["loop_stalls"] == 1
    assert snap["loop_lag_max_s"] == 0.3
    assert snap["loop_stalled_s"] == 0.3
    assert snap["busiest_1s_stalled_s"] == 0.3


def test_stalls_far_from_the_busiest_second_are_not_billed_to_it() -> None:
    stats = Stats()
    _arrivals(stats, [10 + i * 0.001 for i in range(20)] + [i * 0.5 for i in range(10)])
    stats.loop_lag(3.0, 0.2)
    snap = stats.snapshot(include_log=False)
    assert snap["max_in_any_1s"] == 20
    assert snap["loop_stalled_s"] == 0.2
    assert snap["busiest_1s_stalled_s"] == 0.0


def test_clear_forgets_the_stalls() -> None:
    stats = Stats()
    stats.loop_lag(1.0, 0.4)
    stats.clear()
    snap = stats.snapshot(include_log=False)
    assert (snap["loop_lag_max_s"], snap["loop_stalls"], snap["loop_stalled_s"]) == (0.0, 0, 0.0)
