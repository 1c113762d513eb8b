# The sketch's own style is kept on purpose (f-string logging, positional helpers): it is the baseline.
# ruff: noqa: G004, G201, PLR0917
"""The design document's loader (sprint-56-historical-data-load.md), reproduced as the baseline.

This is the sketch's code path, kept as close to the document as a runnable program allows, so the
comparison measures its *shape*, not a straw man:

- per symbol, sequentially: ticker details (metadata), ``register_symbol``, then 4 sequential
  Custom Bars calls (hour, day, week, month), each followed by its ``insert_*_bars``;
- every HTTP call is a bare ``requests.get`` (no session: a new TCP connection per call) with the
  key in ``apiKey``, the document's retry loop around it;
- every insert opens a fresh psycopg2 connection (``get_db_connection``) and runs
  ``execute_batch`` with the document's ``INSERT … ON CONFLICT … DO UPDATE``;
- the job status is written to Redis after every symbol (``update_job_status``).

What the document left unspecified is filled in minimally: ``fetch_symbol_metadata`` is one ticker
details request, ``register_symbol`` one upsert on a fresh connection, ``update_job_status`` one
``HSET`` + ``PUBLISH``. The clock is fixed to the simulator's day. Its known correctness bugs
(local-time timestamps, 48 clock hours for "2 days") are kept: only its speed is measured here.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg2
import requests
from psycopg2.extras import execute_batch

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

logger = logging.getLogger("tickstock_dev.bench_baseline")

_INSERT = """
    INSERT INTO {table} (symbol, {column}, open, high, low, close, volume)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (symbol, {column}) DO UPDATE SET
        open = EXCLUDED.open,
        high = EXCLUDED.high,
        low = EXCLUDED.low,
        close = EXCLUDED.close,
        volume = EXCLUDED.volume,
        created_at = NOW()
"""
_TABLES = {
    "hour": ("ohlcv_hourly", "timestamp"),
    "day": ("ohlcv_daily", "date"),
    "week": ("ohlcv_weekly", "week_start"),
    "month": ("ohlcv_monthly", "month_start"),
}


class DesignDocLoader:
    """``handle_csv_universe_load`` of the design document with its helpers, bound to one setup."""

    def __init__(self, base_url: str, api_key: str, dsn: str, redis_client: redis.Redis, now: datetime) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.dsn = dsn
        self.redis = redis_client
        self.now = now

    # -- src/api/massive_client.py -------------------------------------------------------------

    def call_massive_api(self, endpoint: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = f"{self.base_url}/v2/{endpoint}"
        params = dict(params or {})
        params["apiKey"] = self.api_key
        return requests.get(url, params=params, timeout=30)

    def fetch_custom_bars(
        self, symbol: str, multiplier: int, timespan: str, from_date: Any, to_date: Any, max_retries: int = 3
    ) -> list[dict[str, Any]]:
        from_str = from_date.strftime("%Y-%m-%d") if hasattr(from_date, "strftime") else str(from_date)
        to_str = to_date.strftime("%Y-%m-%d") if hasattr(to_date, "strftime") else str(to_date)
        for attempt in range(max_retries):
            try:
                logger.info(f"Fetching {symbol} {timespan} bars (attempt {attempt + 1}/{max_retries})...")
                endpoint = f"aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{from_str}/{to_str}"
                response = self.call_massive_api(
                    endpoint=endpoint, params={"adjusted": "true", "sort": "asc", "limit": 50000}
                )
                if response.status_code == 200:
                    results = response.json().get("results", [])
                    logger.info(f"✓ API returned {len(results)} {timespan} bars for {symbol}")
                    return [
                        {
                            "date": datetime.fromtimestamp(bar["t"] / 1000),
                            "open": bar["o"],
                            "high": bar["h"],
                            "low": bar["l"],
                            "close": bar["c"],
                            "volume": bar["v"],
                        }
                        for bar in results
                    ]
                if response.status_code == 404:
                    return []
                if response.status_code == 429:
                    time.sleep((2**attempt) * 5)
                    continue
                if attempt < max_retries - 1:
                    time.sleep(2**attempt)
                    continue
                return []
            except Exception:
                if attempt < max_retries - 1:
                    time.sleep(2**attempt)
                    continue
                raise
        return []

    def fetch_symbol_metadata(self, symbol: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.base_url}/v3/reference/tickers/{symbol}", params={"apiKey": self.api_key}, timeout=30
        )
        if response.status_code != 200:
            return None
        results = response.json().get("results") or {}
        return {
            "name": results.get("name"),
            "exchange": results.get("primary_exchange"),
            "sector": None,
            "industry": results.get("sic_description"),
            "issuer": None,
            "underlying_index": None,
        }

    # -- src/database/ohlcv_operations.py ------------------------------------------------------

    @contextmanager
    def get_db_connection(self) -> Iterator[Any]:
        conn = psycopg2.connect(self.dsn)
        try:
            yield conn
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _insert_bars(self, timespan: str, symbol: str, bars: list[dict[str, Any]]) -> int:
        if not bars:
            return 0
        table, column = _TABLES[timespan]
        with self.get_db_connection() as conn:
            cursor = conn.cursor()
            data = [
                (
                    symbol,
                    bar["date"] if timespan == "hour" else bar["date"].date(),
                    float(bar["open"]),
                    float(bar["high"]),
                    float(bar["low"]),
                    float(bar["close"]),
                    int(bar["volume"]),
                )
                for bar in bars
            ]
            execute_batch(cursor, _INSERT.format(table=table, column=column), data)
            cursor.close()
            return len(data)

    def register_symbol(self, symbol: str, **fields: Any) -> None:
        with self.get_db_connection() as conn, conn.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO symbols (symbol, name, exchange, sector, industry, issuer, underlying_index)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (symbol) DO UPDATE SET
                    name = EXCLUDED.name, exchange = EXCLUDED.exchange, sector = EXCLUDED.sector,
                    industry = EXCLUDED.industry, issuer = EXCLUDED.issuer,
                    underlying_index = EXCLUDED.underlying_index, last_updated = NOW()
                """,
                (
                    symbol,
                    fields.get("name"),
                    fields.get("exchange"),
                    fields.get("sector"),
                    fields.get("industry"),
                    fields.get("issuer"),
                    fields.get("underlying_index"),
                ),
            )

    def update_job_status(self, job_id: str, status: str, **fields: Any) -> None:
        record = {"job_id": job_id, "status": status, **fields}
        flat = {k: v if isinstance(v, (str, int, float)) else json.dumps(v) for k, v in record.items()}
        self.redis.hset(f"tickstock.jobs.status:{job_id}", mapping=flat)
        self.redis.publish("tickstock.jobs.status", json.dumps(record, default=str))

    # -- src/jobs/universe_load_handler.py -----------------------------------------------------

    def handle_csv_universe_load(self, job_data: dict[str, Any]) -> dict[str, Any]:
        job_id = job_data.get("job_id", "bench")
        years = job_data.get("years", 1)
        symbols = job_data["symbols"]
        end_date: date = self.now.date()
        start_date = end_date - timedelta(days=int(years * 365))
        hourly_end = self.now
        hourly_start = hourly_end - timedelta(hours=24 if years <= 0.0027 else 48)
        self.update_job_status(job_id, "processing", progress=0, total_symbols=len(symbols))
        results: dict[str, Any] = {
            "symbols_loaded": 0,
            "symbols_failed": 0,
            "hourly_bars": 0,
            "daily_bars": 0,
            "weekly_bars": 0,
            "monthly_bars": 0,
            "errors": [],
        }
        for i, symbol in enumerate(symbols, 1):
            try:
                metadata = self.fetch_symbol_metadata(symbol)
                if metadata:
                    self.register_symbol(symbol, **metadata)
                else:
                    self.register_symbol(symbol)
                hourly = self.fetch_custom_bars(symbol, 1, "hour", hourly_start, hourly_end)
                results["hourly_bars"] += self._insert_bars("hour", symbol, hourly)
                daily = self.fetch_custom_bars(symbol, 1, "day", start_date, end_date)
                if not daily:
                    results["errors"].append(f"{symbol}: No daily data available")
                    results["symbols_failed"] += 1
                    continue
                results["daily_bars"] += self._insert_bars("day", symbol, daily)
                weekly = self.fetch_custom_bars(symbol, 1, "week", start_date, end_date)
                results["weekly_bars"] += self._insert_bars("week", symbol, weekly)
                monthly = self.fetch_custom_bars(symbol, 1, "month", start_date, end_date)
                results["monthly_bars"] += self._insert_bars("month", symbol, monthly)
                results["symbols_loaded"] += 1
                self.update_job_status(
                    job_id,
                    "processing",
                    progress=int(i / len(symbols) * 100),
                    current_symbol=symbol,
                    message=f"Processed {i}/{len(symbols)} symbols",
                )
            except Exception as e:
                logger.error(f"✗ Failed to process {symbol}: {e}", exc_info=True)
                results["errors"].append(f"{symbol}: {e}")
                results["symbols_failed"] += 1
        final = "completed" if results["symbols_failed"] == 0 else "completed_with_errors"
        self.update_job_status(job_id, final, progress=100, results=results)
        return results
