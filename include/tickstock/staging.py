"""Bulk upsert of bars: COPY each batch into a table of its own, then one merge per batch.

Measured in the providers' notes and in ``make bench``: COPY plus a set-based merge is several
times faster than ``executemany`` upserts, and the staged batches double as the hand-off between
the fetch and the upsert tasks (which may run on different workers), keeping XCom down to a few
counters. Each batch (one load key) gets an UNLOGGED table without index or defaults, created in
the transaction that fills it, so staging costs what a COPY into an empty heap costs and the merge
reads its batch whole; ``ohlcv_staging_batches`` lists them (revision 0004). Staging into one
shared table indexed by load key cost 1.4 times a raw COPY before the merge even started
(docs/benchmarks.md, measurement 6).

The loader's database role therefore needs CREATE on its schema at run time, not only during
migrations (README, "Database privileges").
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.errors import CardinalityViolation, UniqueViolation
from psycopg.types.json import Jsonb

from tickstock.schema import column_types, is_naive_instant
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from tickstock.bars import Bar

log = logging.getLogger(__name__)

# What one staged row carries after its symbol and key: the values a raw COPY into the OHLCV
# table would send. Hourly bars are keyed by bar_start, the others by period.
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "transactions")
STAGED_TABLE_PREFIX = "ohlcv_staged_"
# Batch tables dropped per transaction when clearing: each drop holds a lock until commit.
CLEAR_CHUNK = 64


def load_key(run_id: str, timeframe: Timeframe | str, batch: int | str) -> str:
    """Return the staging key of one mapped fetch: unique per run, timeframe and batch."""
    return f"{run_id}|{Timeframe(timeframe).value}|{batch}"


def staged_table(key: str) -> str:
    """Return the name of ``key``'s batch table (revision 0004 computes it the same way, in SQL)."""
    return STAGED_TABLE_PREFIX + hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


def _staged_key(timeframe: Timeframe | str) -> tuple[str, str]:
    return ("bar_start", "timestamptz") if table_for(timeframe).is_intraday else ("period", "date")


def stage_bars(conn: psycopg.Connection, key: str, bars: Iterable[Bar], *, timeframe: Timeframe | str) -> Counter[str]:
    """Replace ``key``'s staged batch with ``bars`` of ``timeframe`` (one transaction); return bars per symbol.

    Replacing (not appending) makes a retried fetch idempotent. ``bars`` should hold each
    (symbol, bar key) once, as :mod:`tickstock.bars` returns them: ascending keys per symbol
    prove it on the way (recorded, so the merge skips its duplicate check); any other order is
    checked by the merge, which refuses a duplicate.
    """
    key_column, key_type = _staged_key(timeframe)
    intraday = key_column == "bar_start"
    table = sql.Identifier(staged_table(key))
    create = sql.SQL(read_sql("ddl/staged_batch.sql")).format(
        staged=table, staged_key=sql.Identifier(key_column), key_type=sql.SQL(key_type)
    )
    copy_sql = sql.SQL("COPY {} FROM STDIN WITH (FREEZE)").format(table)
    per_symbol: Counter[str] = Counter()
    last: dict[str, Any] = {}
    ascending = True
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(create)
        with cur.copy(copy_sql) as copy:
            for bar in bars:
                symbol = bar.symbol
                bar_key = bar.start if intraday else bar.period
                previous = last.get(symbol)
                if previous is not None and bar_key <= previous:
                    ascending = False
                last[symbol] = bar_key
                copy.write_row(
                    (symbol, bar_key, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap, bar.transactions)
                )
                per_symbol[symbol] += 1
        cur.execute(
            read_sql("dml/staging_batch_register.sql"),
            {
                "load_key": key,
                "staged_table": staged_table(key),
                "bars": per_symbol.total(),
                "offered": Jsonb(per_symbol),
                "keys_ascending": ascending,
            },
        )
    return per_symbol


class DuplicateStagedBars(ValueError):
    """A staged batch holds the same bar key twice: the fetch did not de-duplicate it."""


@dataclass(frozen=True)
class MergeResult:
    """What one merge did to the target table, per symbol.

    :param staged: bars taken from staging (after de-duplication by key, the rows offered)
    :param inserted: new rows
    :param updated: existing rows whose values changed
    """

    table: str
    staged: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)

    @property
    def unchanged(self) -> int:
        return self.staged.total() - self.inserted.total() - self.updated.total()


def merge_formats(conn: psycopg.Connection, timeframe: Timeframe | str, key: str) -> dict[str, sql.Composable]:
    """The identifiers and expressions that fill the merge statements for ``key``'s batch.

    The staged table is always aliased ``s``. An adopted hourly table whose time column is
    ``timestamp without time zone`` holds UTC, so the staged instant is written as UTC wall
    time, whatever the session's TimeZone. The staged values are compared with the stored ones
    after a cast to the columns' own types (typmods included: an adopted NUMERIC(12,4) rounds,
    double precision prices, BIGINT volume), as the row would be stored.
    """
    table = table_for(timeframe)
    staged_key, _ = _staged_key(timeframe)
    staged_time: sql.Composable = sql.SQL("s.{}").format(sql.Identifier(staged_key))
    if is_naive_instant(column_types(conn, table.table)[table.time_column]):
        staged_time = sql.SQL("({} AT TIME ZONE 'UTC')").format(staged_time)
    stored = dict(conn.execute(read_sql("ddl/column_types_stored.sql"), {"table": table.table}).fetchall())
    return {
        "staged": sql.Identifier(staged_table(key)),
        "staged_key": sql.Identifier(staged_key),
        "staged_time": staged_time,
        "table": sql.Identifier(table.table),
        "time_column": sql.Identifier(table.time_column),
        "as_stored": sql.SQL(", ").join(
            sql.SQL("s.{}::{}").format(sql.Identifier(column), sql.SQL(stored[column])) for column in VALUE_COLUMNS
        ),
    }


def _statement(sql_file: str, formats: dict[str, sql.Composable]) -> sql.Composed:
    return sql.SQL(read_sql(sql_file)).format(**formats)


def merge_staged(
    conn: psycopg.Connection, key: str, timeframe: Timeframe | str, *, adjusted: bool | None = None
) -> MergeResult:
    """Upsert ``key``'s staged bars into the timeframe's table (one transaction); keep them staged.

    Idempotent per key: merging again changes no row and reports the same ``staged`` counts, so
    an upsert task retried after its merge had committed (worker killed, status write failed)
    still reports its batch's bars. :func:`clear_staged` removes the batch once the run is done.
    Nothing staged under ``key`` (never staged, cleared, or emptied by a database crash: an
    unlogged table is) gives an empty result, which the upsert task refuses for a fetched batch.

    The merge writes only what differs: a batch none of whose keys can be stored (a first load)
    is inserted as it is (``merge_fresh.sql``); any other is compared first
    (``merge_compare.sql``), and only new keys and changed rows are written
    (``merge_staging.sql``). When a concurrent load inserted one of the batch's new keys after
    that statement's snapshot, its plain INSERT fails with unique_violation and the batch is
    merged again, in a new transaction, by ``INSERT ... ON CONFLICT``
    (``merge_staging_on_conflict.sql``), which waits for and resolves such conflicts row by row.

    With ``adjusted`` given, the merged symbols' adjustment basis for the table is recorded in
    the same transaction, and a merge onto a series stored with the other basis is rolled back
    (:class:`tickstock.splits.AdjustmentMismatch`): adjusted and raw bars never mix in a table.
    """
    table = table_for(timeframe)
    try:
        try:
            result = _merge(conn, key, timeframe, adjusted, on_conflict=False)
        except UniqueViolation:
            log.info("Merging %s into %s met a concurrent insert: merging again with ON CONFLICT", key, table.table)
            result = _merge(conn, key, timeframe, adjusted, on_conflict=True)
    except (CardinalityViolation, _Duplicates) as exc:  # ON CONFLICT met the same key twice, or the check did
        raise DuplicateStagedBars(
            f"staged batch {key} holds the same {table.time_column} twice for a symbol; nothing was merged "
            "(the rows stay staged): bars must be de-duplicated when fetched, as tickstock.bars does"
        ) from exc
    log.info(
        "Merged %s: %d staged, %d inserted, %d updated, %d unchanged",
        table.table,
        result.staged.total(),
        result.inserted.total(),
        result.updated.total(),
        result.unchanged,
    )
    return result


class _Duplicates(Exception):
    """Raised inside the merge transaction to roll it back when the batch holds a key twice."""


def _merge(
    conn: psycopg.Connection, key: str, timeframe: Timeframe | str, adjusted: bool | None, *, on_conflict: bool
) -> MergeResult:
    """Merge one staged batch and record the basis, in one transaction; return its counts."""
    from tickstock.splits import record_basis

    table = table_for(timeframe).table
    result = MergeResult(table)
    with conn.transaction(), conn.cursor() as cur:
        batch = cur.execute(read_sql("dml/staging_batch_read.sql"), {"load_key": key}).fetchone()
        if batch is None or not batch[1]:
            return result
        _, bars, offered, keys_ascending = batch
        formats = merge_formats(conn, timeframe, key)
        # The batch's stored rows are found through the table's key index, whatever its statistics
        # say: during a first load they describe an empty table while it grows by a million rows,
        # and a sequential scan per batch made a fresh merge ten times slower (the staged table,
        # which has no index, is read whole either way). Planned for each batch, never as a
        # prepared statement: a generic plan made on the empty table would be kept once it is full.
        # Staged and stored rows are matched by one hash join: a nested loop probing the key index
        # once per staged row (what stale statistics of a growing table suggest) cost 2.5 times more.
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_nestloop = off")
        symbols = list(offered)
        first, last, present, any_stored = cur.execute(
            _statement("dml/merge_probe.sql", formats), {"symbols": symbols}, prepare=False
        ).fetchone()
        if present != bars:
            log.warning(
                "Staged batch %s holds %d of the %d bars staged (its unlogged table was emptied by a crash)",
                key,
                present,
                bars,
            )
            return result
        if not keys_ascending and cur.execute(_statement("dml/staged_duplicates.sql", formats)).fetchone()[0]:
            raise _Duplicates(key)
        params = {"symbols": symbols, "first": first, "last": last}
        result.staged.update(offered)
        if on_conflict:
            for symbol, _, inserted, updated in cur.execute(
                _statement("dml/merge_staging_on_conflict.sql", formats), prepare=False
            ).fetchall():
                _count(result, symbol, inserted, updated)
        elif not any_stored:
            cur.execute(_statement("dml/merge_fresh.sql", formats), prepare=False)
            result.inserted.update(offered)
        else:
            compared = cur.execute(_statement("dml/merge_compare.sql", formats), params, prepare=False).fetchall()
            if any(new or changed for _, _, new, changed in compared):
                for symbol, inserted, updated in cur.execute(
                    _statement("dml/merge_staging.sql", formats), params, prepare=False
                ).fetchall():
                    _count(result, symbol, inserted, updated)
        if adjusted is not None:
            record_basis(conn, sorted(result.staged), table, adjusted)
    return result


def _count(result: MergeResult, symbol: str, inserted: int, updated: int) -> None:
    if inserted:
        result.inserted[symbol] += inserted
    if updated:
        result.updated[symbol] += updated


def staged_counts(conn: psycopg.Connection, key: str) -> Counter[str] | None:
    """Return the bars per symbol that ``key``'s batch table holds now; None when nothing is staged."""
    if conn.execute(read_sql("dml/staging_batch_read.sql"), {"load_key": key}).fetchone() is None:
        return None
    query = sql.SQL("SELECT symbol, count(*) FROM {} GROUP BY symbol").format(sql.Identifier(staged_table(key)))
    return Counter(dict(conn.execute(query).fetchall()))


def clear_staged(conn: psycopg.Connection, keys: Iterable[str]) -> int:
    """Drop the staged batches of ``keys`` (their upserts succeeded); return how many bars they held."""
    keys = list(keys)
    removed = 0
    for start in range(0, len(keys), CLEAR_CHUNK):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(read_sql("dml/staging_batches_remove.sql"), {"load_keys": keys[start : start + CLEAR_CHUNK]})
            for table, bars in cur.fetchall():
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
                removed += bars
    return removed


def purge_stale_staging(conn: psycopg.Connection, older_than: str = "1 day") -> int:
    """Drop the staged batches of runs that died before their upsert; return how many bars they held."""
    stale = conn.execute(read_sql("dml/staging_batches_stale.sql"), {"older_than": older_than}).fetchall()
    return clear_staged(conn, [key for (key,) in stale])


def clear_all_staged(conn: psycopg.Connection) -> int:
    """Drop every staged batch of every run (tests and benchmarks start from empty tables)."""
    return clear_staged(conn, [key for (key,) in conn.execute("SELECT load_key FROM ohlcv_staging_batches")])
