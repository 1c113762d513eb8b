from __future__ import annotations

from datetime import date

import pytest

from tickstock import calendar
from tickstock.grouped_daily import GROUPED_SESSIONS_PER_KEY, grouped_requests, use_grouped_daily
from tickstock.timeframes import Timeframe

YEAR = calendar.sessions(date(2024, 12, 2), date(2025, 12, 2))  # days=365 as of 2025-12-02


def test_a_large_universe_over_a_year_takes_one_request_per_session():
    assert len(YEAR) == 251
    assert use_grouped_daily(Timeframe.DAY, symbol_count=5000, session_count=len(YEAR))
    assert use_grouped_daily(Timeframe.DAY, symbol_count=len(YEAR) + 1, session_count=len(YEAR))


@pytest.mark.parametrize(
    ("timeframe", "symbols", "sessions"),
    [
        (Timeframe.DAY, 2, 2),  # the 2-day load of SCHG + VUG: a tie stays per symbol
        (Timeframe.DAY, 1, 63),  # one symbol over 90 days
        (Timeframe.DAY, 251, 251),
        (Timeframe.DAY, 5000, 0),  # no session in the window: nothing to ask for
        (Timeframe.HOUR, 5000, 2),  # only day bars exist in grouped form
        (Timeframe.WEEK, 5000, 251),
        (Timeframe.MONTH, 5000, 251),
    ],
)
def test_per_symbol_requests_win_otherwise(timeframe, symbols, sessions):
    assert not use_grouped_daily(timeframe, symbol_count=symbols, session_count=sessions)


def test_the_rule_counts_requests_only_so_unadjusted_loads_choose_alike():
    # use_grouped_daily takes no `adjusted`: both endpoints take the same flag, and grouped
    # requests carry it (see the requests below), so adjusted=false changes prices, not requests.
    requests = grouped_requests(["A"], YEAR[:2], run_id="r", group="g", adjusted=False)
    assert [r["adjusted"] for r in requests] == [False]


def test_requests_cover_every_session_once_under_unique_keys_of_bounded_size():
    requests = grouped_requests(["SPY", "QQQ"], YEAR, run_id="manual__1", group="g", adjusted=True)
    assert [len(r["sessions"]) for r in requests] == [63, 63, 63, 62]
    assert max(len(r["sessions"]) for r in requests) == GROUPED_SESSIONS_PER_KEY
    assert [d for r in requests for d in r["sessions"]] == [d.isoformat() for d in YEAR]
    assert [r["staging_key"] for r in requests] == [f"manual__1|day|g.{i}" for i in range(4)]
    assert all(r["symbols"] == ["SPY", "QQQ"] and r["adjusted"] for r in requests)
    assert grouped_requests(["SPY"], [], run_id="r", group="g", adjusted=True) == []


def test_five_thousand_symbols_over_a_year_cost_at_most_4_06_requests_per_symbol():
    """Issue 15 target 2, from the plan: hour, week, month per symbol, ticker details, day grouped."""
    from tickstock.load_request import LoadRequest
    from tickstock.plan import plan_load

    symbols = tuple(f"S{i:04d}" for i in range(5000))
    now = calendar.session_close(date(2025, 12, 2))
    plan = plan_load(LoadRequest(symbols=symbols, days=365, as_of=date(2025, 12, 2)), run_id="r", now=now)
    per_symbol = sum(len(b["symbols"]) for b in plan.batches)  # one range request per symbol and batch
    grouped = sum(len(r["sessions"]) for r in plan.grouped)
    details = len(symbols)  # fresh database: every symbol's details are stale
    assert (per_symbol, grouped) == (15000, 251)
    assert (per_symbol + grouped + details) / len(symbols) == pytest.approx(4.0502)
