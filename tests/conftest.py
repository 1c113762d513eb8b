"""Test session set-up: real PostgreSQL and Redis, and an Airflow home of its own.

Airflow reads ``AIRFLOW__*`` / ``AIRFLOW_CONN_*`` when it is first imported, so everything is set
in ``pytest_configure``, before test modules (and Airflow) are imported. The embedded servers
are shared with development (or replaced by ``TICKSTOCK_POSTGRES_URL`` / ``TICKSTOCK_REDIS_URL``);
tests use their own database (``<db>_test``, recreated per session) and Redis database index 1,
so a test run never touches development data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest_plugins = ["massive_sim.testing"]

TEST_REDIS_DB = 1
_STARTED = pytest.StashKey[services.ServiceUrls]()
_TEST_URLS = pytest.StashKey[services.ServiceUrls]()


def _test_database_url(postgres_url: str) -> str:
    database = urlsplit(postgres_url).path.lstrip("/") or services.DEFAULT_DATABASE
    test_db = f"{database}_test"
    admin_url = services.with_database(postgres_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{test_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{test_db}"')
    return services.with_database(postgres_url, test_db)


def _test_redis_url(redis_url: str) -> str:
    return urlsplit(redis_url)._replace(path=f"/{TEST_REDIS_DB}").geturl()


def pytest_configure(config: pytest.Config) -> None:
    base = services.state_dir()
    urls = services.ensure_services(base)
    test_urls = services.ServiceUrls(_test_database_url(urls.postgres_url), _test_redis_url(urls.redis_url))
    config.stash[_STARTED] = urls
    config.stash[_TEST_URLS] = test_urls
    redis.Redis.from_url(test_urls.redis_url).flushdb()
    env = airflow_env(base / "airflow-test", test_urls)
    os.environ.update(env)
    ensure_airflow_db(env)


def pytest_unconfigure(config: pytest.Config) -> None:
    started = config.stash.get(_STARTED, None)
    if started and (started.started_postgres or started.started_redis):
        services.stop_services(services.state_dir())


@pytest.fixture(scope="session")
def service_urls(pytestconfig: pytest.Config) -> services.ServiceUrls:
    """URLs of the test database and test Redis database."""
    return pytestconfig.stash[_TEST_URLS]


@pytest.fixture(scope="session")
def schema(service_urls: services.ServiceUrls) -> None:
    from tickstock.schema import apply_schema

    with psycopg.connect(service_urls.postgres_url) as conn:
        apply_schema(conn)


@pytest.fixture
def pg_conn(service_urls: services.ServiceUrls, schema: None) -> Iterator[psycopg.Connection]:
    """A connection to the test database with the schema applied and every table empty."""
    from tickstock.timeframes import OHLCV_TABLES

    with psycopg.connect(service_urls.postgres_url, autocommit=True) as conn:
        tables = ", ".join(["symbols", *(t.table for t in OHLCV_TABLES.values())])
        conn.execute(f"TRUNCATE {tables}, ohlcv_staging, split_watermark, adjustment_basis")
        yield conn


@pytest.fixture
def redis_client(service_urls: services.ServiceUrls) -> Iterator[redis.Redis]:
    """A client on the test Redis database, emptied before the test."""
    client = redis.Redis.from_url(service_urls.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()
