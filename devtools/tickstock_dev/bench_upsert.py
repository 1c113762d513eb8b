"""Measurement 1: the project's bulk-upsert path against a raw COPY into an identical empty table.

The upsert path is exactly what a load runs per batch: ``stage_bars`` (COPY into the UNLOGGED
staging table) then ``merge_staged`` (one transaction: compare with the stored rows, then a plain
``INSERT`` of new keys and an ``UPDATE … WHERE IS DISTINCT FROM`` of changed ones), one staging
key per batch of symbols as ``universe_load`` maps them. The physical limit it is compared with is
one COPY of the same rows, from the same Python objects through the same driver, into a table
created ``LIKE ohlcv_daily INCLUDING ALL`` (same columns, primary key and defaults)
and empty: nothing can put rows into that table faster from Python.

Rows are built before the clock starts; prices are drawn from a pool of shared ``Decimal`` objects
so a million bars fit in ~150 MB while still going through NUMERIC encoding per value.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import psycopg

from tickstock.bars import Bar
from tickstock.staging import clear_all_staged, load_key, merge_staged, stage_bars
from tickstock.timeframes import Timeframe
from tickstock_dev.bench_report import Section, Target, ratios

if TYPE_CHECKING:
    from collections.abc import Callable

SESSIONS_PER_YEAR = 252
COPY_TABLE = "bench_copy_target"
COPY_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "vwap", "transactions")


def synthetic_daily_bars(rows: int, symbols_per_batch: int) -> list[list[Bar]]:
    """At least ``rows`` day bars (whole years of 252 weekdays per symbol), grouped in batches."""
    n_symbols = -(-rows // SESSIONS_PER_YEAR)
    days: list[date] = []
    day = date(2024, 12, 2)
    while len(days) < SESSIONS_PER_YEAR:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    starts = [datetime(d.year, d.month, d.day, 5, tzinfo=UTC) for d in days]
    prices = [Decimal(f"{50 + (i * 7919) % 50000 / 100:.2f}") for i in range(1024)]
    volumes = [Decimal(1_000_000 + i * 977) for i in range(1024)]
    batches: list[list[Bar]] = []
    batch: list[Bar] = []
    for s in range(n_symbols):
        symbol = f"B{s:05d}"
        for d, (period, start) in enumerate(zip(days, starts, strict=True)):
            i = (s * 31 + d) % 1021
            low, high = prices[i], prices[i + 3]
            batch.append(
                Bar(
                    symbol, Timeframe.DAY, start, period,
                    open=prices[i + 1], high=high, low=low, close=prices[i + 2],
                    volume=volumes[i], vwap=prices[i + 1], transactions=1000 + i,
                )
            )  # fmt: skip
        if (s + 1) % symbols_per_batch == 0:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def _raw_copy(conn: psycopg.Connection, batches: list[list[Bar]]) -> None:
    columns = ", ".join(COPY_COLUMNS)
    with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY {COPY_TABLE} ({columns}) FROM STDIN") as copy:
        for batch in batches:
            for b in batch:
                copy.write_row((b.symbol, b.period, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions))


def _upsert(conn: psycopg.Connection, batches: list[list[Bar]], tag: str) -> tuple[int, int, float, float]:
    """Stage and merge every batch; return inserted, updated and the seconds spent in each step."""
    inserted = updated = 0
    t_stage = t_merge = 0.0
    for i, batch in enumerate(batches):
        key = load_key(f"bench-{tag}", Timeframe.DAY, i)
        t0 = time.perf_counter()
        stage_bars(conn, key, batch, timeframe=Timeframe.DAY)
        t1 = time.perf_counter()
        result = merge_staged(conn, key, Timeframe.DAY)
        t_merge += time.perf_counter() - t1
        t_stage += t1 - t0
        inserted += result.inserted.total()
        updated += result.updated.total()
    return inserted, updated, t_stage, t_merge


def _upsert_overlapped(postgres_url: str, batches: list[list[Bar]], tag: str) -> tuple[int, int]:
    """Stage batch n+1 while batch n merges on a second connection, as fetch and upsert tasks overlap.

    The same ``stage_bars`` and ``merge_staged`` calls as :func:`_upsert`, one thread each; a
    queue of one key keeps the stager at most one batch ahead. Returns inserted, updated.
    """
    import queue
    import threading

    keys: queue.Queue[str | None] = queue.Queue(maxsize=1)
    totals = [0, 0]
    failure: list[BaseException] = []

    def merge() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            while (key := keys.get()) is not None:
                try:
                    result = merge_staged(conn, key, Timeframe.DAY)
                except BaseException as exc:  # reported by the caller, after the stager stops
                    failure.append(exc)
                    return
                totals[0] += result.inserted.total()
                totals[1] += result.updated.total()

    merger = threading.Thread(target=merge, name="bench-merge")
    merger.start()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for i, batch in enumerate(batches):
                if failure:
                    break
                key = load_key(f"bench-{tag}", Timeframe.DAY, i)
                stage_bars(conn, key, batch, timeframe=Timeframe.DAY)
                keys.put(key)
    finally:
        keys.put(None)
        merger.join()
    if failure:
        raise failure[0]
    return totals[0], totals[1]


def _timed(conn: psycopg.Connection, work: Callable[[], object]) -> tuple[float, object]:
    """Run ``work`` after a CHECKPOINT, so dirty pages of the previous phase are not billed to it."""
    conn.execute("CHECKPOINT")
    t0 = time.perf_counter()
    out = work()
    return time.perf_counter() - t0, out


def _explain_merge(conn: psycopg.Connection, batch: list[Bar]) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of one batch's merge statements (rolled back): where the server spends the merge.

    ``fresh``: the batch's INSERT into the emptied table (``merge_fresh.sql``); ``re-upsert``: the
    read-only comparison with the stored rows that a rerun stops at (``merge_compare.sql``).
    """
    from psycopg import sql

    from tickstock.sqlfiles import read_sql
    from tickstock.staging import merge_formats

    key = load_key("bench-explain", Timeframe.DAY, 0)
    conn.execute("TRUNCATE ohlcv_daily")
    stage_bars(conn, key, batch, timeframe=Timeframe.DAY)
    formats = merge_formats(conn, Timeframe.DAY, key)
    symbols = sorted({b.symbol for b in batch})
    params = {"symbols": symbols, "first": min(b.period for b in batch), "last": max(b.period for b in batch)}
    plans: dict[str, list[str]] = {}
    for name, sql_file, merged_first in (
        ("fresh", "dml/merge_fresh.sql", False),
        ("re-upsert", "dml/merge_compare.sql", True),
    ):
        if merged_first:
            merge_staged(conn, key, Timeframe.DAY)
        statement = sql.SQL(read_sql(sql_file)).format(**formats)
        try:
            with conn.transaction():
                conn.execute("SET LOCAL enable_seqscan = off")  # as merge_staged plans it
                conn.execute("SET LOCAL enable_nestloop = off")
                explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ") + statement
                plans[name] = [r[0] for r in conn.execute(explain, params).fetchall()]
                raise _Rollback
        except _Rollback:
            pass
    conn.execute("TRUNCATE ohlcv_daily")
    clear_all_staged(conn)
    return plans


class _Rollback(Exception):
    """Raised to leave an EXPLAIN ANALYZE transaction without keeping its writes."""


def run(
    postgres_url: str, *, rows: int, runs: int, symbols_per_batch: int | None = None, profile: bool = True, log=print
) -> Section:
    """Measure raw COPY, fresh upsert and full re-upsert, interleaved, ``runs`` times.

    ``symbols_per_batch`` defaults to what ``universe_load`` picks for a day-bar load of that many
    symbols (:func:`tickstock.plan.auto_batch_size`).
    """
    import os

    from tickstock.plan import auto_batch_size
    from tickstock.schema import upgrade
    from tickstock_dev import bench_profile

    t_section = time.perf_counter()
    if symbols_per_batch is None:
        symbols_per_batch = auto_batch_size(-(-rows // SESSIONS_PER_YEAR), 1)
    batches = synthetic_daily_bars(rows, symbols_per_batch)
    n_rows = sum(len(b) for b in batches)
    copy_rates, fresh_rates, again_rates, overlapped_rates = [], [], [], []
    fresh_stage, fresh_merge, again_stage, again_merge = [], [], [], []
    profiles: list[bench_profile.Profile] = []
    upgrade(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        conn.execute(f"CREATE TABLE {COPY_TABLE} (LIKE ohlcv_daily INCLUDING ALL)")
        for r in range(runs):
            conn.execute(f"TRUNCATE {COPY_TABLE}, ohlcv_daily")
            clear_all_staged(conn)
            t_copy, _ = _timed(conn, lambda: _raw_copy(conn, batches))
            if profile and r == runs - 1:
                with bench_profile.record(os.getpid(), rate=100) as profiles:
                    t_fresh, out = _timed(conn, lambda: _upsert(conn, batches, f"fresh{r}"))  # noqa: B023
            else:
                t_fresh, out = _timed(conn, lambda: _upsert(conn, batches, f"fresh{r}"))  # noqa: B023
            ins, upd, st, mg = out  # type: ignore[misc]
            if ins != n_rows or upd:
                raise RuntimeError(f"fresh upsert inserted {ins}, updated {upd}; expected {n_rows} inserts")
            fresh_stage.append(st)
            fresh_merge.append(mg)
            t_again, out = _timed(conn, lambda: _upsert(conn, batches, f"again{r}"))  # noqa: B023
            ins, upd, st, mg = out  # type: ignore[misc]
            if ins or upd:
                raise RuntimeError(f"re-upsert of identical rows wrote {ins} inserts, {upd} updates")
            again_stage.append(st)
            again_merge.append(mg)
            conn.execute("TRUNCATE ohlcv_daily")
            t_overlap, out = _timed(conn, lambda: _upsert_overlapped(postgres_url, batches, f"overlap{r}"))  # noqa: B023
            if out != (n_rows, 0):
                raise RuntimeError(f"overlapped fresh upsert wrote {out}; expected {n_rows} inserts")
            copy_rates.append(n_rows / t_copy)
            fresh_rates.append(n_rows / t_fresh)
            again_rates.append(n_rows / t_again)
            overlapped_rates.append(n_rows / t_overlap)
            log(
                f"  run {r + 1}/{runs}: COPY {n_rows / t_copy:,.0f} rows/s, upsert fresh {n_rows / t_fresh:,.0f}, "
                f"re-upsert {n_rows / t_again:,.0f}, fresh overlapped {n_rows / t_overlap:,.0f}"
            )
        plans = _explain_merge(conn, batches[0])
        conn.execute(f"DROP TABLE {COPY_TABLE}")
        conn.execute("TRUNCATE ohlcv_daily")

    section = Section("1", "Bulk upsert vs raw COPY")
    section.method = [
        f"{n_rows:,} day bars ({n_rows // SESSIONS_PER_YEAR:,} symbols × {SESSIONS_PER_YEAR} sessions), "
        "built in memory before timing, written from the same Python objects through the same driver "
        "(psycopg 3). Each run, in this order, each phase after a `CHECKPOINT`:",
        "",
        f"- **raw COPY**: all rows in one `COPY … FROM STDIN` into `{COPY_TABLE}` "
        "(`LIKE ohlcv_daily INCLUDING ALL`: same columns, primary key and defaults; empty). The physical limit.",
        "- **upsert, fresh rows**: the project's path, `stage_bars` (`COPY … FREEZE` into the batch's own UNLOGGED "
        "table, no index) then `merge_staged` (one transaction: probe the key range; a batch with nothing stored "
        "is inserted as it is, any other compared first, then plain `INSERT` of new keys and `UPDATE` of changed "
        "rows), one staging key per batch of "
        f"{symbols_per_batch} symbols ({len(batches)} batches, the size `universe_load` picks for a day-bar load "
        "of this many symbols), into the emptied "
        "`ohlcv_daily`.",
        "- **re-upsert**: the same again onto the full table: every row offered, none written "
        "(`WHERE … IS DISTINCT FROM`), as a rerun or nightly refresh does.",
        "- **fresh, overlapped** (not a target row): the same calls into the emptied table, staging batch n+1 on "
        "one connection while batch n merges on a second, as mapped fetch and upsert tasks overlap on workers.",
    ]
    section.add("raw COPY", "rows/s", copy_rates)
    section.add("upsert, fresh rows", "rows/s", fresh_rates)
    section.add("re-upsert, same rows", "rows/s", again_rates)
    section.add("fresh: seconds in stage_bars (COPY to staging)", "s", fresh_stage)
    section.add("fresh: seconds in merge_staged", "s", fresh_merge)
    section.add("re-upsert: seconds in stage_bars", "s", again_stage)
    section.add("re-upsert: seconds in merge_staged", "s", again_merge)
    fresh_ratio = section.add("ratio fresh upsert / COPY", "×", ratios(fresh_rates, copy_rates))
    again_ratio = section.add("ratio re-upsert / COPY", "×", ratios(again_rates, copy_rates))
    section.add("upsert, fresh rows, stage and merge overlapped", "rows/s", overlapped_rates)
    section.add("ratio fresh overlapped / COPY", "×", ratios(overlapped_rates, copy_rates))
    section.targets.append(Target("upsert (fresh) vs COPY", ">= 0.5 of COPY", fresh_ratio, fresh_ratio.median >= 0.5))
    section.targets.append(Target("re-upsert vs COPY", ">= 0.5 of COPY", again_ratio, again_ratio.median >= 0.5))
    for name, plan in plans.items():
        section.notes += [
            f"Server side of one {name} merge ({len(batches[0]):,} rows), `EXPLAIN (ANALYZE, BUFFERS)`, rolled back:",
            "",
            "```",
            *plan,
            "```",
        ]
    if profiles:
        section.profile = profiles[0].markdown("the bench process during the last fresh upsert")
    section.seconds = time.perf_counter() - t_section
    return section
