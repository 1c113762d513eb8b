from __future__ import annotations

from tickstock.job_status import JobState
from tickstock.results import summarise


def _batch(timeframe, bars, failed=None, invalid=None, requests=0, source="custom_bars"):
    return {
        "timeframe": timeframe,
        "bars": bars,
        "failed": failed or {},
        "invalid": invalid or {},
        "requests": requests,
        "source": source,
    }


def test_clean_load_is_completed_with_design_document_totals():
    batches = [
        _batch("hour", {"SCHG": 14, "VUG": 14}, requests=2),
        _batch("day", {"SCHG": 2, "VUG": 2}, requests=3),  # one retried
        _batch("week", {"SCHG": 1, "VUG": 1}, requests=2),
        _batch("month", {"SCHG": 1, "VUG": 1}, requests=2),
    ]
    summary = summarise(symbols=["SCHG", "VUG"], batch_results=batches, planned_batches=4, details_requests=2)
    summary.check_passed = True
    assert summary.state is JobState.COMPLETED
    assert summary.results() == {
        "symbols_loaded": 2,
        "symbols_failed": 0,
        "hourly_bars": 28,
        "daily_bars": 4,
        "weekly_bars": 2,
        "monthly_bars": 2,
        "hourly_requests": 2,
        "daily_requests": 3,
        "weekly_requests": 2,
        "monthly_requests": 2,
        "grouped_daily_requests": 0,
        "ticker_details_requests": 2,
        "errors": [],
    }
    assert summary.message() == "Successfully loaded 2 symbols"


def test_unknown_and_failed_symbols_are_errors_never_zero_bar_successes():
    batches = [_batch("day", {"SPY": 63, "ZZZZ": 0, "QQQ": 0}, failed={"QQQ": "HTTP 500 after 4 attempts"})]
    summary = summarise(
        symbols=["SPY", "ZZZZ", "QQQ"], batch_results=batches, planned_batches=1, unknown_symbols=["ZZZZ"]
    )
    summary.check_passed = True
    assert summary.state is JobState.COMPLETED_WITH_ERRORS
    assert summary.loaded == ["SPY"]
    assert sorted(summary.results()["errors"]) == [
        "QQQ: day bars: HTTP 500 after 4 attempts",
        "ZZZZ: unknown ticker: no ticker details and no bars",
    ]


def test_missing_batches_or_a_failed_check_fail_the_job():
    summary = summarise(symbols=["SPY"], batch_results=[_batch("day", {"SPY": 63})], planned_batches=2)
    summary.check_passed = True
    assert summary.state is JobState.FAILED
    assert "1 fetch/upsert batch(es) failed" in summary.message()
    summary = summarise(symbols=["SPY"], batch_results=[_batch("day", {"SPY": 62})], planned_batches=1)
    summary.check_passed, summary.check_summary = False, "1 short: SPY/day=62/63"
    assert summary.state is JobState.FAILED
    assert summary.results()["errors"] == ["bar-count check failed: 1 short: SPY/day=62/63"]


def test_a_symbol_without_daily_bars_failed_and_invalid_bars_are_reported():
    batches = [
        _batch("day", {"SPY": 63}),
        _batch("hour", {"AAA": 7}, invalid={"SPY": ["high < open at 14:00"]}),
    ]
    summary = summarise(symbols=["SPY", "AAA"], batch_results=batches, planned_batches=2)
    assert summary.failed == {
        "SPY": "hour bars rejected: high < open at 14:00",
        "AAA": "No daily data available",
    }


def test_grouped_daily_requests_are_counted_as_day_requests_and_named():
    batches = [
        _batch("day", {"SPY": 63, "QQQ": 63}, requests=63, source="grouped_daily"),
        _batch("day", {"SPY": 62, "QQQ": 62}, requests=62, source="grouped_daily"),
        _batch("week", {"SPY": 13, "QQQ": 13}, requests=2),
    ]
    results = summarise(symbols=["SPY", "QQQ"], batch_results=batches, planned_batches=3).results()
    assert (results["daily_requests"], results["grouped_daily_requests"], results["weekly_requests"]) == (125, 125, 2)
    assert results["daily_bars"] == 250
