"""MassiveHook against the offline simulator over HTTP (attempts are counted by the simulator)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from massive_sim.testing import SimHandle
from tickstock import calendar
from tickstock.timeframes import Timeframe
from tickstock_airflow.hooks.massive import (
    MassiveAuthError,
    MassiveHook,
    MassivePaginationError,
    MassiveRequestError,
    MassiveUnavailableError,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("massive_conn")]

# The simulator's clock is 2025-12-02 21:00Z (16:00 ET, the close): Dec 2 is complete.
LAST = date(2025, 12, 2)


def _hook(**kwargs) -> MassiveHook:
    """A hook whose backoffs are milliseconds: the tests count attempts, they do not time them."""
    options = {"max_attempts": 4, "retry_base_delay": 0.01, "rate_limited_base_delay": 0.01} | kwargs
    return MassiveHook(**options)


def _aggs(sim) -> dict[str, int]:
    return sim.stats()["by_endpoint_status"]["aggs"]


def _wait_until_idle(sim) -> None:
    """Let timed-out requests finish at the simulator, so they are not counted in the next test."""
    deadline = time.monotonic() + 30
    while sim.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait


def _regular_hours(start: date, end: date) -> list:
    return [h for day in calendar.sessions(start, end) for h in calendar.hour_starts(day)]


class TestPagination:
    def test_small_page_limits_return_exactly_the_bars_of_one_big_page(self, massive_conn):
        one_page = _hook().get_bars("SPY", "day", date(2025, 6, 1), LAST)
        assert _aggs(massive_conn) == {"200": 1}
        paged = _hook(limit=7).get_bars("SPY", "day", date(2025, 6, 1), LAST)
        assert paged.bars == one_page.bars
        assert [b.period for b in one_page.bars] == calendar.sessions(date(2025, 6, 1), LAST)
        # 7 day bars per page: every page but the last is full.
        assert _aggs(massive_conn) == {"200": 1 + -(-len(one_page.bars) // 7)}

    def test_hourly_pages_of_two_bars_match_one_request(self, massive_conn):
        start = date(2025, 11, 24)
        one_page = _hook().get_bars("SPY", Timeframe.HOUR, start, LAST)
        paged = _hook(limit=120).get_bars("SPY", Timeframe.HOUR, start, LAST)
        assert paged.bars == one_page.bars
        assert [b.start for b in one_page.bars] == _regular_hours(start, LAST)

    def test_long_hourly_ranges_are_split_into_windows_under_the_minute_cap(self, massive_conn):
        start = date(2025, 8, 1)
        parsed = _hook().get_bars("SPY", "hour", start, LAST)
        assert [b.start for b in parsed.bars] == _regular_hours(start, LAST)
        paths = [r["path"].split("?")[0] for r in massive_conn.stats(requests=True)["requests"]]
        # 124 days in windows of 34 days (34 x 1440 minutes < 50,000): 4 requests, no overlap.
        assert paths == [
            "/v2/aggs/ticker/SPY/range/1/hour/2025-08-01/2025-09-03",
            "/v2/aggs/ticker/SPY/range/1/hour/2025-09-04/2025-10-07",
            "/v2/aggs/ticker/SPY/range/1/hour/2025-10-08/2025-11-10",
            "/v2/aggs/ticker/SPY/range/1/hour/2025-11-11/2025-12-02",
        ]

    def test_extended_hours_keeps_pre_and_after_market_bars(self, massive_conn):
        day = date(2025, 12, 1)  # the clock's own day has no after-hours bars yet
        parsed = _hook().get_bars("SPY", "hour", day, day, extended_hours=True)
        assert [b.start for b in parsed.bars] == calendar.hour_starts(day, extended=True)
        assert len(parsed.bars) == 16
        assert parsed.outside_session == 0

    def test_a_repeating_next_url_stops_with_an_error(self, massive_conn):
        massive_conn.configure(repeat_next_url=True)
        with pytest.raises(MassivePaginationError, match="next_url repeated a cursor on page 3"):
            _hook(limit=7).get_bars("SPY", "day", date(2025, 6, 1), LAST)
        # The first page, then the cursor page whose next_url names itself: not requested again.
        assert _aggs(massive_conn) == {"200": 2}

    def test_unknown_symbol_is_200_without_results_so_no_bars_and_no_error(self, massive_conn):
        parsed = _hook().get_bars("ZZZZQ", "day", date(2025, 11, 1), LAST)
        assert (parsed.bars, parsed.rejected) == ([], [])
        assert _aggs(massive_conn) == {"200": 1}


class TestFailures:
    def test_5xx_is_retried_until_the_exact_bars_arrive(self, massive_conn, api_key):
        clean = _hook().get_bars("SPY", "week", date(2025, 1, 1), LAST)
        massive_conn.reset()
        massive_conn.configure(api_keys=[api_key], fail_next_n=2, fail_next_status=503)
        assert _hook().get_bars("SPY", "week", date(2025, 1, 1), LAST).bars == clean.bars
        assert _aggs(massive_conn) == {"503": 2, "200": 1}

    def test_5xx_beyond_the_attempt_budget_raises(self, massive_conn):
        massive_conn.configure(fail_next_n=10, fail_next_status=502)
        with pytest.raises(MassiveUnavailableError, match=r"after 4 attempts; last: server error 502"):
            _hook().get_bars("SPY", "day", date(2025, 11, 1), LAST)
        assert _aggs(massive_conn) == {"502": 4}

    def test_429_burst_backs_off_then_gets_every_answer(self, massive_conn):
        massive_conn.configure(rate_limit="4/s")
        hook = _hook(max_attempts=50, rate_limited_base_delay=0.1, max_retry_delay=0.5)
        names = [hook.get_ticker_details(s)["name"] for s in ("SPY", "SCHG", "VUG", "QQQ", "AAPL") * 2]
        assert names[:2] == ["SPDR S&P 500 ETF Trust", "Schwab U.S. Large-Cap Growth ETF"]
        stats = massive_conn.stats()
        per_status = stats["by_endpoint_status"]["ticker_details"]
        assert per_status["200"] == 10
        assert per_status.get("429", 0) >= 1  # 10 requests at 4/s cannot all be accepted
        assert hook.requests_made == stats["total"] == 10 + per_status["429"]

    def test_429_honours_retry_after(self, massive_conn, capfd):
        massive_conn.configure(fail_next_n=2, fail_next_status=429, retry_after=0.3)
        # Without Retry-After the first backoff would be 15-30 s and the test would time out.
        assert _hook(rate_limited_base_delay=30).get_ticker_details("SPY") is not None
        assert massive_conn.stats()["by_endpoint_status"]["ticker_details"] == {"429": 2, "200": 1}
        out = capfd.readouterr().out
        assert out.count("⚠ SPY ticker details: rate limited (429), waiting 0.3 s before retrying") == 2

    def test_timeouts_are_retried_and_then_raised(self, massive_conn):
        massive_conn.configure(slow_ms=3000, slow_rate=1.0)
        with pytest.raises(MassiveUnavailableError, match=r"3 attempts; last: timed out \(ReadTimeout"):
            _hook(max_attempts=3, timeout=(5, 0.3)).get_bars("SPY", "day", date(2025, 11, 1), LAST)
        assert massive_conn.stats()["by_endpoint"]["aggs"] == 3
        _wait_until_idle(massive_conn)

    def test_timeouts_on_some_attempts_still_end_in_the_exact_bars(self, massive_conn):
        clean = _hook().get_bars("SPY", "day", date(2025, 1, 1), LAST)
        massive_conn.configure(slow_ms=3000, slow_rate=0.5)
        hook = _hook(max_attempts=20, timeout=(5, 0.3), limit=30)
        assert hook.get_bars("SPY", "day", date(2025, 1, 1), LAST).bars == clean.bars
        pages = -(-len(clean.bars) // 30)
        assert hook.requests_made > pages  # some attempts timed out and were repeated
        assert massive_conn.stats()["by_endpoint"]["aggs"] == 1 + hook.requests_made
        _wait_until_idle(massive_conn)

    def test_truncated_json_is_retried_then_raised(self, massive_conn):
        massive_conn.configure(invalid_json_rate=1.0)
        with pytest.raises(MassiveUnavailableError, match="invalid JSON in a 200 response"):
            _hook().get_bars("SPY", "day", date(2025, 11, 1), LAST)
        assert _aggs(massive_conn) == {"200": 4}

    def test_truncated_json_on_some_pages_still_ends_in_the_exact_bars(self, massive_conn):
        clean = _hook().get_bars("SPY", "day", date(2025, 1, 1), LAST)
        massive_conn.configure(invalid_json_rate=0.4)
        hook = _hook(max_attempts=20, limit=30)
        assert hook.get_bars("SPY", "day", date(2025, 1, 1), LAST).bars == clean.bars
        assert hook.requests_made > -(-len(clean.bars) // 30)

    def test_401_fails_fast_with_what_to_fix(self, massive_conn, set_massive_conn):
        set_massive_conn(massive_conn.url, "sk-WRONG-KEY")
        with pytest.raises(MassiveAuthError) as caught:
            _hook().get_bars("SPY", "day", date(2025, 11, 1), LAST)
        message = str(caught.value)
        assert "HTTP 401 (Unknown API Key)" in message
        assert "check the password of Airflow connection 'massive_default'" in message
        assert "sk-WRONG-KEY" not in message
        assert _aggs(massive_conn) == {"401": 1}

    def test_403_fails_fast_naming_the_plan(self, massive_conn):
        massive_conn.configure(forbidden_timespans=["hour"])
        with pytest.raises(MassiveAuthError, match=r"HTTP 403 .*not entitled.*upgrade the Massive plan"):
            _hook().get_bars("SPY", "hour", LAST, LAST)
        assert _aggs(massive_conn) == {"403": 1}

    def test_a_connection_without_a_key_is_an_auth_error_before_any_request(self, massive_conn, set_massive_conn):
        set_massive_conn(massive_conn.url, "")
        with pytest.raises(MassiveAuthError, match="has no Massive API key: put the key in the connection's"):
            _hook().get_bars("SPY", "day", LAST, LAST)
        assert massive_conn.stats()["total"] == 0

    def test_duplicate_bars_in_a_response_are_reported(self, massive_conn):
        massive_conn.configure(duplicate_bar=True)
        parsed = _hook().get_bars("SPY", "day", date(2025, 11, 3), LAST)
        assert [b.period for b in parsed.bars] == calendar.sessions(date(2025, 11, 3), LAST)
        assert [r.reason for r in parsed.rejected] == [
            "2025-11-03T05:00:00+00:00: duplicate of an identical bar (one kept)"
        ]


class TestReferenceData:
    def test_ticker_details_and_404_as_none(self, massive_conn):
        hook = _hook()
        details = hook.get_ticker_details("SCHG")
        assert details["name"] == "Schwab U.S. Large-Cap Growth ETF"
        assert details["type"] == "ETF"
        assert hook.get_ticker_details("ZZZZQ") is None
        assert massive_conn.stats()["by_endpoint_status"]["ticker_details"] == {"200": 1, "404": 1}

    def test_grouped_daily_bars_equal_the_range_endpoints_day_bars(self, massive_conn):
        hook = _hook()
        grouped = hook.get_grouped_daily(date(2025, 12, 1))
        assert grouped.rejected == []
        by_symbol = {b.symbol: b for b in grouped.bars}
        for symbol in ("SPY", "SCHG", "AAPL"):
            ranged = hook.get_bars(symbol, "day", date(2025, 12, 1), date(2025, 12, 1)).bars
            assert ranged == [by_symbol[symbol]]

    def test_grouped_daily_for_some_symbols_parses_only_theirs(self, massive_conn):
        hook = _hook()
        everything = hook.get_grouped_daily(date(2025, 12, 1))
        some = hook.get_grouped_daily(date(2025, 12, 1), symbols=["SCHG", "VUG", "ZZZZQ"])
        assert len(everything.bars) > 1000
        assert some.bars == [b for b in everything.bars if b.symbol in ("SCHG", "VUG")]
        assert {b.symbol for b in some.bars} == {"SCHG", "VUG"}
        assert massive_conn.stats()["by_endpoint"]["grouped"] == 2  # one request each, filtered here

    def test_grouped_daily_on_a_holiday_is_no_bars(self, massive_conn):
        assert _hook().get_grouped_daily(date(2025, 11, 27)).bars == []

    def test_test_connection(self, massive_conn, set_massive_conn):
        ok, message = MassiveHook().test_connection()
        assert ok, message
        set_massive_conn(massive_conn.url, "sk-WRONG-KEY")
        ok, message = MassiveHook().test_connection()
        assert not ok
        assert "HTTP 401" in message
        assert "sk-WRONG-KEY" not in message


class TestSplits:
    def test_more_than_5000_splits_arrive_complete_across_pages(self, massive_conn, api_key):
        splits = _hook().get_splits(date(1990, 1, 1), LAST)
        per_status = massive_conn.stats()["by_endpoint_status"]["splits"]
        assert len(splits) > 5000
        assert per_status == {"200": -(-len(splits) // 5000)}  # pages of the endpoint's maximum, 5,000
        keys = {(s.symbol, s.execution_date, s.split_from, s.split_to) for s in splits}
        assert len(keys) == len(splits)
        # the same set as the raw endpoint pages through (default page size 100 would be 70+ pages)
        raw, url, direct = [], "/stocks/v1/splits?limit=5000", SimHandle(massive_conn.url, api_key)
        while url:
            body = direct.get(url).json()
            raw += body["results"]
            url = body.get("next_url")
        assert keys == {
            (r["ticker"], date.fromisoformat(r["execution_date"]), r["split_from"], r["split_to"]) for r in raw
        }
        dividends = [s for s in splits if s.adjustment_type == "stock_dividend"]
        assert dividends  # stock dividends are splits too: a 21-for-20 reads as "21:20"
        assert {s.ratio for s in dividends} == {"21:20"}

    def test_a_range_returns_only_its_execution_dates(self, massive_conn):
        massive_conn.configure(splits=["SCHG:2025-12-01:4:1", "VUG:2025-11-29:1:10"])
        splits = _hook().get_splits(date(2025, 11, 29), date(2025, 12, 2))
        assert [(s.symbol, s.execution_date.isoformat(), s.ratio, s.adjustment_type) for s in splits] == [
            ("SCHG", "2025-12-01", "4:1", "forward_split"),
            ("VUG", "2025-11-29", "1:10", "reverse_split"),
        ]
        assert _hook().get_splits(date(2025, 12, 2), date(2025, 12, 2)) == []

    def test_5xx_is_retried_and_persistent_errors_raise_instead_of_an_empty_list(self, massive_conn):
        massive_conn.configure(splits=["SCHG:2025-12-01:4:1"], fail_next_n=2, fail_next_status=503)
        assert [s.symbol for s in _hook().get_splits(date(2025, 12, 1), LAST)] == ["SCHG"]
        assert massive_conn.stats()["by_endpoint_status"]["splits"] == {"503": 2, "200": 1}
        massive_conn.configure(fail_next_n=10, fail_next_status=500)
        with pytest.raises(MassiveUnavailableError, match=r"splits executed 2025-12-01\.\.2025-12-02: giving up"):
            _hook().get_splits(date(2025, 12, 1), LAST)
        massive_conn.configure(fail_next_n=0)
        with pytest.raises(MassiveRequestError, match=r"HTTP 400.*Invalid limit '5001'"):
            _hook().get_splits(date(2025, 12, 1), LAST, limit=5001)


def test_the_api_key_appears_in_no_log_line_exception_or_repr(massive_conn, api_key, caplog, capfd):
    # Hook logs go through Airflow's structlog to stdout; urllib3's debug lines through logging.
    hook = _hook(max_attempts=2)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        hook.get_bars("SPY", "day", date(2025, 11, 1), LAST)
        hook.get_bars("SPY", "hour", LAST, LAST)
        hook.get_ticker_details("ZZZZQ")
        massive_conn.configure(fail_next_n=5, fail_next_status=500)
        try:
            hook.get_bars("SPY", "day", LAST, LAST)
        except MassiveUnavailableError as err:
            errors.append(err)
        massive_conn.configure(fail_next_n=0, forbidden_timespans=["week"])
        try:
            hook.get_bars("SPY", "week", LAST, LAST)
        except MassiveAuthError as err:
            errors.append(err)
    assert len(errors) == 2
    captured = capfd.readouterr()
    assert "Fetching SPY day bars (attempt 1/2)" in captured.out
    assert "⚠ SPY day bars: server error 500" in captured.out
    assert any("GET /v2/aggs/ticker/SPY/range/1/day" in r.getMessage() for r in caplog.records)
    texts = [
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        captured.out,
        captured.err,
        *(str(e) for e in errors),
        *(repr(e) for e in errors),
        repr(hook._shared_session().auth),
        json.dumps(massive_conn.stats(requests=True)),
    ]
    assert not [t for t in texts if api_key in t]


_TZ_SCRIPT = """
import json
from datetime import date
from tickstock_airflow.hooks.massive import MassiveHook
hook = MassiveHook()
print(json.dumps({
    tf: [b.period.isoformat() for b in hook.get_bars("SPY", tf, date(2025, 10, 20), date(2025, 11, 20)).bars]
    for tf in ("day", "week", "month")
} | {"grouped": [b.period.isoformat() for b in hook.get_grouped_daily(date(2025, 11, 3)).bars][:1]}))
"""


@pytest.mark.parametrize("tz", ["America/Los_Angeles", "Asia/Tokyo"])
def test_period_dates_over_http_do_not_depend_on_the_process_time_zone(massive_conn, tz):
    root = Path(__file__).resolve().parents[4]
    env = {
        **os.environ,
        "TZ": tz,
        "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("include", "plugins", "devtools")),
    }
    out = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    sessions = calendar.sessions(date(2025, 10, 20), date(2025, 11, 20))  # spans the Nov 2 DST change
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "day": [d.isoformat() for d in sessions],
        "week": [d.isoformat() for d in sorted({calendar.week_start(d) for d in sessions})],
        "month": ["2025-10-01", "2025-11-01"],
        "grouped": ["2025-11-03"],
    }


# One worker process of the rate-budget test: it prepares its hook and warms its HTTP connection
# (so a cold connect does not skew arrival times at the simulator), reports ready, waits for the
# common start signal (a Redis list, not a sleep), then sends its requests through the budget.
_BUDGET_WORKER = """
import os, sys
import redis
from tickstock_airflow.hooks.massive import MassiveHook

barrier, requests, rate, burst = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
hook = MassiveHook(rate_limit=rate, rate_burst=burst, max_attempts=1)
hook.get_ticker_details("SPY")
client = redis.Redis.from_url(os.environ["TICKSTOCK_REDIS_URL"])
client.rpush(barrier + ":ready", 1)
while client.blpop([barrier + ":go"], timeout=4) is None:  # under redis-py's 5 s socket timeout
    pass
for _ in range(requests):
    assert hook.get_ticker_details("SPY") is not None
print("requests_made", hook.requests_made - 1)
"""


class TestSharedRateBudget:
    PROCESSES, REQUESTS, RATE, PER_SECOND, BURST = 4, 50, "20/s", 20, 1

    def test_without_a_budget_the_simulator_sees_the_burst(self, massive_conn):
        hook = _hook()
        for _ in range(30):
            hook.get_ticker_details("SPY")
        assert massive_conn.stats()["max_in_any_1s"] > self.PER_SECOND + self.BURST

    def test_the_hooks_burst_and_headroom_reach_the_budget(self, massive_conn, redis_client):
        hook = _hook(rate_limit="20/s", rate_burst=3, rate_headroom=0.2)
        hook.prepare()
        budget = hook._rate_budget()
        assert budget is not None
        assert (budget.burst, budget.window) == (3, pytest.approx(1 / 0.8))
        assert _hook(rate_limit="20/s")._rate_budget().window == pytest.approx(1 / 0.9)  # the default

    def test_concurrent_processes_share_one_budget(self, massive_conn, api_key, redis_client):
        total = self.PROCESSES * self.REQUESTS
        barrier = "test:rate-budget"
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BUDGET_WORKER,
                    barrier,
                    str(self.REQUESTS),
                    self.RATE,
                    str(self.BURST),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(self.PROCESSES)
        ]
        try:
            ready, deadline = 0, time.monotonic() + 300
            while ready < len(workers) and time.monotonic() < deadline:
                ready += redis_client.blpop([f"{barrier}:ready"], timeout=4) is not None
            assert ready == len(workers)
            massive_conn.reset()  # forget the warm-up requests
            massive_conn.configure(api_keys=[api_key])
            started = time.monotonic()
            redis_client.rpush(f"{barrier}:go", *[1] * self.PROCESSES)
            outputs = [w.communicate(timeout=300) for w in workers]
            elapsed = time.monotonic() - started
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
        assert [w.returncode for w in workers] == [0] * self.PROCESSES, [err[-2000:] for _, err in outputs]
        stats = massive_conn.stats()
        arrivals = sorted(stats["arrivals"])
        span = arrivals[-1] - arrivals[0]
        print(f"rate budget: {total} requests in {elapsed:.2f} s, arrivals span {span:.2f} s, ", end="")
        print(f"max in any 1 s window {stats['max_in_any_1s']}")
        assert stats["by_status"] == {"200": total}
        # A bucket of BURST at 20/s: no 1-second window holds more than rate + one bucket, and the
        # requests cannot all be sent in less than (total - BURST) / rate seconds (plus headroom).
        assert stats["max_in_any_1s"] <= self.PER_SECOND + self.BURST
        assert elapsed >= span >= 10.0
