"""Alembic environment for TickStock's database (never Airflow's metadata DB).

Configured by :func:`tickstock.schema.alembic_config`: ``config.attributes`` carries the DSN, the
``--hypertables`` choice and a list that collects the server's warnings. Online and offline
(``sql``) runs go through the same steps in one transaction: the advisory lock, the pending
revisions, then the TimescaleDB step (:func:`tickstock.schema.timescale_statements`).
"""

from __future__ import annotations

import logging

from alembic import context

from tickstock import schema

log = logging.getLogger("tickstock.schema")
config = context.config


def _steps() -> None:
    migration = context.get_context()
    schema.run_sql(migration, f"SELECT pg_advisory_xact_lock({schema.SCHEMA_LOCK_KEY})")
    context.run_migrations()
    for statement in schema.timescale_statements(convert_populated=bool(config.attributes.get("hypertables"))):
        schema.run_sql(migration, statement)


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        version_table=schema.VERSION_TABLE,
        transactional_ddl=True,
        output_buffer=config.output_buffer,
    )
    with context.begin_transaction():
        _steps()


def run_online() -> None:
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    warnings: list[str] = config.attributes.setdefault("warnings", [])

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            warnings.append(diag.message_primary or "")
            log.warning("%s", diag.message_primary)

    def connect() -> psycopg.Connection:
        conn = psycopg.connect(config.attributes["dsn"])
        conn.add_notice_handler(on_notice)
        return conn

    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, version_table=schema.VERSION_TABLE, transactional_ddl=True)
            with context.begin_transaction():
                _steps()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
