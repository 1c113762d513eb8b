"""Create the loader's tables: idempotent, on plain PostgreSQL or TimescaleDB.

Used by the DAGs (a setup task), by the embedded dev/test services and by the compose file's
init container (``python -m tickstock.schema --dsn ...``). Applying it twice is a no-op.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from psycopg import sql

from tickstock.sqlfiles import read_sql
from tickstock.timeframes import OHLCV_TABLES, OhlcvTable

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# A transaction-scoped advisory lock so concurrent appliers (mapped tasks, several workers,
# the init container) serialise instead of racing on CREATE TABLE IF NOT EXISTS.
_SCHEMA_LOCK_KEY = 0x7469636B  # "tick"


def ohlcv_table_ddl(table: OhlcvTable) -> sql.Composed:
    """Render ``ohlcv_table.sql`` for one timeframe."""
    return sql.SQL(read_sql("ddl/ohlcv_table.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        time_type=sql.SQL({"timestamptz": "timestamptz", "date": "date"}[table.time_type]),
    )


def hypertable_ddl(table: OhlcvTable) -> sql.Composed:
    """Render ``hypertable.sql`` for one timeframe (a DO block takes no bind parameters)."""
    return sql.SQL(read_sql("ddl/hypertable.sql")).format(
        table_name=sql.Literal(table.table),
        time_column=sql.Literal(table.time_column),
        chunk_interval=sql.Literal(table.chunk_interval),
    )


def schema_statements() -> list[sql.Composable]:
    """Return every statement of the schema, in order."""
    statements: list[sql.Composable] = [
        sql.SQL(read_sql("ddl/timescaledb_extension.sql")),
        sql.SQL(read_sql("ddl/symbols.sql")),
        sql.SQL(read_sql("ddl/staging.sql")),
        sql.SQL(read_sql("ddl/split_watermark.sql")),
        sql.SQL(read_sql("ddl/adjustment_basis.sql")),
    ]
    for table in OHLCV_TABLES.values():
        statements.append(ohlcv_table_ddl(table))
        statements.append(hypertable_ddl(table))
    return statements


def apply_schema(conn: psycopg.Connection) -> None:
    """Create every table (and hypertable) that does not exist yet, in one transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for statement in schema_statements():
            conn.execute(statement)
    log.info("Schema applied: symbols, %s", ", ".join(t.table for t in OHLCV_TABLES.values()))


def timescaledb_enabled(conn: psycopg.Connection) -> bool:
    """Return whether the TimescaleDB extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def _main(argv: list[str] | None = None) -> int:
    import psycopg

    parser = argparse.ArgumentParser(prog="python -m tickstock.schema", description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("TICKSTOCK_POSTGRES_URL"), help="libpq URL or DSN")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("give --dsn or set TICKSTOCK_POSTGRES_URL")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with psycopg.connect(args.dsn) as conn:
        apply_schema(conn)
        log.info("TimescaleDB hypertables: %s", "on" if timescaledb_enabled(conn) else "off (plain PostgreSQL)")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
