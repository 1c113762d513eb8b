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


def merge_staged(conn: psycopg.Connection, key: str, timeframe: Timeframe | str) -> MergeResult:
    """Upsert ``key``'s staged bars into the timeframe's table (one transaction); keep them staged.

    Idempotent per key: merging again changes no row and reports the same ``staged`` counts, so
    an upsert task retried after its merge had committed (worker killed, status write failed)
    still reports its batch's bars. :func:`clear_staged` removes the rows once the run is done.
    """
    table = table_for(timeframe)
    staged_key = "bar_start" if table.is_intraday else "period"
    statement = sql.SQL(read_sql("dml/merge_staging.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        staged_key=sql.Identifier(staged_key),
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
    log.info(
        "Merged %s: %d staged, %d inserted, %d updated, %d unchanged",
        table.table,
        result.staged.total(),
        result.inserted.total(),
        result.updated.total(),
        result.unchanged,
    )
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
