"""``make demo``: the design document's acceptance loads, offline, through Airflow.

Starts what is missing (embedded PostgreSQL and Redis, unless ``TICKSTOCK_POSTGRES_URL`` /
``TICKSTOCK_REDIS_URL`` are set; the Massive simulator with its clock just after the close of
2025-12-02), runs ``universe_load`` twice with ``dag.test()`` — SCHG+VUG for 2 days and SPY for
90 days — and prints bars per symbol x timeframe next to the counts the NYSE calendar expects.
Everything it started is stopped before it returns.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, date, datetime

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db

SIM_NOW = "2025-12-02T21:00:00Z"
LOADS = (
    {
        "symbols": ["SCHG", "VUG"],
        "days": 2,
        "as_of": "2025-12-02",
        "job_id": "demo-schg-vug-2d",
        "source": "make demo",
    },
    {"symbols": ["SPY"], "days": 90, "as_of": "2025-11-30", "job_id": "demo-spy-90d", "source": "make demo"},
)


def _expected(conf: dict) -> dict[str, int]:
    from tickstock.load_request import parse_load_request
    from tickstock.windows import plan_windows

    request = parse_load_request(conf)
    windows = plan_windows(
        as_of=date.fromisoformat(conf["as_of"]),
        days=request.days,
        timeframes=request.timeframes,
        hourly_days=request.hourly_days,
        now=datetime.fromisoformat(SIM_NOW),
    )
    return {tf.value: w.expected_count for tf, w in windows.items()}


def _stored(postgres_url: str, symbols: list[str], conf: dict) -> dict[tuple[str, str], int]:
    import psycopg

    from tickstock.load_request import parse_load_request
    from tickstock.timeframes import OHLCV_TABLES
    from tickstock.windows import plan_windows

    request = parse_load_request(conf)
    windows = plan_windows(
        as_of=date.fromisoformat(conf["as_of"]),
        days=request.days,
        timeframes=request.timeframes,
        now=datetime.fromisoformat(SIM_NOW),
    )
    counts: dict[tuple[str, str], int] = {}
    with psycopg.connect(postgres_url) as conn:
        for tf, window in windows.items():
            table = OHLCV_TABLES[tf]
            for symbol in symbols:
                row = conn.execute(
                    f'SELECT count(*) FROM {table.table} WHERE symbol = %s AND "{table.time_column}" = ANY(%s)',
                    (symbol, list(window.expected)),
                ).fetchone()
                counts[(symbol, tf.value)] = row[0] if row else 0
    return counts


def main() -> int:
    from massive_sim.testing import run_simulator

    base = services.state_dir()
    started_at = time.monotonic()
    urls = services.ensure_services(base)
    print(f"PostgreSQL: {urls.postgres_url}{' (started)' if urls.started_postgres else ''}")
    print(f"Redis:      {urls.redis_url}{' (started)' if urls.started_redis else ''}")
    failures = 0
    rows: list[tuple[str, str, str, int, int, str]] = []
    try:
        with run_simulator(now=SIM_NOW) as sim:
            print(f"Massive simulator: {sim.url} (clock {SIM_NOW})")
            env = airflow_env(base / "airflow-demo", urls, massive_url=sim.url, massive_api_key=sim.api_key)
            os.environ.update(env)
            ensure_airflow_db(env)
            from tickstock.schema import upgrade

            schema = upgrade(urls.postgres_url)
            print(f"Schema at revision {schema.after} (python -m tickstock.schema upgrade)\n")

            from airflow.dag_processing.dagbag import DagBag

            dag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag("universe_load")
            for conf in LOADS:
                print(f"Running universe_load with {conf} ...")
                run = dag.test(run_conf=conf)
                expected = _expected(conf)
                stored = _stored(urls.postgres_url, conf["symbols"], conf)
                for symbol in conf["symbols"]:
                    for tf, n in expected.items():
                        got = stored[(symbol, tf)]
                        failures += got != n
                        rows.append((conf["job_id"], symbol, tf, got, n, "ok" if got == n else "MISMATCH"))
                print(f"  run {run.run_id}: {run.state}\n")
                failures += run.state != "success"
    finally:
        stopped = []
        if urls.started_postgres or urls.started_redis:
            stopped = services.stop_services(base)
    print(f"{'job':<20} {'symbol':<7} {'timeframe':<10} {'stored':>7} {'expected':>9}  result")
    for job, symbol, tf, got, n, verdict in rows:
        print(f"{job:<20} {symbol:<7} {tf:<10} {got:>7} {n:>9}  {verdict}")
    print(f"\nStopped: {', '.join(stopped) or 'nothing (servers were already running)'}; simulator stopped.")
    print(
        f"Demo {'PASSED' if not failures else 'FAILED'} in {time.monotonic() - started_at:.0f} s "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
