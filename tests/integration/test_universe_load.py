"""universe_load through Airflow: simulator over HTTP, real PostgreSQL and Redis."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests

from tickstock.job_status import JobStatusStore

pytestmark = pytest.mark.integration
NEW_YORK = ZoneInfo("America/New_York")
TABLES = {
    "hour": ("ohlcv_hourly", "timestamp"),
    "day": ("ohlcv_daily", "date"),
    "week": ("ohlcv_weekly", "week_start"),
    "month": ("ohlcv_monthly", "month_start"),
}


def staged_batches(pg_conn) -> tuple[int, int]:
    """Batches listed as staged, and batch tables that exist: (0, 0) once a run has cleared up."""
    listed = pg_conn.execute("SELECT count(*) FROM ohlcv_staging_batches").fetchone()[0]
    tables = pg_conn.execute(r"SELECT count(*) FROM pg_class WHERE relname LIKE 'ohlcv\_staged\_%'").fetchone()[0]
    return listed, tables


def _counts(pg_conn, symbols):
    counts = {}
    for timeframe, (table, _column) in TABLES.items():
        rows = pg_conn.execute(
            f"SELECT symbol, count(*) FROM {table} WHERE symbol = ANY(%s) GROUP BY 1", (list(symbols),)
        ).fetchall()
        for symbol, n in rows:
            counts[(symbol, timeframe)] = n
    return counts


def _expected(symbols, hour, day, week, month):
    return {(s, tf): n for s in symbols for tf, n in zip(TABLES, (hour, day, week, month), strict=True)}


def _asset_events(run_id):
    """(source task, asset URI) of the asset events a run emitted, from Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_task_id, AssetModel.uri)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run_id)
            .order_by(AssetModel.uri)
        ).all()
    return [tuple(row) for row in rows]


def _job(redis_client, job_id):
    return JobStatusStore(redis_client).get(job_id)


def _end_states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances() if ti.task_id in ("check_bar_counts", "finish_job")}


def test_two_day_load_of_schg_and_vug(massive_conn, pg_conn, redis_client, run_dag, caplog, capfd):
    caplog.set_level("INFO")
    run = run_dag("universe_load", {"symbols": ["SCHG", "VUG"], "days": 2, "as_of": "2025-12-02", "job_id": "two-day"})
    assert run.state == "success"
    assert _counts(pg_conn, ["SCHG", "VUG"]) == _expected(["SCHG", "VUG"], 14, 2, 1, 1)
    status = _job(redis_client, "two-day")
    assert (status["status"], status["progress"], status["total_symbols"]) == ("completed", 100, 2)
    assert status["results"] == {
        "symbols_loaded": 2,
        "symbols_failed": 0,
        "hourly_bars": 28,
        "daily_bars": 4,
        "weekly_bars": 2,
        "monthly_bars": 2,
        # 2 symbols over 2 sessions: grouped daily would not save a request, so the day bars stay per symbol
        "hourly_requests": 2,
        "daily_requests": 2,
        "weekly_requests": 2,
        "monthly_requests": 2,
        "grouped_daily_requests": 0,
        "ticker_details_requests": 2,
        "errors": [],
        "splits": [],  # the splits seen in the load window (none for these two)
    }
    # 4 timeframes x 2 symbols, no grouped daily, 2 ticker details, 1 splits query for the window
    assert massive_conn.stats()["by_endpoint"] == {
        "aggs": 8,
        "grouped": 0,
        "ticker_details": 2,
        "splits": 1,
        "other": 0,
    }
    names = dict(pg_conn.execute("SELECT symbol, name FROM symbols").fetchall())
    assert names == {"SCHG": "Schwab U.S. Large-Cap Growth ETF", "VUG": "Vanguard Growth ETF"}
    assert _asset_events(run.run_id) == [
        ("check_bar_counts", f"tickstock://tickstock_db/{table}")
        for table in ("ohlcv_daily", "ohlcv_hourly", "ohlcv_monthly", "ohlcv_weekly")
    ]  # once per table per run, after the check, not from every mapped upsert
    assert staged_batches(pg_conn) == (0, 0)
    # The check closed the job (status, JOB COMPLETE, staged batches dropped): finish_job, the
    # failure path, was skipped instead of costing one more task on the run's critical path.
    assert _end_states(run) == {"check_bar_counts": "success", "finish_job": "skipped"}
    # the design document's log lines, which operators grep for (task loggers print to the console)
    logs = caplog.text + capfd.readouterr().out
    for line in (
        "=== PROCESSING JOB two-day ===",
        "Symbols in message: ['SCHG', 'VUG']",
        "Fetching SCHG hour bars (attempt 1/6)",
        "✓ API returned 2 day bars for SCHG",
        "✓ Inserted 14 bars into ohlcv_hourly for VUG",
        "JOB COMPLETE: two-day",
        "Hourly bars inserted: 28",
    ):
        assert line in logs, line


def test_ninety_day_spy_load_matches_the_calendar_and_the_simulator_field_by_field(massive_conn, pg_conn, run_dag):
    run = run_dag("universe_load", {"symbols": ["SPY"], "days": 90, "as_of": "2025-11-30"})
    assert run.state == "success"
    assert _counts(pg_conn, ["SPY"]) == _expected(["SPY"], 11, 63, 13, 3)

    for timeframe, (table, column) in TABLES.items():
        start, end = ("2025-11-26", "2025-11-28") if timeframe == "hour" else ("2025-09-02", "2025-11-28")
        response = requests.get(
            f"{massive_conn.url}/v2/aggs/ticker/SPY/range/1/{timeframe}/{start}/{end}",
            params={"limit": 50000},
            headers={"Authorization": f"Bearer {massive_conn.api_key}"},
            timeout=30,
        )
        api_bars = json.loads(response.text, parse_float=Decimal)["results"]
        stored = {
            row[0]: row[1:]
            for row in pg_conn.execute(
                f'SELECT "{column}", open, high, low, close, volume, vwap, transactions FROM {table} WHERE symbol = %s',
                ("SPY",),
            ).fetchall()
        }
        for bar in api_bars:
            start_utc = datetime.fromtimestamp(bar["t"] / 1000, UTC)
            if timeframe == "hour":
                et = start_utc.astimezone(NEW_YORK)
                if not 9 <= et.hour < (13 if et.date() == date(2025, 11, 28) else 16):
                    assert start_utc not in stored  # extended-hours bars are not loaded by default
                    continue
                key = start_utc
            else:
                key = start_utc.astimezone(NEW_YORK).date()
                assert start_utc.astimezone(NEW_YORK).time().hour == 0
            assert stored[key] == (
                bar["o"],
                bar["h"],
                bar["l"],
                bar["c"],
                Decimal(bar["v"]),
                bar.get("vw"),
                bar.get("n"),
            ), (timeframe, key)
    week_starts = [r[0] for r in pg_conn.execute("SELECT week_start FROM ohlcv_weekly").fetchall()]
    assert {d.weekday() for d in week_starts} == {6}  # Sundays


def test_rerun_is_idempotent_and_a_new_data_version_updates_values(massive_conn, pg_conn, run_dag):
    conf = {"symbols": ["SCHG"], "days": 5, "as_of": "2025-12-02", "timeframes": ["day", "week"]}
    assert run_dag("universe_load", conf).state == "success"
    first = pg_conn.execute("SELECT date, close, updated_at FROM ohlcv_daily ORDER BY date").fetchall()
    assert run_dag("universe_load", conf).state == "success"
    second = pg_conn.execute("SELECT date, close, updated_at FROM ohlcv_daily ORDER BY date").fetchall()
    assert second == first  # same rows, not even rewritten

    massive_conn.configure(data_version=2)
    assert run_dag("universe_load", conf).state == "success"
    third = pg_conn.execute("SELECT date, close FROM ohlcv_daily ORDER BY date").fetchall()
    assert [r[0] for r in third] == [r[0] for r in first]
    assert all(new[1] != old[1] for new, old in zip(third, first, strict=True))


def test_unknown_symbol_is_reported_and_the_others_load(massive_conn, pg_conn, redis_client, run_dag):
    conf = {"symbols": ["SPY", "NOSUCH", "QQQ"], "days": 2, "as_of": "2025-12-02", "job_id": "with-unknown"}
    run = run_dag("universe_load", conf)
    assert run.state == "success"
    assert _counts(pg_conn, ["SPY", "QQQ", "NOSUCH"]) == _expected(["SPY", "QQQ"], 14, 2, 1, 1)
    status = _job(redis_client, "with-unknown")
    assert status["status"] == "completed_with_errors"
    assert status["results"]["symbols_loaded"] == 2
    assert status["results"]["symbols_failed"] == 1
    assert status["results"]["errors"] == ["NOSUCH: unknown ticker: no ticker details and no bars"]
    assert pg_conn.execute("SELECT symbol, name FROM symbols WHERE symbol = 'NOSUCH'").fetchall() == [("NOSUCH", None)]
    assert _end_states(run) == {"check_bar_counts": "success", "finish_job": "skipped"}  # closed by the check


def test_a_load_whose_every_symbol_is_unknown_fails_in_finish_job(massive_conn, pg_conn, redis_client, run_dag):
    conf = {"symbols": ["NOSUCH", "NOTHERE"], "days": 2, "as_of": "2025-12-02", "job_id": "all-unknown"}
    run = run_dag("universe_load", conf)
    assert run.state == "failed"
    # Nothing to count, so the check passes; it leaves the failed job to finish_job, which fails the run.
    assert _end_states(run) == {"check_bar_counts": "success", "finish_job": "failed"}
    status = _job(redis_client, "all-unknown")
    assert status["status"] == "failed"
    assert status["results"]["symbols_loaded"] == 0
    assert sorted(status["results"]["errors"]) == [
        "NOSUCH: unknown ticker: no ticker details and no bars",
        "NOTHERE: unknown ticker: no ticker details and no bars",
    ]
    assert staged_batches(pg_conn) == (0, 0)


def test_bad_params_are_rejected_naming_the_field(massive_conn, run_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="days"):
        run_dag("universe_load", {"symbols": ["SPY"], "days": 0})
    with pytest.raises(ParamValidationError, match="symbols"):
        run_dag("universe_load", {"symbols": ["spy!"]})


def test_a_request_without_symbols_fails_with_a_job_status(massive_conn, redis_client, run_dag):
    run = run_dag("universe_load", {"job_id": "empty"})
    assert run.state == "failed"
    status = _job(redis_client, "empty")
    assert status["status"] == "failed"
    assert "symbols: no symbols" in status["message"]


def test_a_universe_combined_with_symbols_loads_every_member(massive_conn, pg_conn, redis_client, run_dag):
    from tickstock.load_request import read_universe

    conf = {
        "universe": "core_etfs",
        "symbols": ["AAPL"],
        "days": 7,
        "as_of": "2025-12-02",
        "timeframes": ["day"],
        "job_id": "universe",
    }
    assert run_dag("universe_load", conf).state == "success"
    members = {"AAPL", *read_universe("core_etfs")}
    assert _counts(pg_conn, members) == {(s, "day"): 5 for s in members}
    assert _job(redis_client, "universe")["results"]["symbols_loaded"] == len(members)


def test_grouped_daily_loads_exactly_the_per_symbol_bars_with_fewer_requests(
    massive_conn, pg_conn, redis_client, run_dag
):
    """6 symbols over 5 sessions: 5 grouped-daily requests instead of 6, and the same bars field by field.

    NEWCO lists on 2025-06-18 (mid-window), QUIET is illiquid, GONE was delisted before the window
    and NOSUCH does not exist: grouped daily has no row for them where the range endpoint has no bar.
    """
    symbols = ["SPY", "QQQ", "QUIET", "NEWCO", "GONE", "NOSUCH"]
    conf = {"symbols": symbols, "days": 7, "as_of": "2025-06-20", "job_id": "grouped"}  # 06-13 .. 06-20, 06-19 off
    run = run_dag("universe_load", conf)
    assert massive_conn.stats()["by_endpoint"] == {
        "aggs": 18,
        "grouped": 5,
        "ticker_details": 6,
        "splits": 1,
        "other": 0,
    }
    results = _job(redis_client, "grouped")["results"]
    assert {k: v for k, v in results.items() if k.endswith("_requests")} == {
        "hourly_requests": 6,
        "daily_requests": 5,
        "weekly_requests": 6,
        "monthly_requests": 6,
        "grouped_daily_requests": 5,
        "ticker_details_requests": 6,
    }
    assert results["errors"] == [
        "NOSUCH: unknown ticker: no ticker details and no bars",
        "GONE: No daily data available",
    ]
    assert run.state == "success"

    stored = {
        (symbol, day): values
        for symbol, day, *values in pg_conn.execute(
            "SELECT symbol, date, open, high, low, close, volume, vwap, transactions FROM ohlcv_daily"
        ).fetchall()
    }
    expected = {}
    for symbol in symbols:
        response = requests.get(
            f"{massive_conn.url}/v2/aggs/ticker/{symbol}/range/1/day/2025-06-13/2025-06-20",
            params={"limit": 50000},
            headers={"Authorization": f"Bearer {massive_conn.api_key}"},
            timeout=30,
        )
        for bar in json.loads(response.text, parse_float=Decimal).get("results", []):
            day = datetime.fromtimestamp(bar["t"] / 1000, UTC).astimezone(NEW_YORK).date()
            expected[(symbol, day)] = [
                bar["o"],
                bar["h"],
                bar["l"],
                bar["c"],
                Decimal(bar["v"]),
                bar.get("vw"),
                bar.get("n"),
            ]
    assert stored == expected
    assert {day for symbol, day in stored if symbol == "NEWCO"} == {date(2025, 6, 18), date(2025, 6, 20)}
    assert results["daily_bars"] == len(expected)
    assert staged_batches(pg_conn) == (0, 0)
