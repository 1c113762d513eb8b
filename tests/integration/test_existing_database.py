"""The loader on TickStock's existing database: upgrade a brownfield schema, then load through Airflow.

Each variant (``tests/sql/brownfield``) is its own database on the embedded server; the
``tickstock_db`` connection is pointed at it for the test. The acceptance loads must give the
exact counts of a new database, keep every pre-existing row except the bars they re-fetched,
and rewrite nothing on a rerun.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tickstock.job_status import JobStatusStore
from tickstock.schema import current_revision, head_revision, upgrade
from tickstock.timeframes import OHLCV_TABLES

pytestmark = pytest.mark.integration

TIME_COLUMNS = {t.table: t.time_column for t in OHLCV_TABLES.values()}
TWO_DAY = {"symbols": ["SCHG", "VUG"], "days": 2, "as_of": "2025-12-02"}
NINETY_DAY = {"symbols": ["SPY"], "days": 90, "as_of": "2025-11-30"}
# The pre-existing SCHG bars each variant holds on keys the two-day load fetches again.
REFETCHED = {
    "surrogate_ids": {
        ("ohlcv_hourly", "SCHG", "2025-12-01T15:00:00"),  # naive UTC: 10:00 ET
        ("ohlcv_daily", "SCHG", "2025-12-01"),
        ("ohlcv_weekly", "SCHG", "2025-11-30"),
        ("ohlcv_monthly", "SCHG", "2025-12-01"),
    },
    "natural_keys": {
        ("ohlcv_hourly", "SCHG", "2025-12-02T19:00:00+00:00"),
        ("ohlcv_daily", "SCHG", "2025-12-02"),
        ("ohlcv_weekly", "SCHG", "2025-11-30"),
        ("ohlcv_monthly", "SCHG", "2025-12-01"),
    },
}


def _use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from tickstock_dev.services import postgres_connection

    monkeypatch.setenv("AIRFLOW_CONN_TICKSTOCK_DB", json.dumps(postgres_connection(url)))


def _bars(conn: psycopg.Connection) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every OHLCV row (as JSON, all columns, with xmin) by (table, symbol, time key)."""
    rows = {}
    for table, column in TIME_COLUMNS.items():
        for (row,) in conn.execute(f"SELECT to_jsonb(t) || jsonb_build_object('xmin', t.xmin::text) FROM {table} t"):
            rows[(table, row["symbol"], row[column])] = row
    return rows


def _symbols(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    return {row["symbol"]: row for (row,) in conn.execute("SELECT to_jsonb(s) FROM symbols s")}


def _counts(conn: psycopg.Connection, symbols: list[str]) -> dict[tuple[str, str], int]:
    counts = {}
    for table in TIME_COLUMNS:
        for symbol, n in conn.execute(
            f"SELECT symbol, count(*) FROM {table} WHERE symbol = ANY(%s) GROUP BY 1", (symbols,)
        ):
            counts[(symbol, table)] = n
    return counts


def _expected(symbols: list[str], hourly: int, daily: int, weekly: int, monthly: int) -> dict[tuple[str, str], int]:
    return {(s, t): n for s in symbols for t, n in zip(TIME_COLUMNS, (hourly, daily, weekly, monthly), strict=True)}


def _without_xmin(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "xmin"}


@pytest.mark.parametrize("variant", ["surrogate_ids", "natural_keys"])
def test_acceptance_loads_on_an_upgraded_existing_database(
    variant, brownfield, catalog, massive_conn, redis_client, run_dag, monkeypatch
):
    url = brownfield(variant)
    assert upgrade(url).after == head_revision()
    _use_database(monkeypatch, url)
    with psycopg.connect(url) as conn:
        bars_before, symbols_before = _bars(conn), _symbols(conn)
        schema_before = catalog(conn)

    assert run_dag("universe_load", {**TWO_DAY, "job_id": f"{variant}-two-day"}).state == "success"
    assert run_dag("universe_load", {**NINETY_DAY, "job_id": f"{variant}-ninety-day"}).state == "success"
    status = JobStatusStore(redis_client).get(f"{variant}-two-day")
    assert (status["status"], status["results"]["hourly_bars"], status["results"]["daily_bars"]) == ("completed", 28, 4)

    with psycopg.connect(url) as conn:
        assert _counts(conn, ["SCHG", "VUG"]) == _expected(["SCHG", "VUG"], 14, 2, 1, 1)
        assert _counts(conn, ["SPY"]) == _expected(["SPY"], 11, 63, 13, 3)
        bars_after, symbols_after = _bars(conn), _symbols(conn)

    # Pre-existing rows: exactly the re-fetched SCHG bars changed, and only in their values.
    changed = {key for key, row in bars_before.items() if _without_xmin(bars_after[key]) != _without_xmin(row)}
    assert changed == REFETCHED[variant]
    for key in changed:
        old, new = bars_before[key], bars_after[key]
        assert (new["open"], new["volume"]) != (old["open"], old["volume"])  # the API's bar replaced the stale one
        assert {k: new[k] for k in ("created_at", *(["id"] if "id" in old else []))} == {
            k: old[k] for k in ("created_at", *(["id"] if "id" in old else []))
        }
        assert new["vwap"] is not None
        assert new["transactions"] is not None
    assert symbols_after["AAPL"] == symbols_before["AAPL"]
    assert symbols_after["SCHG"]["name"] == "Schwab U.S. Large-Cap Growth ETF"
    if variant == "surrogate_ids":
        assert symbols_after["SCHG"]["issuer"] == "Schwab"  # the user's data the API does not have is kept
        assert symbols_after["SCHG"]["id"] == symbols_before["SCHG"]["id"]
        hourly = sorted(k[2] for k in bars_after if k[:2] == ("ohlcv_hourly", "SCHG"))
        # naive timestamps hold UTC: 09:00-15:00 ET = 14:00-20:00 UTC on both sessions
        assert hourly == [f"2025-12-0{d}T{h}:00:00" for d in (1, 2) for h in range(14, 21)]
        vug = [
            row
            for (table, symbol, _), row in bars_after.items()
            if symbol == "VUG" and table in {"ohlcv_hourly", "ohlcv_daily"}
        ]
        assert {row["source"] for row in vug} == {"legacy"}  # the user's column default fills new rows

    # A rerun rewrites nothing (NUMERIC(12,4), double precision, a NUMERIC(10,2) vwap compare after the cast).
    assert run_dag("universe_load", {**TWO_DAY, "job_id": f"{variant}-rerun"}).state == "success"
    with psycopg.connect(url) as conn:
        assert _bars(conn) == bars_after
        # and a second upgrade is a no-op
    assert upgrade(url).before == head_revision()
    with psycopg.connect(url) as conn:
        assert catalog(conn) == schema_before
        assert _bars(conn) == bars_after


def test_nightly_refresh_on_an_existing_database_with_naive_hourly_timestamps(
    brownfield, massive_conn, run_dag, monkeypatch
):
    url = brownfield("surrogate_ids")
    upgrade(url)
    _use_database(monkeypatch, url)
    assert run_dag("universe_load", TWO_DAY).state == "success"
    massive_conn.configure(now="2025-12-03T21:00:00Z")
    assert run_dag("nightly_refresh", {"as_of": "2025-12-03"}).state == "success"
    with psycopg.connect(url) as conn:
        hours = conn.execute(
            "SELECT \"timestamp\"::text FROM ohlcv_hourly WHERE symbol = 'VUG' AND \"timestamp\" >= '2025-12-03' ORDER BY 1"
        ).fetchall()
        daily = conn.execute("SELECT count(*) FROM ohlcv_daily WHERE symbol = 'VUG'").fetchone()
    assert [h[0] for h in hours] == [f"2025-12-03 {h}:00:00" for h in range(14, 21)]
    assert daily == (3,)


def test_a_load_against_a_database_behind_head_fails_in_plan_load_before_any_request(
    new_database, sim, massive_conn, redis_client, run_dag, monkeypatch
):
    url = new_database("behind_head")
    _use_database(monkeypatch, url)
    run = run_dag("universe_load", {**TWO_DAY, "job_id": "behind-head"})
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["plan_load"] == "failed"
    assert states["register_symbols"] == "upstream_failed"
    # finish_job finds no plan and fails at once: no retries spent on a run that cannot finish.
    finish = next(ti for ti in run.get_task_instances() if ti.task_id == "finish_job")
    assert (finish.state, finish.try_number) == ("failed", 1)
    status = JobStatusStore(redis_client).get("behind-head")
    assert status["status"] == "failed"
    assert "run `python -m tickstock.schema upgrade`" in status["message"]
    assert sim.stats()["total"] == 0  # not one API request
    with psycopg.connect(url) as conn:
        assert current_revision(conn) is None
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

    refresh = run_dag("nightly_refresh", {"as_of": "2025-12-02", "job_id": "refresh-behind-head"})
    assert refresh.state == "failed"
    assert (
        "run `python -m tickstock.schema upgrade`" in JobStatusStore(redis_client).get("refresh-behind-head")["message"]
    )
    assert sim.stats()["total"] == 0
