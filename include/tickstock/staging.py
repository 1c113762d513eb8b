"""Bulk upsert of bars: COPY into a staging table, then one merge per timeframe batch.

Measured in the providers' notes and in ``make bench``: COPY plus a set-based
``INSERT ... ON CONFLICT`` is several times faster than ``executemany`` upserts, and the staging
table doubles as the hand-off between the fetch and the upsert tasks (which may run on different
workers), keeping XCom down to a few counters.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg import sql
from psycopg.errors import CardinalityViolation, UniqueViolation

from tickstock.schema import column_types, is_naive_instant
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from tickstock.bars import Bar

log = logging.getLogger(__name__)

# What one staged row carries: the nine columns a raw COPY into the OHLCV table would send. The
# load key is the column's default (the transaction's tickstock.load_key setting), not a tenth
# value repeated on every row; hourly bars are keyed by bar_start, the others by period.
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "transactions")
LOAD_KEY_SETTING = "tickstock.load_key"


def load_key(run_id: str, timeframe: Timeframe | str, batch: int | str) -> str:
    """Return the staging key of one mapped fetch: unique per run, timeframe and batch."""
    return f"{run_id}|{Timeframe(timeframe).value}|{batch}"


def stage_bars(conn: psycopg.Connection, key: str, bars: Iterable[Bar], *, timeframe: Timeframe | str) -> Counter[str]:
    """Replace ``key``'s staged rows with ``bars`` of ``timeframe`` (one transaction); return bars per symbol.

    Replacing (not appending) makes a retried fetch idempotent. ``bars`` must hold each
    (symbol, bar key) once, as :mod:`tickstock.bars` returns them; the merge refuses duplicates.
    """
    intraday = table_for(timeframe).is_intraday
    key_column = "bar_start" if intraday else "period"
    copy_sql = sql.SQL("COPY ohlcv_staging ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, ("symbol", key_column, *VALUE_COLUMNS)))
    )
    per_symbol: Counter[str] = Counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT set_config(%s, %s, true)", (LOAD_KEY_SETTING, key))
        cur.execute(read_sql("dml/clear_staging.sql"), {"load_key": key})
        with cur.copy(copy_sql) as copy:
            for bar in bars:
                copy.write_row(
                    (
                        bar.symbol,
                        bar.start if intraday else bar.period,
                        bar.open,
                        bar.high,
                        bar.low,
                        bar.close,
                        bar.volume,
                        bar.vwap,
                        bar.transactions,
                    )
                )
                per_symbol[bar.symbol] += 1
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


def _render(conn: psycopg.Connection, timeframe: Timeframe | str, sql_file: str) -> sql.Composed:
    """Render a merge statement for the timeframe's table as the catalog describes it.

    An adopted hourly table whose time column is ``timestamp without time zone`` holds UTC, so
    the staged instant is written as UTC wall time, whatever the session's TimeZone. The staged
    values are compared with the stored ones after a cast to the columns' own types (typmods
    included: an adopted NUMERIC(12,4) rounds, double precision prices, BIGINT volume), as the
    row would be stored.
    """
    table = table_for(timeframe)
    staged_key = "bar_start" if table.is_intraday else "period"
    staged_time: sql.Composable = sql.Identifier(staged_key)
    if is_naive_instant(column_types(conn, table.table)[table.time_column]):
        staged_time = sql.SQL("({} AT TIME ZONE 'UTC')").format(staged_time)
    stored = dict(conn.execute(read_sql("ddl/column_types_stored.sql"), {"table": table.table}).fetchall())

    def as_stored(alias: str) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}::{}").format(sql.Identifier(alias), sql.Identifier(column), sql.SQL(stored[column]))
            for column in VALUE_COLUMNS
        )

    return sql.SQL(read_sql(sql_file)).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        staged_key=sql.Identifier(staged_key),
        staged_time=staged_time,
        as_stored=as_stored("s"),
        as_stored_c=as_stored("c"),
    )


def merge_statement(conn: psycopg.Connection, timeframe: Timeframe | str) -> sql.Composed:
    """Render ``merge_staging.sql`` (compare, then plain INSERT and UPDATE) for the timeframe's table."""
    return _render(conn, timeframe, "dml/merge_staging.sql")


def on_conflict_statement(conn: psycopg.Connection, timeframe: Timeframe | str) -> sql.Composed:
    """Render ``merge_staging_on_conflict.sql``: the merge that is safe against concurrent inserts."""
    return _render(conn, timeframe, "dml/merge_staging_on_conflict.sql")


def merge_staged(
    conn: psycopg.Connection, key: str, timeframe: Timeframe | str, *, adjusted: bool | None = None
) -> MergeResult:
    """Upsert ``key``'s staged bars into the timeframe's table (one transaction); keep them staged.

    Idempotent per key: merging again changes no row and reports the same ``staged`` counts, so
    an upsert task retried after its merge had committed (worker killed, status write failed)
    still reports its batch's bars. :func:`clear_staged` removes the rows once the run is done.

    The merge compares first and writes only what differs (``merge_staging.sql``); when a
    concurrent load inserted one of the batch's new keys after that statement's snapshot, its
    plain INSERT fails with unique_violation and the batch is merged again, in a new transaction,
    by ``INSERT ... ON CONFLICT`` (``merge_staging_on_conflict.sql``), which waits for and
    resolves such conflicts row by row.

    With ``adjusted`` given, the merged symbols' adjustment basis for the table is recorded in
    the same transaction, and a merge onto a series stored with the other basis is rolled back
    (:class:`tickstock.splits.AdjustmentMismatch`): adjusted and raw bars never mix in a table.
    """
    table = table_for(timeframe)
    try:
        try:
            result = _merge(conn, key, table.table, merge_statement(conn, timeframe), adjusted)
        except UniqueViolation:
            log.info("Merging %s into %s met a concurrent insert: merging again with ON CONFLICT", key, table.table)
            result = _merge(conn, key, table.table, on_conflict_statement(conn, timeframe), adjusted)
    except (CardinalityViolation, _Duplicates) as exc:  # ON CONFLICT met the same key twice, or the count did
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
    conn: psycopg.Connection, key: str, table: str, statement: sql.Composed, adjusted: bool | None
) -> MergeResult:
    """Run one merge statement and record the basis, in one transaction; return its counts."""
    from tickstock.splits import record_basis

    result = MergeResult(table)
    with conn.transaction(), conn.cursor() as cur:
        # The batch's stored rows are found through the table's key index, whatever its statistics
        # say: during a first load they describe an empty table while it grows by a million rows,
        # and a sequential scan per batch (the "any stored?" probe finds nothing, so it would read
        # everything) made a fresh merge ten times slower. Planned for each batch, never as a
        # prepared statement (psycopg prepares a query run five times): a generic plan made on the
        # empty table would be kept once it is full.
        # Staged and stored rows are matched by one hash join: a nested loop probing the key index
        # once per staged row (what stale statistics of a growing table suggest) cost 2.5 times more.
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_nestloop = off")
        cur.execute(statement, {"load_key": key}, prepare=False)
        for symbol, offered, inserted, updated, *duplicates in cur.fetchall():
            if duplicates and duplicates[0]:
                raise _Duplicates(symbol)
            result.staged[symbol] = offered
            if inserted:
                result.inserted[symbol] = inserted
            if updated:
                result.updated[symbol] = updated
        if adjusted is not None:
            record_basis(conn, sorted(result.staged), table, adjusted)
    return result


def clear_staged(conn: psycopg.Connection, keys: Iterable[str]) -> int:
    """Delete the staged rows of ``keys`` (batches whose upserts succeeded); return how many."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(read_sql("dml/clear_staged_keys.sql"), {"load_keys": list(keys)})
        return cur.rowcount


def purge_stale_staging(conn: psycopg.Connection, older_than: str = "1 day") -> int:
    """Delete staged rows left by runs that died before their upsert; return how many."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(read_sql("dml/purge_stale_staging.sql"), {"older_than": older_than})
        return cur.rowcount
