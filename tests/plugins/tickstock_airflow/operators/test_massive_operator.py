"""MassiveBarsToStagingOperator against the simulator and the real test database."""

from __future__ import annotations

import json
from datetime import date

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from tickstock import calendar
from tickstock.staging import merge_staged
from tickstock_airflow.hooks.massive import MassiveAuthError
from tickstock_airflow.operators.massive import MassiveBarsToStagingOperator, normalise_symbols

pytestmark = pytest.mark.integration

START, END = date(2025, 11, 3), date(2025, 12, 2)
SESSIONS = calendar.sessions(START, END)


def _operator(**kwargs) -> MassiveBarsToStagingOperator:
    options = {
        "task_id": "fetch_bars",
        "symbols": ["SPY", "SCHG", "VUG"],
        "timeframe": "day",
        "start": START,
        "end": END,
        "staging_key": "manual__1|day|0",
        "max_attempts": 3,
        "retry_base_delay": 0.01,
    }
    return MassiveBarsToStagingOperator(**options | kwargs)


def _staged(pg_conn, key: str) -> dict[str, int]:
    rows = pg_conn.execute(
        "SELECT symbol, count(*) FROM ohlcv_staging WHERE load_key = %s GROUP BY symbol ORDER BY symbol",
        [key],
    ).fetchall()
    return dict(rows)


def test_execute_stages_every_symbols_bars_and_returns_only_counters(massive_conn, pg_conn):
    result = _operator(symbols=["SPY", "SCHG", "ZZZZQ"]).execute(context={})
    assert result == {
        "staging_key": "manual__1|day|0",
        "timeframe": "day",
        "bars": {"SPY": len(SESSIONS), "SCHG": len(SESSIONS), "ZZZZQ": 0},  # unknown: no data, not a failure
        "failed": {},
        "invalid": {},
        "requests": 3,
    }
    assert json.loads(json.dumps(result)) == result
    assert _staged(pg_conn, "manual__1|day|0") == {"SCHG": len(SESSIONS), "SPY": len(SESSIONS)}
    merged = merge_staged(pg_conn, "manual__1|day|0", "day")
    assert merged.inserted.total() == 2 * len(SESSIONS)
    dates = pg_conn.execute("SELECT DISTINCT date FROM ohlcv_daily ORDER BY 1").fetchall()
    assert [d for (d,) in dates] == SESSIONS


def test_a_failing_symbol_is_reported_and_the_rest_of_the_batch_is_staged(massive_conn, pg_conn):
    # One worker, so the first request (SPY's) is the one that meets the injected 503s.
    massive_conn.configure(fail_next_n=3, fail_next_status=503)
    result = _operator(max_workers=1).execute(context={})
    assert result["bars"] == {"SCHG": len(SESSIONS), "VUG": len(SESSIONS)}
    assert list(result["failed"]) == ["SPY"]
    assert "SPY day bars: giving up after 3 attempts; last: server error 503" in result["failed"]["SPY"]
    assert result["requests"] == 5
    assert massive_conn.stats()["by_endpoint_status"]["aggs"] == {"503": 3, "200": 2}
    assert _staged(pg_conn, "manual__1|day|0") == {"SCHG": len(SESSIONS), "VUG": len(SESSIONS)}


def test_an_auth_error_fails_the_task(massive_conn, pg_conn):
    massive_conn.configure(forbidden_timespans=["week"])
    with pytest.raises(MassiveAuthError, match="HTTP 403"):
        _operator(timeframe="week").execute(context={})
    assert _staged(pg_conn, "manual__1|day|0") == {}


def test_every_symbol_failing_for_a_systemic_reason_fails_the_task(massive_conn, pg_conn):
    massive_conn.configure(error_rate=1.0, error_status=500)
    with pytest.raises(AirflowException, match=r"all 3 symbols failed; e.g. SPY: .*server error 500"):
        _operator(max_workers=3).execute(context={})


def test_invalid_bars_are_reported_and_kept_out(massive_conn, pg_conn):
    massive_conn.configure(duplicate_bar=True)
    result = _operator(symbols=["SPY", "VUG"], timeframe="week").execute(context={})
    weeks = sorted({calendar.week_start(d) for d in SESSIONS})
    assert result["bars"] == {"SPY": len(weeks), "VUG": len(weeks)}
    assert result["invalid"] == {
        s: [f"{calendar.et_midnight(weeks[0]).isoformat()}: duplicate of an identical bar (one kept)"]
        for s in ("SPY", "VUG")
    }


def test_hourly_batch_keeps_the_regular_session_by_default(massive_conn, pg_conn):
    day = date(2025, 11, 28)  # early close: four regular hourly bars
    regular = _operator(timeframe="hour", start=day, end=day, symbols=["SPY"]).execute(context={})
    extended = _operator(timeframe="hour", start=day, end=day, symbols=["SPY"], extended_hours=True)
    assert regular["bars"] == {"SPY": 4}
    assert extended.execute(context={})["bars"] == {"SPY": len(calendar.hour_starts(day, extended=True))}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["spy", "SPY", " qqq "], ["SPY", "QQQ"]),
        ('["SPY", "VUG"]', ["SPY", "VUG"]),
        ("SPY, VUG", ["SPY", "VUG"]),
    ],
)
def test_symbols_may_arrive_as_rendered_strings(value, expected):
    assert normalise_symbols(value) == expected
