"""Test session set-up: real PostgreSQL and Redis, and an Airflow home of its own.

Airflow reads ``AIRFLOW__*`` / ``AIRFLOW_CONN_*`` when it is first imported, so everything is set
in ``pytest_configure``, before test modules (and Airflow) are imported. The embedded servers
are shared with development (or replaced by ``TICKSTOCK_POSTGRES_URL`` / ``TICKSTOCK_REDIS_URL``);
tests use their own database (``<db>_test``, recreated per session) and Redis database index 1,
so a test run never touches development data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytest_plugins = ["massive_sim.testing"]

TEST_REDIS_DB = 1
BROWNFIELD_SQL = Path(__file__).resolve().parent / "sql" / "brownfield"
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
    """The test database upgraded to head, as tooling does (load runs only check the revision)."""
    from tickstock.schema import upgrade

    upgrade(service_urls.postgres_url)


@pytest.fixture
def pg_conn(service_urls: services.ServiceUrls, schema: None) -> Iterator[psycopg.Connection]:
    """A connection to the test database at the schema head, every table empty."""
    from tickstock.staging import clear_all_staged
    from tickstock.timeframes import OHLCV_TABLES

    with psycopg.connect(service_urls.postgres_url, autocommit=True) as conn:
        tables = ", ".join(["symbols", *(t.table for t in OHLCV_TABLES.values())])
        conn.execute(f"TRUNCATE {tables}, split_watermark, adjustment_basis, split_reloads")
        clear_all_staged(conn)
        yield conn


@pytest.fixture
def redis_client(service_urls: services.ServiceUrls) -> Iterator[redis.Redis]:
    """A client on the test Redis database, emptied before the test."""
    client = redis.Redis.from_url(service_urls.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def new_database(service_urls: services.ServiceUrls) -> Iterator[Callable[[str], str]]:
    """``new_database(name)``: an empty database on the test server (URL), dropped after the test.

    For tests that need a database other than the session's, already upgraded one: a brownfield
    TickStock database, one behind head, one to compare ``sql`` output with ``upgrade`` on.
    """
    base = urlsplit(service_urls.postgres_url).path.lstrip("/")
    admin_url = services.with_database(service_urls.postgres_url, "postgres")
    created: list[str] = []

    def create(name: str) -> str:
        database = f"{base}_{name}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        created.append(database)
        return services.with_database(service_urls.postgres_url, database)

    yield create
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for database in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def brownfield(new_database: Callable[[str], str]) -> Callable[[str], str]:
    """``brownfield(variant)``: a new database holding ``tests/sql/brownfield/<variant>.sql``.

    The variants are TickStock databases made before this loader: the design document's tables
    with their own keys, types and rows (see each file's header).
    """

    def create(variant: str) -> str:
        url = new_database(f"brownfield_{variant}")
        with psycopg.connect(url) as conn:
            conn.execute((BROWNFIELD_SQL / f"{variant}.sql").read_text())
        return url

    return create


def catalog(conn: psycopg.Connection) -> dict[str, Any]:
    """The public schema as the catalog describes it: columns (type, NOT NULL, default), constraints, indexes."""
    columns = conn.execute(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), a.attidentity, c.relpersistence
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY 1, a.attnum"""
    ).fetchall()
    constraints = conn.execute(
        """SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)
             FROM pg_constraint co
             JOIN pg_class cl ON cl.oid = co.conrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
            WHERE n.nspname = 'public' ORDER BY 1, 2"""
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    )
    return {"columns": columns, "constraints": constraints, "indexes": indexes.fetchall()}


@pytest.fixture(name="catalog")
def catalog_fixture() -> Callable[[psycopg.Connection], dict[str, Any]]:
    """``catalog(conn)``: the public schema's columns, constraints and indexes, for comparing databases."""
    return catalog
