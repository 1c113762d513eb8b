"""TickStock's part of ``airflow-init``: connections, pool, Variable, schema, hypertable check.

Run by the compose file's ``airflow-init`` service after the image's entrypoint has migrated
Airflow's database and created the admin user. Everything comes from environment variables
that docker-compose.yaml fills from ``.env``, so ``.env`` stays the one place an operator edits:
re-running init (every ``docker compose up``) rewrites the three connections, the pool size and
the ``massive_rate_limit`` Variable from it, and is otherwise a no-op (``python -m
tickstock.schema upgrade`` does nothing at head). Connections go into Airflow's metadata
database (encrypted with the generated Fernet key) rather than ``AIRFLOW_CONN_*`` variables, so
they are visible and testable in the UI and the API key is not in every container's environment.

It only needs the standard library, Airflow, psycopg and alembic, so it runs in the image
without the repository's dev tooling; ``tests/ops/test_init_tickstock.py`` runs it for real
against the embedded PostgreSQL and a throw-away Airflow home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tickstock.connections import postgres_connection, redis_connection

MASSIVE_CONN_ID = "massive_default"
DB_CONN_ID = "tickstock_db"
REDIS_CONN_ID = "tickstock_redis"
MASSIVE_POOL = "massive_api"
RATE_LIMIT_VARIABLE = "massive_rate_limit"

DEFAULT_BASE_URL = "https://api.massive.com"
DEFAULT_RATE_LIMIT = "100/s"
DEFAULT_POOL_SLOTS = 8


class InitError(RuntimeError):
    """A required setting is missing or the database is not what the stack promises."""


def connections_from_env(env: dict[str, str]) -> dict[str, dict[str, object]]:
    """Return the three connections the DAGs use, built from the compose environment."""
    api_key = env.get("MASSIVE_API_KEY", "").strip()
    if not api_key:
        raise InitError("MASSIVE_API_KEY is empty: put the Massive API key in .env (sim-key for the simulator)")
    for name in ("TICKSTOCK_POSTGRES_URL", "TICKSTOCK_REDIS_URL"):
        if not env.get(name):
            raise InitError(f"{name} is not set")
    return {
        MASSIVE_CONN_ID: {
            "conn_type": "http",
            "host": env.get("MASSIVE_BASE_URL") or DEFAULT_BASE_URL,
            "password": api_key,
            "description": "Massive market-data API: host = base URL, password = API key",
        },
        DB_CONN_ID: postgres_connection(env["TICKSTOCK_POSTGRES_URL"]),
        REDIS_CONN_ID: redis_connection(env["TICKSTOCK_REDIS_URL"]),
    }


def configure_airflow(connections: dict[str, dict[str, object]], pool_slots: int, rate_limit: str) -> None:
    """Write the connections, the ``massive_api`` pool and the rate-limit Variable, idempotently.

    In-process through Airflow's models, as ``airflow connections import --overwrite`` /
    ``airflow pools set`` / ``airflow variables set`` do: one Airflow start-up instead of three
    CLI processes (each costs seconds), and one transaction for all of it.
    """
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for conn_id, spec in connections.items():
            fields = dict(spec)
            extra = fields.pop("extra", None)
            existing = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(Connection(conn_id=conn_id, extra=json.dumps(extra) if extra else None, **fields))
        Pool.create_or_update_pool(
            MASSIVE_POOL, pool_slots, "Massive API fetches", include_deferred=False, session=session
        )
        Variable.set(
            RATE_LIMIT_VARIABLE, rate_limit, description="Massive request budget of all workers", session=session
        )


def upgrade_schema_and_check(env: dict[str, str], postgres_url: str, require_hypertables: bool) -> list[str]:
    """Upgrade the TickStock schema to head; return the hypertables (and insist on them when asked).

    Populated plain tables are not converted here (``upgrade --hypertables`` is a reviewed step).
    """
    upgrade = [sys.executable, "-m", "tickstock.schema", "upgrade", "--dsn", postgres_url]
    if subprocess.run(upgrade, env=env, check=False).returncode:
        raise InitError("the TickStock schema upgrade was refused (reason above); nothing was changed")
    import psycopg

    from tickstock.timeframes import OHLCV_TABLES

    with psycopg.connect(postgres_url) as conn:
        has_timescale = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        hypertables = (
            [
                row[0]
                for row in conn.execute(
                    "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
                ).fetchall()
            ]
            if has_timescale
            else []
        )
    if require_hypertables and not has_timescale:
        raise InitError(
            "TimescaleDB is not active in the TickStock database (no hypertables): "
            "is the timescaledb image used and was the data volume initialised by it?"
        )
    plain = sorted({t.table for t in OHLCV_TABLES.values()} - set(hypertables))
    if require_hypertables and plain:
        raise InitError(
            f"{', '.join(plain)} stayed plain tables (they hold rows, or a unique key lacks the time column: "
            "see the upgrade's warnings). Converting them locks and rewrites them; after review run "
            "`docker compose run --rm --no-deps airflow-cli python -m tickstock.schema upgrade --hypertables`"
        )
    return hypertables


def main(env: dict[str, str] | None = None) -> int:
    """Run every step; exit non-zero with one clear line when a setting is wrong."""
    env = dict(os.environ if env is None else env)
    try:
        connections = connections_from_env(env)
        slots = int(env.get("MASSIVE_POOL_SLOTS") or DEFAULT_POOL_SLOTS)
        rate_limit = env.get("MASSIVE_RATE_LIMIT") or DEFAULT_RATE_LIMIT
        configure_airflow(connections, slots, rate_limit)
        print(f"connections: {', '.join(connections)}")
        print(f"pool: {MASSIVE_POOL} ({slots} slots)")
        print(f"variable: {RATE_LIMIT_VARIABLE}={rate_limit}")
        require = env.get("TICKSTOCK_REQUIRE_HYPERTABLES", "").lower() in {"1", "true", "yes"}
        hypertables = upgrade_schema_and_check(env, env["TICKSTOCK_POSTGRES_URL"], require)
        print(f"schema at head; hypertables: {', '.join(hypertables) or 'none (plain PostgreSQL)'}")
    except InitError as exc:
        print(f"airflow-init: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
