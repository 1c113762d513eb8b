from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tickstock_dev import services

pytestmark = pytest.mark.integration


def test_embedded_redis_answers_pub_sub(redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe("tickstock.jobs.data_load")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    assert redis_client.publish("tickstock.jobs.data_load", '{"job_id": "j1"}') == 1
    message = pubsub.get_message(timeout=5)
    assert message["data"] == '{"job_id": "j1"}'
    pubsub.close()


@pytest.mark.usefixtures("schema")
def test_airflow_connections_reach_the_servers():
    # The AIRFLOW_CONN_* variables set by conftest are what the DAGs use: prove they work.
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.providers.redis.hooks.redis import RedisHook

    hook = PostgresHook(postgres_conn_id="tickstock_db")
    assert hook.get_first("SELECT count(*) FROM symbols") == (0,)
    assert hook.get_first("SELECT current_database()")[0].endswith("_test")
    client = RedisHook(redis_conn_id="tickstock_redis").get_conn()
    assert client.ping()
    assert client.connection_pool.connection_kwargs["db"] == 1


def test_postgres_url_env_replaces_the_embedded_server(tmp_path, service_urls):
    # With TICKSTOCK_POSTGRES_URL set, nothing is started in the (empty) state folder and the
    # given URL is what Airflow's tickstock_db connection points at.
    env = {
        **os.environ,
        services.STATE_DIR_ENV: str(tmp_path / "state"),
        services.POSTGRES_URL_ENV: service_urls.postgres_url,
        services.REDIS_URL_ENV: service_urls.redis_url,
    }
    out = subprocess.run(
        [sys.executable, "-m", "tickstock_dev.services", "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"export TICKSTOCK_POSTGRES_URL='{service_urls.postgres_url}'" in out
    conn_line = next(line for line in out.splitlines() if line.startswith("export AIRFLOW_CONN_TICKSTOCK_DB="))
    conn = json.loads(conn_line.split("=", 1)[1].strip("'"))
    assert conn["schema"] == "tickstock_test"
    assert not (tmp_path / "state" / "pgdata").exists()
    assert not (tmp_path / "state" / "redis").exists()


def test_connection_translation_handles_tcp_urls_with_credentials():
    conn = services.postgres_connection("postgresql://loader:s%40cret@db.internal:5433/tickstock?sslmode=require")
    assert conn == {
        "conn_type": "postgres",
        "host": "db.internal",
        "login": "loader",
        "schema": "tickstock",
        "password": "s@cret",
        "port": 5433,
        "extra": {"sslmode": "require"},
    }
    assert services.redis_connection("redis://:pw@cache:6380/2") == {
        "conn_type": "redis",
        "host": "cache",
        "port": 6380,
        "extra": {"db": 2},
        "password": "pw",
    }


def test_start_reuses_running_servers_and_stop_stops_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (services.POSTGRES_URL_ENV, services.REDIS_URL_ENV)}
    env[services.STATE_DIR_ENV] = str(tmp_path / "state")

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "tickstock_dev.services", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    try:
        first = cli("start")
        assert first.count("(started)") == 2
        second = cli("start")
        assert "(started)" not in second
        assert first.splitlines()[1].removesuffix(" (started)") == second.splitlines()[1]  # same port
        assert "running" in cli("status")
    finally:
        assert cli("stop") == "stopped: postgres, redis\n"
    assert cli("status").count("stopped") == 2
