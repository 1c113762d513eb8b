"""docker/init_tickstock.py, the compose stack's init step, run for real outside docker.

The script is what ``airflow-init`` runs after the image's entrypoint migrated the metadata
DB, so here it runs against a migrated copy of the test session's Airflow database and the
embedded PostgreSQL (plain PostgreSQL: TimescaleDB cannot run here, so the hypertable branch is
exercised only through its refusal).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tickstock.schema import current_revision, head_revision

ROOT = Path(__file__).resolve().parents[2]

READ_BACK = """
import json
from sqlalchemy import select
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session

with create_session() as session:
    conns = {c.conn_id: {"conn_type": c.conn_type, "host": c.host, "port": c.port, "login": c.login,
                         "password": c.password, "schema": c.schema, "extra": c.extra_dejson}
             for c in session.scalars(select(Connection))}
    pools = {p.pool: p.slots for p in session.scalars(select(Pool))}
    variables = {v.key: v.val for v in session.scalars(select(Variable))}
print(json.dumps({"connections": conns, "pools": pools, "variables": variables}))
"""


@pytest.fixture
def airflow_home(tmp_path: Path) -> dict[str, str]:
    """Environment of a fresh Airflow home whose DB is a copy of the migrated test DB."""
    source = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(source, home / "airflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONFIG=str(home / "airflow.cfg"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=os.pathsep.join(str(ROOT / d) for d in ("include", "plugins")),
    )
    return env


@pytest.mark.integration
def test_init_creates_connections_pool_variable_and_schema(airflow_home, new_database) -> None:
    postgres_url = new_database("init")  # a new TickStock database: init upgrades it to head
    env = {
        **airflow_home,
        "MASSIVE_API_KEY": "test-key",
        "MASSIVE_BASE_URL": "http://massive-sim:8900",
        "MASSIVE_RATE_LIMIT": "5/min",
        "MASSIVE_POOL_SLOTS": "3",
        "TICKSTOCK_POSTGRES_URL": postgres_url,
        "TICKSTOCK_REDIS_URL": "redis://tickstock-redis:6379/0",
    }
    init = ROOT / "docker" / "init_tickstock.py"
    for _ in range(2):  # every `docker compose up` re-runs init: the second run must succeed too
        done = subprocess.run([sys.executable, str(init)], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    assert "hypertables: none (plain PostgreSQL)" in done.stdout

    read = subprocess.run(
        [sys.executable, "-c", READ_BACK], env=airflow_home, capture_output=True, text=True, check=True
    )
    state = json.loads(read.stdout.strip().splitlines()[-1])
    conns = state["connections"]
    assert conns["massive_default"]["conn_type"] == "http"
    assert conns["massive_default"]["host"] == "http://massive-sim:8900"
    assert conns["massive_default"]["password"] == "test-key"
    assert conns["tickstock_redis"]["host"] == "tickstock-redis"
    assert conns["tickstock_redis"]["port"] == 6379
    assert conns["tickstock_redis"]["extra"] == {"db": 0}
    # The DB connection is the one the embedded server's URL describes (unix socket host).
    from tickstock_dev.services import postgres_connection

    expected_db = postgres_connection(postgres_url)
    assert conns["tickstock_db"]["conn_type"] == "postgres"
    for field in ("host", "login", "schema"):
        assert conns["tickstock_db"][field] == expected_db[field]
    assert state["pools"]["massive_api"] == 3
    assert state["variables"]["massive_rate_limit"] == "5/min"

    with psycopg.connect(postgres_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        revision = current_revision(conn)
    assert {"symbols", "ohlcv_hourly", "ohlcv_daily", "ohlcv_weekly", "ohlcv_monthly"} <= tables
    assert revision == head_revision()


@pytest.mark.integration
def test_init_refuses_plain_postgres_when_hypertables_are_required(service_urls, schema, init_module) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    with pytest.raises(init_module.InitError, match="TimescaleDB is not active"):
        init_module.upgrade_schema_and_check(env, service_urls.postgres_url, require_hypertables=True)
    assert init_module.upgrade_schema_and_check(env, service_urls.postgres_url, require_hypertables=False) == []


def test_init_refuses_a_missing_key(init_module) -> None:
    env = {"TICKSTOCK_POSTGRES_URL": "postgresql://u:p@db/x", "TICKSTOCK_REDIS_URL": "redis://r:6379/0"}
    with pytest.raises(init_module.InitError, match="MASSIVE_API_KEY"):
        init_module.connections_from_env({**env, "MASSIVE_API_KEY": "  "})
    assert init_module.main({**env, "MASSIVE_API_KEY": ""}) == 2


def test_connection_urls_translate_like_the_dev_services(init_module) -> None:
    """Compose and `make airflow` describe the same servers through one translation."""
    from tickstock import connections
    from tickstock_dev import services

    assert init_module.postgres_connection is connections.postgres_connection is services.postgres_connection
    assert init_module.redis_connection is connections.redis_connection is services.redis_connection
    pg = init_module.postgres_connection("postgresql://tick%40user:s%3Acret@timescaledb:5432/tickstock")
    assert (pg["host"], pg["login"], pg["password"], pg["schema"], pg["port"]) == (
        "timescaledb",
        "tick@user",
        "s:cret",
        "tickstock",
        5432,
    )
    assert init_module.redis_connection("rediss://:pw@tickstock-redis:6380/2") == {
        "conn_type": "redis",
        "host": "tickstock-redis",
        "port": 6380,
        "password": "pw",
        "extra": {"db": 2, "ssl": True},
    }
