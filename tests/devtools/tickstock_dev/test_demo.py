"""``make demo`` as a newcomer runs it: a short, readable terminal and Airflow's stream in a log file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tickstock_dev import services

pytestmark = pytest.mark.integration

DEMO_REDIS_DB = 3


@pytest.fixture
def demo_urls(service_urls):
    """A database of its own on the test server and a Redis database index of its own."""
    admin_url = services.with_database(service_urls.postgres_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "tickstock_demo_test" WITH (FORCE)')
        conn.execute('CREATE DATABASE "tickstock_demo_test"')
    redis_url = urlsplit(service_urls.redis_url)._replace(path=f"/{DEMO_REDIS_DB}").geturl()
    redis.Redis.from_url(redis_url).flushdb()
    yield services.with_database(service_urls.postgres_url, "tickstock_demo_test"), redis_url
    redis.Redis.from_url(redis_url).flushdb()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "tickstock_demo_test" WITH (FORCE)')


def test_demo_prints_progress_and_the_table_and_logs_airflow_to_a_file(demo_urls, tmp_path):
    postgres_url, redis_url = demo_urls
    # The demo configures Airflow itself: nothing of the test session's Airflow settings leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            services.POSTGRES_URL_ENV: postgres_url,
            services.REDIS_URL_ENV: redis_url,
            services.STATE_DIR_ENV: str(tmp_path),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "tickstock_dev.demo"], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"Demo PASSED in \d+ s", out)
    assert done.stderr == ""

    # The terminal: planned windows, the job's progress as TickStockAppV2 sees it, the table.
    assert "planned hour  2025-12-01 → 2025-12-02: 14 per symbol" in out
    assert "planned day   2025-09-02 → 2025-11-28: 63 per symbol" in out
    for job in ("demo-schg-vug-2d", "demo-spy-90d"):
        assert f"universe_load {job}:" in out
    assert out.count("[processing              0%] Starting load of") == 2
    assert (
        "[completed             100%] Successfully loaded 2 symbols · bars: hourly 28, daily 4, weekly 2, monthly 2"
        in out
    )
    assert (
        "[completed             100%] Successfully loaded 1 symbols · bars: hourly 11, daily 63, weekly 13, monthly 3"
        in out
    )
    table = [line for line in out.splitlines() if line.startswith("demo-")]
    assert len(table) == 12
    assert all(line.endswith("  ok") for line in table)
    assert len(out.splitlines()) < 60
    assert "[info" not in out
    assert "[error" not in out

    # Airflow's own stream is in the file named at the end, and has no error-level line.
    log_path = re.search(r"Airflow's log of this demo: (\S+)", out).group(1)
    assert log_path == str(tmp_path / "airflow-demo" / "demo.log")
    log = (tmp_path / "airflow-demo" / "demo.log").read_text()
    assert log.count("DagRun Finished: dag_id=universe_load") == 2
    assert "JOB COMPLETE: demo-schg-vug-2d" in log
    assert "[error" not in log
