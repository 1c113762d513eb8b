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

from tickstock.schema import column_types, is_naive_instant
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from tickstock.bars import Bar

log = logging.getLogger(__name__)

STAGING_COLUMNS = (
    "load_key",
    "symbol",
    "bar_start",
    "period",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "transactions",
)


def load_key(run_id: str, timeframe: Timeframe | str, batch: int | str) -> str:
    """Return the staging key of one mapped fetch: unique per run, timeframe and batch."""
    return f"{run_id}|{Timeframe(timeframe).value}|{batch}"


def stage_bars(conn: psycopg.Connection, key: str, bars: Iterable[Bar]) -> Counter[str]:
    """Replace ``key``'s staged rows with ``bars`` (one transaction); return bars per symbol.

    Replacing (not appending) makes a retried fetch idempotent.
    """
    per_symbol: Counter[str] = Counter()
    copy_sql = sql.SQL("COPY ohlcv_staging ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, STAGING_COLUMNS))
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(read_sql("dml/clear_staging.sql"), {"load_key": key})
        with cur.copy(copy_sql) as copy:
            for bar in bars:
                copy.write_row(
                    (
                        key,
                        bar.symbol,
                        bar.start,
                        bar.period,
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


def merge_staged(
    conn: psycopg.Connection, key: str, timeframe: Timeframe | str, *, adjusted: bool | None = None
) -> MergeResult:
    """Upsert ``key``'s staged bars into the timeframe's table and clear them, atomically.

    With ``adjusted`` given, the merged symbols' adjustment basis for the table is recorded in
    the same transaction, and a merge onto a series stored with the other basis is rolled back
    (:class:`tickstock.splits.AdjustmentMismatch`): adjusted and raw bars never mix in a table.
    """
    from tickstock.splits import record_basis

    table = table_for(timeframe)
    staged_key = "bar_start" if table.is_intraday else "period"
    staged_time: sql.Composable = sql.Identifier(staged_key)
    if is_naive_instant(column_types(conn, table.table)[table.time_column]):
        staged_time = sql.SQL("({} AT TIME ZONE 'UTC')").format(staged_time)
    statement = sql.SQL(read_sql("dml/merge_staging.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        staged_key=sql.Identifier(staged_key),
        staged_time=staged_time,
    )
    result = MergeResult(table.table)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(statement, {"load_key": key})
        for symbol, offered, inserted, updated in cur.fetchall():
            result.staged[symbol] = offered
            if inserted:
                result.inserted[symbol] = inserted
            if updated:
                result.updated[symbol] = updated
        if adjusted is not None:
            record_basis(conn, sorted(result.staged), table.table, adjusted)
    log.info(
        "Merged %s: %d staged, %d inserted, %d updated, %d unchanged",
        table.table,
        result.staged.total(),
        result.inserted.total(),
        result.updated.total(),
        result.unchanged,
    )
    return result


def purge_stale_staging(conn: psycopg.Connection, older_than: str = "1 day") -> int:
    """Delete staged rows left by runs that died before their upsert; return how many."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(read_sql("dml/purge_stale_staging.sql"), {"older_than": older_than})
        return cur.rowcount
