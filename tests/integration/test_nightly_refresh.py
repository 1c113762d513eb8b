"""nightly_refresh through Airflow: incremental refresh, gap backfill, holiday economy."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

TABLES = {
    "ohlcv_hourly": "timestamp",
    "ohlcv_daily": "date",
    "ohlcv_weekly": "week_start",
    "ohlcv_monthly": "month_start",
}


def _snapshot(pg_conn):
    return {
        table: pg_conn.execute(
            f'SELECT symbol, "{column}", open, high, low, close, volume, vwap, transactions, updated_at '
            f"FROM {table} ORDER BY 1, 2"
        ).fetchall()
        for table, column in TABLES.items()
    }


def _bar_requests(sim):
    by_endpoint = sim.stats()["by_endpoint"]
    return by_endpoint.get("aggs", 0), by_endpoint.get("grouped", 0)


def _since(sim, before):
    now = _bar_requests(sim)
    return now[0] - before[0], now[1] - before[1]


def test_next_session_adds_exactly_the_new_bars_and_updates_open_periods(massive_conn, pg_conn, run_dag):
    assert run_dag("universe_load", {"symbols": ["SPY", "SCHG"], "days": 30, "as_of": "2025-12-02"}).state == "success"
    before = _snapshot(pg_conn)

    massive_conn.configure(now="2025-12-03T21:00:00Z")
    requests_before = _bar_requests(massive_conn)
    assert run_dag("nightly_refresh", {"as_of": "2025-12-03"}).state == "success"
    after = _snapshot(pg_conn)

    def keys(snapshot, table):
        return {(r[0], r[1]) for r in snapshot[table]}

    new_daily = keys(after, "ohlcv_daily") - keys(before, "ohlcv_daily")
    assert {str(day) for _symbol, day in new_daily} == {"2025-12-03"}
    assert len(new_daily) == 2
    assert len(keys(after, "ohlcv_hourly") - keys(before, "ohlcv_hourly")) == 14  # 7 regular hours x 2 symbols
    assert keys(after, "ohlcv_weekly") == keys(before, "ohlcv_weekly")
    assert keys(after, "ohlcv_monthly") == keys(before, "ohlcv_monthly")
    week_before = {r[:2]: r[2:9] for r in before["ohlcv_weekly"]}
    changed_weeks = [r[:2] for r in after["ohlcv_weekly"] if week_before[r[:2]] != r[2:9]]
    assert sorted(str(w) for _s, w in changed_weeks) == ["2025-11-30", "2025-11-30"]  # the open week grew
    # day, week, month and hour for 2 symbols: one range request each, nothing else
    assert _since(massive_conn, requests_before) == (8, 0)


def test_deleted_bars_are_restored_exactly_and_nothing_else_changes(massive_conn, pg_conn, run_dag):
    assert (
        run_dag(
            "universe_load",
            {"symbols": ["QQQ"], "days": 400, "as_of": "2025-12-02", "timeframes": ["day", "week", "month"]},
        ).state
        == "success"
    )
    complete = _snapshot(pg_conn)
    pg_conn.execute("DELETE FROM ohlcv_daily WHERE date = '2025-03-12'")  # a weekday in March
    pg_conn.execute("DELETE FROM ohlcv_daily WHERE date BETWEEN '2025-04-13' AND '2025-04-19'")  # a whole week
    pg_conn.execute("DELETE FROM ohlcv_weekly WHERE week_start = '2025-06-08'")
    pg_conn.execute("DELETE FROM ohlcv_monthly WHERE month_start = '2025-08-01'")

    assert run_dag("nightly_refresh", {"as_of": "2025-12-02", "hourly_days": 0}).state == "success"
    restored = _snapshot(pg_conn)
    for table in TABLES:
        assert [r[:9] for r in restored[table]] == [r[:9] for r in complete[table]], table
        untouched_before = {r[:2]: r[9] for r in complete[table]}
        changed = [r[:2] for r in restored[table] if untouched_before.get(r[:2]) != r[9]]
        assert {str(k[1]) for k in changed} <= {
            "2025-03-12",
            "2025-04-14",
            "2025-04-15",
            "2025-04-16",
            "2025-04-17",
            "2025-06-08",
            "2025-08-01",
        }, table


def test_a_holiday_run_makes_no_bar_requests(massive_conn, pg_conn, run_dag):
    massive_conn.configure(now="2025-11-26T21:00:00Z")
    assert run_dag("universe_load", {"symbols": ["SPY"], "days": 10, "as_of": "2025-11-26"}).state == "success"
    massive_conn.configure(now="2025-11-27T21:00:00Z")
    requests_before = _bar_requests(massive_conn)
    assert run_dag("nightly_refresh", {"as_of": "2025-11-27"}).state == "success"
    assert _since(massive_conn, requests_before) == (0, 0)
