from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from tickstock.schema import (
    current_revision,
    head_revision,
    hypertable_ddl,
    ohlcv_table_ddl,
    timescaledb_enabled,
    upgrade,
)
from tickstock.timeframes import OHLCV_TABLES, Timeframe

if TYPE_CHECKING:
    import psycopg

pytestmark = pytest.mark.integration


def _columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
        (table,),
    ).fetchall()
    return dict(rows)


def _primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        """SELECT a.attname FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s::regclass AND i.indisprimary
            ORDER BY array_position(i.indkey, a.attnum)""",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def test_upgrade_creates_the_design_documents_tables_and_a_second_upgrade_is_a_no_op(pg_conn):
    again = upgrade(pg_conn)  # the session fixture upgraded this database already
    assert (again.before, again.after) == (head_revision(), head_revision())
    assert current_revision(pg_conn) == head_revision()

    symbols = _columns(pg_conn, "symbols")
    for column in (
        "symbol",
        "name",
        "exchange",
        "sector",
        "industry",
        "issuer",
        "underlying_index",
        "type",
        "active",
        "last_updated",
    ):
        assert column in symbols
    assert _primary_key(pg_conn, "symbols") == ["symbol"]

    for table in OHLCV_TABLES.values():
        columns = _columns(pg_conn, table.table)
        assert columns[table.time_column] == (
            "timestamp with time zone" if table.timeframe is Timeframe.HOUR else "date"
        )
        for column in ("open", "high", "low", "close", "volume"):
            assert columns[column] == "numeric"
        assert "created_at" in columns
        # the unique key the design document's ON CONFLICT clauses name
        assert _primary_key(pg_conn, table.table) == ["symbol", table.time_column]


def test_volume_in_exponent_form_is_stored_exactly(pg_conn):
    pg_conn.execute(
        "INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume) "
        "VALUES ('AAPL', '2005-04-01', 1.5032, 1.5064, 1.4489, 1.4604, %s)",
        (Decimal("1.029145e+06"),),
    )
    volume = pg_conn.execute("SELECT volume FROM ohlcv_daily").fetchone()[0]
    assert volume == Decimal("1029145")


def test_plain_postgresql_keeps_plain_tables(pg_conn):
    # The embedded server has no TimescaleDB: the guarded DO blocks must be no-ops there.
    assert not timescaledb_enabled(pg_conn)


def test_ddl_is_rendered_per_timeframe_with_quoted_identifiers(pg_conn):
    hourly = ohlcv_table_ddl(OHLCV_TABLES[Timeframe.HOUR]).as_string(pg_conn)
    assert 'CREATE TABLE IF NOT EXISTS "ohlcv_hourly"' in hourly
    assert '"timestamp"  timestamptz' in hourly
    hyper = hypertable_ddl(OHLCV_TABLES[Timeframe.DAY]).as_string(pg_conn)
    assert "'ohlcv_daily', 'date', '365 days'" in hyper
