"""Split-aware history through Airflow: simulator splits, real PostgreSQL and Redis.

After a split every stored adjusted bar of the symbol must equal what the API now serves. The
refresh finds splits with one query per run (from the stored watermark), reloads the split
symbol's whole history in every table it has and leaves the other symbols' rows alone.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tickstock.job_status import JobStatusStore

pytestmark = pytest.mark.integration
NEW_YORK = ZoneInfo("America/New_York")
TABLES = {
    "hour": ("ohlcv_hourly", "timestamp"),
    "day": ("ohlcv_daily", "date"),
    "week": ("ohlcv_weekly", "week_start"),
    "month": ("ohlcv_monthly", "month_start"),
}
SYMBOLS = ["SPY", "SCHG", "VUG"]

# Request arithmetic of one refresh evening after a load (named parts, so a change in the usual
# refresh re-bases one number): every symbol that did not split costs one range request per
# timeframe (open week, open month, hourly window, and the 2-session daily revision window: with
# 2 symbols grouped daily is not cheaper than one range request each, see use_grouped_daily).
USUAL_PER_OTHER_SYMBOL = 4
# A split symbol's usual requests are replaced by its reload: one range request per timeframe
# from its first stored bar (a year of days, weeks or months and a few hourly sessions each fit
# one page of 50,000 base aggregates).
RELOAD_PER_SPLIT_SYMBOL = 4
SPLITS_QUERY = 1  # one /stocks/v1/splits query per run; < 5,000 splits in range is one page


# An evening on which one of the three stored symbols split: the other two make their usual requests,
# the split symbol reloads its whole history in every table, plus the run's one splits query.
ONE_SPLIT_EVENING = {
    "aggs": 2 * USUAL_PER_OTHER_SYMBOL + 1 * RELOAD_PER_SPLIT_SYMBOL,
    "grouped": 0,
    "splits": SPLITS_QUERY,
    "ticker_details": 0,
}


def _requests(sim):
    by_endpoint = sim.stats()["by_endpoint"]
    return {kind: by_endpoint.get(kind, 0) for kind in ("aggs", "grouped", "splits", "ticker_details")}


def _delta(sim, before):
    now = _requests(sim)
    return {kind: now[kind] - before[kind] for kind in now}


def _rows(pg_conn, symbol, timeframe):
    table, column = TABLES[timeframe]
    return {
        row[0]: row[1:]
        for row in pg_conn.execute(
            f'SELECT "{column}", open, high, low, close, volume, vwap, transactions, updated_at '
            f"FROM {table} WHERE symbol = %s ORDER BY 1",
            (symbol,),
        ).fetchall()
    }


def _api_bars(sim, symbol, timeframe, start, end):
    """The simulator's adjusted bars keyed like the tables, values exactly as the JSON text."""
    response = sim.get(f"/v2/aggs/ticker/{symbol}/range/1/{timeframe}/{start}/{end}", params={"limit": 50000})
    body = json.loads(response.text, parse_float=Decimal)
    assert response.status_code == 200
    assert "next_url" not in body
    out = {}
    for bar in body.get("results", []):
        start_utc = datetime.fromtimestamp(bar["t"] / 1000, UTC)
        key = start_utc if timeframe == "hour" else start_utc.astimezone(NEW_YORK).date()
        out[key] = (bar["o"], bar["h"], bar["l"], bar["c"], Decimal(bar["v"]), bar.get("vw"), bar.get("n"))
    return out


def _assert_equals_api(sim, pg_conn, symbol, as_of):
    """Every stored bar of ``symbol`` in all four tables equals the API's adjusted bar, field by field."""
    for timeframe in TABLES:
        stored = _rows(pg_conn, symbol, timeframe)
        assert stored, timeframe
        first = min(stored)
        first_day = first.astimezone(NEW_YORK).date() if timeframe == "hour" else first
        api = _api_bars(sim, symbol, timeframe, first_day, as_of)
        for key, values in stored.items():
            assert values[:7] == api[key], (symbol, timeframe, key)
        if timeframe != "hour":  # hourly: the API also serves extended hours, which are not loaded
            assert set(stored) == set(api), (symbol, timeframe)


def _changed(before, after):
    return sorted(key for key, values in after.items() if key not in before or before[key][7] != values[7])


def _job(redis_client, job_id):
    return JobStatusStore(redis_client).get(job_id)


def _watermark(pg_conn):
    row = pg_conn.execute("SELECT checked_through FROM split_watermark").fetchone()
    return row[0] if row else None


def _all_rows(pg_conn, symbols):
    return {(s, tf): _rows(pg_conn, s, tf) for s in symbols for tf in TABLES}


def _refresh(sim, run_dag, redis_client, *, now, as_of, job_id):
    sim.configure(now=now)
    before = _requests(sim)
    run = run_dag("nightly_refresh", {"as_of": as_of, "job_id": job_id})
    return run, _delta(sim, before), _job(redis_client, job_id)


def _assert_others_untouched(before, after, others, written_keys):
    """Rows of symbols that did not split change only where any refresh writes (new/open bars)."""
    for symbol in others:
        for timeframe in TABLES:
            changed = _changed(before[(symbol, timeframe)], after[(symbol, timeframe)])
            assert {_day_of(k) for k in changed} <= written_keys[timeframe], (symbol, timeframe, changed)


def _day_of(key):
    return key.astimezone(NEW_YORK).date() if isinstance(key, datetime) else key


def test_forward_reverse_and_late_listed_splits_reload_exactly_the_split_symbol(
    massive_conn, pg_conn, redis_client, run_dag
):
    load = run_dag("universe_load", {"symbols": SYMBOLS, "days": 365, "as_of": "2025-12-02", "job_id": "load"})
    assert load.state == "success"
    assert _job(redis_client, "load")["results"]["splits"] == []  # none of them split in the window
    assert _watermark(pg_conn) == date(2025, 12, 2)
    basis = pg_conn.execute("SELECT DISTINCT adjusted FROM adjustment_basis").fetchall()
    assert basis == [(True,)]

    # 4:1 forward split of SCHG on the next session (Wednesday 2025-12-03)
    massive_conn.configure(splits=["SCHG:2025-12-03:4:1"])
    before = _all_rows(pg_conn, SYMBOLS)
    run, made, status = _refresh(
        massive_conn, run_dag, redis_client, now="2025-12-03T22:00:00Z", as_of="2025-12-03", job_id="fwd"
    )
    assert run.state == "success"
    assert made == ONE_SPLIT_EVENING
    _assert_equals_api(massive_conn, pg_conn, "SCHG", "2025-12-03")
    after = _all_rows(pg_conn, SYMBOLS)
    schg_rows = sum(len(after[("SCHG", tf)]) for tf in TABLES)
    # every SCHG row was restated (prices / 4) or is new; the 1-year load's close of 2025-06-02 proves it
    old_close = before[("SCHG", "day")][date(2025, 6, 2)][3]
    assert after[("SCHG", "day")][date(2025, 6, 2)][3] == old_close / 4
    assert status["status"] == "completed"
    assert status["results"]["splits"] == [
        {
            "symbol": "SCHG",
            "date": "2025-12-03",
            "ratio": "4:1",
            "adjustment_type": "forward_split",
            "rows_rewritten": schg_rows,
        }
    ]
    usual_keys = {
        "hour": {date(2025, 12, 2), date(2025, 12, 3)},
        "day": {date(2025, 12, 2), date(2025, 12, 3)},
        "week": {date(2025, 11, 30)},
        "month": {date(2025, 12, 1)},
    }
    _assert_others_untouched(before, after, ["SPY", "VUG"], usual_keys)
    assert _watermark(pg_conn) == date(2025, 12, 3)

    # 1:10 reverse split of VUG on the session after; SCHG's split is behind the watermark now
    massive_conn.configure(splits=["SCHG:2025-12-03:4:1", "VUG:2025-12-04:1:10"])
    before = after
    run, made, status = _refresh(
        massive_conn, run_dag, redis_client, now="2025-12-04T22:00:00Z", as_of="2025-12-04", job_id="rev"
    )
    assert run.state == "success"
    assert made == ONE_SPLIT_EVENING
    _assert_equals_api(massive_conn, pg_conn, "VUG", "2025-12-04")
    _assert_equals_api(massive_conn, pg_conn, "SCHG", "2025-12-04")
    after = _all_rows(pg_conn, SYMBOLS)
    assert after[("VUG", "day")][date(2025, 6, 2)][3] == before[("VUG", "day")][date(2025, 6, 2)][3] * 10
    vug_rows = sum(len(after[("VUG", tf)]) for tf in TABLES)
    assert [
        (s["symbol"], s["ratio"], s["adjustment_type"], s["rows_rewritten"]) for s in status["results"]["splits"]
    ] == [("VUG", "1:10", "reverse_split", vug_rows)]
    usual_keys = {
        "hour": {date(2025, 12, 3), date(2025, 12, 4)},
        "day": {date(2025, 12, 3), date(2025, 12, 4)},
        "week": {date(2025, 11, 30)},
        "month": {date(2025, 12, 1)},
    }
    _assert_others_untouched(before, after, ["SPY", "SCHG"], usual_keys)
    assert _watermark(pg_conn) == date(2025, 12, 4)

    # A split Massive lists a day late: SPY's 2:1 of 12-04 appears only after that evening's run.
    # Friday's query overlaps the watermark, finds it, and skips the two splits already reloaded.
    massive_conn.configure(splits=["SCHG:2025-12-03:4:1", "VUG:2025-12-04:1:10", "SPY:2025-12-04:2:1"])
    before = after
    run, made, status = _refresh(
        massive_conn, run_dag, redis_client, now="2025-12-05T22:00:00Z", as_of="2025-12-05", job_id="late"
    )
    assert run.state == "success"
    assert made == ONE_SPLIT_EVENING
    assert [(s["symbol"], s["date"], s["ratio"]) for s in status["results"]["splits"]] == [("SPY", "2025-12-04", "2:1")]
    _assert_equals_api(massive_conn, pg_conn, "SPY", "2025-12-05")
    after = _all_rows(pg_conn, SYMBOLS)
    usual_keys = {
        "hour": {date(2025, 12, 4), date(2025, 12, 5)},
        "day": {date(2025, 12, 4), date(2025, 12, 5)},
        "week": {date(2025, 11, 30)},
        "month": {date(2025, 12, 1)},
    }
    _assert_others_untouched(before, after, ["SCHG", "VUG"], usual_keys)
    reloads = pg_conn.execute("SELECT symbol, execution_date FROM split_reloads ORDER BY 2, 1").fetchall()
    assert reloads == [("SCHG", date(2025, 12, 3)), ("SPY", date(2025, 12, 4)), ("VUG", date(2025, 12, 4))]


def test_a_skipped_evening_a_failed_run_and_odd_split_dates_lose_no_split(massive_conn, pg_conn, redis_client, run_dag):
    load = run_dag("universe_load", {"symbols": SYMBOLS, "days": 60, "as_of": "2025-12-02"})
    assert load.state == "success"
    assert _watermark(pg_conn) == date(2025, 12, 2)
    # SPY splits twice in range (a 2:1 on the skipped Wednesday, a 5% stock dividend dated Saturday
    # 12-06, not a session); AAPL, which we do not store, splits too and must cost nothing.
    massive_conn.configure(splits=["SPY:2025-12-03:2:1", "SPY:2025-12-06:21:20:stock_dividend", "AAPL:2025-12-04:3:1"])
    before = _all_rows(pg_conn, SYMBOLS)

    # Wednesday's and Thursday's refreshes never ran. Friday's fails its bar-count check (a bar on
    # a Sunday, the signature of a time-zone bug; a failed check is final, no retries), so the
    # watermark must stay where it was although SPY's reload itself went through.
    bogus = ("SCHG", date(2025, 11, 30), 1, 1, 1, 1, 1)
    pg_conn.execute(
        "INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        bogus,
    )
    run, made, status = _refresh(
        massive_conn, run_dag, redis_client, now="2025-12-05T22:00:00Z", as_of="2025-12-05", job_id="fail"
    )
    assert run.state == "failed"
    assert made["splits"] == SPLITS_QUERY
    assert status["status"] == "failed"
    assert [s["symbol"] for s in status["results"]["splits"]] == ["SPY"]  # 12-06 is after as_of
    assert _watermark(pg_conn) == date(2025, 12, 2)
    pg_conn.execute("DELETE FROM ohlcv_daily WHERE symbol = 'SCHG' AND date = '2025-11-30'")

    # Monday's refresh asks for 12-03..12-08 and reloads SPY once for both of its events.
    run, made, status = _refresh(
        massive_conn, run_dag, redis_client, now="2025-12-08T22:00:00Z", as_of="2025-12-08", job_id="mon"
    )
    assert run.state == "success"
    assert made["splits"] == SPLITS_QUERY
    _assert_equals_api(massive_conn, pg_conn, "SPY", "2025-12-08")
    after = _all_rows(pg_conn, SYMBOLS)
    spy_rows = sum(len(after[("SPY", tf)]) for tf in TABLES)
    assert [(s["symbol"], s["date"], s["ratio"], s["rows_rewritten"]) for s in status["results"]["splits"]] == [
        ("SPY", "2025-12-03", "2:1", spy_rows),
        ("SPY", "2025-12-06", "21:20", spy_rows),
    ]
    # 2:1 then 21:20 (x 20/21): the old close of 2025-11-03, restated twice
    old = before[("SPY", "day")][date(2025, 11, 3)][3]
    assert abs(after[("SPY", "day")][date(2025, 11, 3)][3] - old / 2 * 20 / 21) < Decimal("1e-9")
    assert _watermark(pg_conn) == date(2025, 12, 8)
    for symbol in ("SCHG", "VUG"):
        assert _changed(before[(symbol, "day")], after[(symbol, "day")]) == [
            date(2025, 12, 3),
            date(2025, 12, 4),
            date(2025, 12, 5),
            date(2025, 12, 8),
        ]  # only the new sessions, which the refresh fetches anyway


def test_a_raw_load_over_adjusted_bars_is_rejected_before_any_request(massive_conn, pg_conn, redis_client, run_dag):
    assert run_dag("universe_load", {"symbols": ["SCHG", "VUG"], "days": 5, "as_of": "2025-12-02"}).state == "success"
    stored = _all_rows(pg_conn, ["SCHG", "VUG"])
    before = massive_conn.stats()["total"]
    run = run_dag(
        "universe_load",
        {"symbols": ["SCHG"], "days": 5, "as_of": "2025-12-02", "adjusted": False, "job_id": "raw"},
    )
    assert run.state == "failed"
    assert massive_conn.stats()["total"] == before  # not a single request
    assert _all_rows(pg_conn, ["SCHG", "VUG"]) == stored  # not a single row
    status = _job(redis_client, "raw")
    assert status["status"] == "failed"
    message = status["message"]
    assert "adjusted=False differs from the stored series" in message
    for table in ("ohlcv_daily", "ohlcv_hourly", "ohlcv_monthly", "ohlcv_weekly"):
        assert f"SCHG in {table} (stored adjusted=True)" in message
    assert "VUG" not in message
