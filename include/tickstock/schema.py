"""TickStock's database schema: versioned Alembic migrations, applied by tooling, never by a load.

The migrations live in ``tickstock/migrations`` (``env.py`` + ``versions/``) and record the
revision in their own table, :data:`VERSION_TABLE`, so they never mix with Airflow's metadata DB
(which has its own ``alembic_version``). Alembic is configured here, in code, so it works from
any directory and inside the docker image without an ``alembic.ini``.

Who calls what:

* tooling (``make test`` / ``make demo`` / ``make airflow``, benchmarks, the compose
  ``airflow-init``) runs :func:`upgrade` (or ``python -m tickstock.schema upgrade``);
* load runs (``plan_load``, ``plan_refresh``) only call :func:`require_head`, which fails at once
  when the database is behind, so a load never changes the schema.

Every migration statement is plain, idempotent SQL from ``include/sql/ddl`` that is sent as is
online and printed as is by ``sql`` (Alembic's offline mode), so what a DBA reviews from ``sql``
is literally what ``upgrade`` runs. The whole upgrade is one transaction: a refused upgrade (an
unusable column type, duplicate keys) changes nothing.

CLI::

    python -m tickstock.schema upgrade [--hypertables] [--dsn URL]
    python -m tickstock.schema current [--dsn URL]
    python -m tickstock.schema check   [--dsn URL]      # exit 1 when behind head
    python -m tickstock.schema sql     [--from REV] [--hypertables]
    python -m tickstock.schema downgrade REV [--dsn URL]  # REV 'base': undo everything 0001 added
    python -m tickstock.schema revision -m "what changes"  # a new versions/ file

``--dsn`` defaults to ``$TICKSTOCK_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from tickstock.sqlfiles import read_sql
from tickstock.timeframes import OHLCV_TABLES, OhlcvTable

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "tickstock_schema_version"
UPGRADE_COMMAND = "python -m tickstock.schema upgrade"

# A transaction-scoped advisory lock so concurrent upgraders (several tooling processes, the init
# container) serialise instead of racing; the second one then finds the schema at head.
SCHEMA_LOCK_KEY = 0x7469636B  # "tick"
# The comment revision 0001 leaves on every table, column and constraint it adds, so that its
# downgrade removes exactly those and nothing the database had before.
ADDED_BY_0001 = "added by tickstock.schema revision 0001 (its downgrade removes this)"

_TEXT = ("text", "character varying")
_DECIMAL = ("numeric", "double precision", "real")
_INSTANT = ("timestamp with time zone", "timestamp without time zone")
_COUNT = ("numeric", "bigint", "double precision")

# Columns the loader adds to an existing table when missing: nullable or defaulted, so adding
# them keeps every existing row (PostgreSQL 11+ stores a constant default without a rewrite).
# They match the CREATE TABLE files (ohlcv_table.sql, symbols.sql) for a new database.
_OHLCV_ADDED: tuple[tuple[str, str], ...] = (
    ("vwap", "numeric"),
    ("transactions", "bigint"),
    ("created_at", "timestamptz NOT NULL DEFAULT now()"),
    ("updated_at", "timestamptz NOT NULL DEFAULT now()"),
)
_SYMBOLS_ADDED: tuple[tuple[str, str], ...] = (
    *((name, "text") for name in ("name", "exchange", "sector", "industry", "issuer", "underlying_index", "type")),
    ("active", "boolean NOT NULL DEFAULT true"),
    *((name, "text") for name in ("market", "currency_name", "cik", "composite_figi")),
    ("list_date", "date"),
    ("delisted_at", "timestamptz"),
    ("last_updated", "timestamptz NOT NULL DEFAULT now()"),
)
# Types the loader can write each column as (format_type without modifiers). The user's type is
# kept when it is one of these: VARCHAR symbols, NUMERIC(p,s)/float prices, BIGINT volume,
# ``timestamp without time zone`` instants (read as UTC, see README "Using an existing ...").
_SYMBOLS_ACCEPTED: dict[str, tuple[str, ...]] = {
    "symbol": _TEXT,
    **{name: _TEXT for name, type_ in _SYMBOLS_ADDED if type_ == "text"},
    "active": ("boolean",),
    "list_date": ("date",),
    "delisted_at": ("timestamp with time zone",),
    "last_updated": _INSTANT,
}


def ohlcv_accepted_types(table: OhlcvTable) -> dict[str, tuple[str, ...]]:
    """Return the column types the loader can write into ``table``."""
    time_types = _INSTANT if table.is_intraday else ("date",)
    return {
        "symbol": _TEXT,
        table.time_column: time_types,
        **{name: _DECIMAL for name in ("open", "high", "low", "close", "vwap")},
        "volume": _COUNT,
        "transactions": ("bigint", "integer", "numeric"),
        "created_at": _INSTANT,
        "updated_at": _INSTANT,
    }


class SchemaNotAtHead(RuntimeError):
    """The TickStock database is not at the migrations' head revision: a load must not start."""


class SchemaUpgradeError(RuntimeError):
    """An upgrade was refused (e.g. duplicate keys, an unusable column type); nothing was changed."""


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did: the revision before and after, and the server's warnings."""

    before: str | None
    after: str
    warnings: list[str] = field(default_factory=list)


# --- the statements migrations run ------------------------------------------------------------


def _render(composed: sql.Composable) -> str:
    """Render a statement without a connection (identifiers and literals only, no bind values)."""
    return composed.as_string(None).strip()


def ohlcv_table_ddl(table: OhlcvTable) -> sql.Composed:
    """Render ``ohlcv_table.sql`` (CREATE TABLE IF NOT EXISTS) for one timeframe."""
    return sql.SQL(read_sql("ddl/ohlcv_table.sql")).format(
        table=sql.Identifier(table.table),
        time_column=sql.Identifier(table.time_column),
        time_type=sql.SQL({"timestamptz": "timestamptz", "date": "date"}[table.time_type]),
    )


def _text_array(values: tuple[str, ...] | list[str]) -> sql.Composed:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, values)))


def create_table_ddl(table: str, create: str) -> str:
    """Render ``create_table.sql``: run a CREATE TABLE file unless the table exists, and mark it."""
    body = "\n".join(f"        {line}" if line else line for line in create.strip().splitlines())
    return _render(
        sql.SQL(read_sql("ddl/create_table.sql")).format(
            table=sql.Identifier(table),
            table_name=sql.Literal(table),
            create=sql.SQL(body.replace("{", "{{").replace("}", "}}")),
            marker=sql.Literal(ADDED_BY_0001),
        )
    )


def adopt_columns_ddl(table: str, added: tuple[tuple[str, str], ...], accepted: dict[str, tuple[str, ...]]) -> str:
    """Render ``adopt_columns.sql``: add the missing columns, refuse unusable ones."""
    add_columns = sql.SQL(",\n                                       ").join(
        sql.SQL("({}, {}, {})").format(sql.Literal(position), sql.Literal(name), sql.Literal(type_))
        for position, (name, type_) in enumerate(added, 1)
    )
    columns = sql.SQL(", ").join(
        sql.SQL("({}, {})").format(sql.Literal(name), _text_array(types)) for name, types in accepted.items()
    )
    return _render(
        sql.SQL(read_sql("ddl/adopt_columns.sql")).format(
            table_name=sql.Literal(table),
            add_columns=add_columns,
            columns=columns,
            marker=sql.Literal(ADDED_BY_0001),
        )
    )


def upsert_key_ddl(table: str, key: tuple[str, ...]) -> str:
    """Render ``upsert_key.sql``: make sure ``ON CONFLICT (key)`` has its unique index."""
    constraint = f"{table}_{'_'.join(key)}_key"
    example = sql.SQL("DELETE FROM {t} a USING {t} b WHERE {same} AND a.ctid < b.ctid").format(
        t=sql.Identifier(table),
        same=sql.SQL(" AND ").join(sql.SQL("a.{c} = b.{c}").format(c=sql.Identifier(column)) for column in key),
    )
    return _render(
        sql.SQL(read_sql("ddl/upsert_key.sql")).format(
            table=sql.Identifier(table),
            table_name=sql.Literal(table),
            key=sql.SQL(", ").join(map(sql.Identifier, key)),
            key_names=_text_array(key),
            constraint=sql.Identifier(constraint),
            constraint_text=sql.Literal(f"constraint {constraint} UNIQUE ({', '.join(key)}) on {table}"),
            dedup_example=sql.Literal(example.as_string(None)),
            marker=sql.Literal(ADDED_BY_0001),
        )
    )


def hypertable_ddl(table: OhlcvTable, *, convert_populated: bool = False) -> sql.Composed:
    """Render ``hypertable.sql`` for one timeframe (a DO block takes no bind parameters)."""
    return sql.SQL(read_sql("ddl/hypertable.sql")).format(
        table_name=sql.Literal(table.table),
        time_column=sql.Literal(table.time_column),
        chunk_interval=sql.Literal(table.chunk_interval),
        convert_populated=sql.Literal(convert_populated),
    )


def adopt_or_create_statements() -> list[str]:
    """Revision 0001: create today's tables, or bring the design document's existing ones forward."""
    statements = [
        create_table_ddl("symbols", read_sql("ddl/symbols.sql")),
        adopt_columns_ddl("symbols", _SYMBOLS_ADDED, _SYMBOLS_ACCEPTED),
        upsert_key_ddl("symbols", ("symbol",)),
        create_table_ddl("ohlcv_staging", read_sql("ddl/staging.sql")),
    ]
    for table in OHLCV_TABLES.values():
        statements += [
            create_table_ddl(table.table, _render(ohlcv_table_ddl(table))),
            adopt_columns_ddl(table.table, _OHLCV_ADDED, ohlcv_accepted_types(table)),
            upsert_key_ddl(table.table, ("symbol", table.time_column)),
        ]
    return statements


def revert_0001_statements() -> list[str]:
    """Revision 0001's downgrade: drop the constraints, columns and tables its upgrade added."""
    return [_render(sql.SQL(read_sql("ddl/revert_0001.sql")).format(marker=sql.Literal(ADDED_BY_0001)))]


def timescale_statements(*, convert_populated: bool = False) -> list[str]:
    """The TimescaleDB step every upgrade ends with: the extension (when preloaded), hypertables.

    Not a revision: TimescaleDB may be installed, or a populated table approved for conversion
    (``--hypertables``), long after the database reached head. Without TimescaleDB every block
    returns at once.
    """
    return [
        _render(sql.SQL(read_sql("ddl/timescaledb_extension.sql"))),
        *(_render(hypertable_ddl(t, convert_populated=convert_populated)) for t in OHLCV_TABLES.values()),
    ]


def run_sql(context: MigrationContext, statement: str) -> None:
    """Run one statement online, or print it unchanged in offline (``sql``) mode.

    ``op.execute`` would wrap the text in SQLAlchemy's ``text()`` (which reads ``:name`` as a bind
    parameter and rewrites tabs offline); the driver gets exactly the SQL file's text instead.
    """
    if context.as_sql:
        context.impl.static_output(statement.rstrip().rstrip(";") + ";")
    else:
        # The DBAPI cursor, with no parameters: psycopg then leaves % (format()'s %I) alone.
        with context.connection.connection.cursor() as cursor:
            cursor.execute(statement)


# --- the Python API ---------------------------------------------------------------------------


def alembic_config(*, dsn: str | None = None, hypertables: bool = False, output: io.StringIO | None = None) -> Config:
    """Return an Alembic configuration for TickStock's migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["dsn"] = dsn
    config.attributes["hypertables"] = hypertables
    config.attributes["warnings"] = []
    return config


@functools.cache
def head_revision() -> str:
    """Return the single head revision of the migrations in this package.

    Cached: the package's migrations do not change while a process runs, and reading them
    (Alembic imports and loads every revision file) cost ``plan_load`` about a second on a busy
    worker. The Celery workers compute it before they fork (:mod:`tickstock_airflow.celery_config`).
    """
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"TickStock migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def current_revision(conn: psycopg.Connection) -> str | None:
    """Return the database's revision (``None``: never upgraded), without leaving a transaction open."""
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()[0]
        if not exists:
            return None
        rows = conn.execute(sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(VERSION_TABLE))).fetchall()
    if len(rows) > 1:
        raise SchemaNotAtHead(f"{VERSION_TABLE} holds several revisions ({', '.join(r[0] for r in rows)})")
    return rows[0][0] if rows else None


def require_head(conn: psycopg.Connection) -> str:
    """Return the head revision, or raise :class:`SchemaNotAtHead` saying how to upgrade.

    Load runs call this instead of changing the schema themselves.
    """
    head = head_revision()
    current = current_revision(conn)
    if current != head:
        state = "has no TickStock schema version" if current is None else f"is at schema revision {current}"
        raise SchemaNotAtHead(
            f"The TickStock database {state}; this loader needs revision {head}: "
            f"run `{UPGRADE_COMMAND}` (docs: README, 'Using an existing TickStock database')"
        )
    return head


def _dsn_of(target: str | psycopg.Connection) -> str:
    if isinstance(target, str):
        return target
    from psycopg.conninfo import make_conninfo

    params = target.info.get_parameters()
    if target.info.password:
        params["password"] = target.info.password
    return make_conninfo("", **params)


def upgrade(target: str | psycopg.Connection, *, hypertables: bool = False, revision: str = "head") -> UpgradeResult:
    """Upgrade TickStock's database to ``revision`` in one transaction; a no-op when already there.

    :param target: a libpq URL/DSN, or a psycopg connection whose parameters are reused (a new
        connection is opened; the given one is not touched)
    :param hypertables: also convert populated plain OHLCV tables into hypertables on TimescaleDB
        (``migrate_data``: locks and rewrites them); empty tables are converted regardless
    :raises SchemaUpgradeError: the upgrade was refused; the message says why and how to fix it
    """
    from alembic import command

    dsn = _dsn_of(target)
    config = alembic_config(dsn=dsn, hypertables=hypertables)
    before, after = _run_alembic(dsn, lambda: command.upgrade(config, revision))
    assert after is not None
    if before == after:
        log.info("TickStock schema already at revision %s", after)
    else:
        log.info("TickStock schema upgraded: %s -> %s", before or "(none)", after)
    return UpgradeResult(before, after, list(config.attributes["warnings"]))


def downgrade(target: str | psycopg.Connection, revision: str) -> UpgradeResult:
    """Downgrade to ``revision`` (``"base"``: before 0001) in one transaction.

    Each revision's downgrade removes only what its upgrade added; 0001's drops the columns and
    keys it gave existing tables and the tables it created (with their rows).
    """
    from alembic import command

    dsn = _dsn_of(target)
    config = alembic_config(dsn=dsn)
    config.attributes["downgrade"] = True
    before, after = _run_alembic(dsn, lambda: command.downgrade(config, revision))
    log.info("TickStock schema downgraded: %s -> %s", before or "(none)", after or "(none)")
    return UpgradeResult(before, after or "base", list(config.attributes["warnings"]))


def _run_alembic(dsn: str, step: Callable[[], None]) -> tuple[str | None, str | None]:
    """Run one Alembic command; return the revisions before and after it.

    A refused step (a RAISE in a DO block, a lock timeout) reaches the caller as
    :class:`SchemaUpgradeError` with the server's own message, not SQLAlchemy's wrapper.
    """
    import psycopg
    from sqlalchemy.exc import DBAPIError

    with psycopg.connect(dsn) as conn:
        before = current_revision(conn)
    try:
        step()
    except DBAPIError as exc:
        raise SchemaUpgradeError(_server_message(exc.orig)) from None
    except psycopg.Error as exc:
        raise SchemaUpgradeError(_server_message(exc)) from None
    with psycopg.connect(dsn) as conn:
        return before, current_revision(conn)


def _server_message(error: BaseException | None) -> str:
    diag = getattr(error, "diag", None)
    if diag is None or not diag.message_primary:
        return str(error)
    return " ".join(part for part in (diag.message_primary, diag.message_hint) if part)


def offline_sql(*, start: str | None = None, hypertables: bool = False, revision: str = "head") -> str:
    """Return the SQL an upgrade from ``start`` (default: an empty database) runs, for review.

    Applied with ``psql -v ON_ERROR_STOP=1 -f``, it has the same effect as :func:`upgrade`.
    """
    from alembic import command

    output = io.StringIO()
    config = alembic_config(hypertables=hypertables, output=output)
    command.upgrade(config, f"{start}:{revision}" if start else revision, sql=True)
    return output.getvalue()


def column_types(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """Return ``{column: type}`` of ``table`` from the catalog (``format_type`` without modifiers).

    An adopted table keeps the user's types (VARCHAR, NUMERIC(12,4), BIGINT, ``timestamp without
    time zone``); SQL that must treat them differently reads them here once per task.
    """
    rows = conn.execute(read_sql("ddl/column_types.sql"), {"table": table}).fetchall()
    return dict(rows)


def is_naive_instant(column_type: str) -> bool:
    """Whether a column stores instants without a time zone: the loader reads and writes them as UTC."""
    return column_type == "timestamp without time zone"


def timescaledb_enabled(conn: psycopg.Connection) -> bool:
    """Return whether the TimescaleDB extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


# --- CLI --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tickstock.schema", description="TickStock database schema migrations (Alembic)."
    )
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--dsn",
        default=os.environ.get("TICKSTOCK_POSTGRES_URL"),
        help="libpq URL or DSN of the TickStock database (default: $TICKSTOCK_POSTGRES_URL)",
    )
    hyper = argparse.ArgumentParser(add_help=False)
    hyper.add_argument(
        "--hypertables",
        action="store_true",
        help="on TimescaleDB, also convert OHLCV tables that already hold rows into hypertables "
        "(migrate_data: locks and rewrites each table; review first). Empty tables are always converted.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", parents=[database, hyper], help="upgrade the database to head (one transaction)")
    down = commands.add_parser(
        "downgrade", parents=[database], help="undo revisions down to REVISION ('base': before 0001)"
    )
    down.add_argument("revision")
    commands.add_parser("current", parents=[database], help="print the database's revision and the head")
    commands.add_parser("check", parents=[database], help="exit 1 unless the database is at head")
    offline = commands.add_parser("sql", parents=[hyper], help="print the SQL an upgrade runs (offline mode)")
    offline.add_argument("--from", dest="start", help="revision the database is at (default: an empty database)")
    new = commands.add_parser("revision", help="create versions/<next>_<slug>.py for a schema change")
    new.add_argument("-m", "--message", required=True)
    return parser


def _next_revision_id() -> str:
    from alembic.script import ScriptDirectory

    ids = [int(s.revision) for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    return f"{max(ids, default=0) + 1:04d}"


def _main(argv: list[str] | None = None) -> int:
    import psycopg

    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up chatter
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)  # "Running upgrade ..."
    if args.command == "sql":
        sys.stdout.write(offline_sql(start=args.start, hypertables=args.hypertables))
        return 0
    if args.command == "revision":
        from alembic import command

        command.revision(alembic_config(), message=args.message, rev_id=_next_revision_id())
        return 0
    if not args.dsn:
        parser.error("give --dsn or set TICKSTOCK_POSTGRES_URL")
    if args.command == "upgrade":
        try:
            upgrade(args.dsn, hypertables=args.hypertables)
        except SchemaUpgradeError as exc:
            print(f"upgrade refused: {exc}", file=sys.stderr)
            return 1
        with psycopg.connect(args.dsn) as conn:
            enabled = timescaledb_enabled(conn)
        log.info("TimescaleDB hypertables: %s", "on" if enabled else "off (plain PostgreSQL)")
        return 0
    if args.command == "downgrade":
        try:
            downgrade(args.dsn, args.revision)
        except SchemaUpgradeError as exc:
            print(f"downgrade refused: {exc}", file=sys.stderr)
            return 1
        return 0
    with psycopg.connect(args.dsn) as conn:
        current = current_revision(conn)
    head = head_revision()
    print(f"current: {current or '(none)'}\nhead:    {head}")
    if args.command == "check" and current != head:
        print(f"not at head ({current or 'no revision'} != {head}): run `{UPGRADE_COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
