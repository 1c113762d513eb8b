"""Micro-benchmark: what parsing the DAG files costs once Airflow's SDK is loaded.

Every DAG parse (the DAG processor) and every task start (the task runner parses its DAG file)
pays for the modules the DAG files import. This measures that in a fresh interpreter per run,
after ``airflow.sdk`` (which both already have), and lists the heavy libraries the DAG files
pulled in: the http stack, the database driver or the calendar belong in the tasks that use
them, not in the parse.

    python -m tickstock_dev.bench_imports [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_MODULES = ("universe_load", "nightly_refresh", "redis_job_listener")
# Libraries a DAG parse should not need: each costs from a few hundred ms to seconds to import.
HEAVY = ("aiohttp", "psycopg", "exchange_calendars", "pandas", "numpy", "requests", "redis")

_PROBE = f"""
import json, sys, time
import airflow.sdk  # noqa: F401  (the DAG processor and the task runner have it already)
import airflow.providers.common.compat.sdk  # noqa: F401
sys.path.insert(0, {str(DAGS_DIR)!r})
before = set(sys.modules)
t0 = time.perf_counter()
for name in {DAG_MODULES!r}:
    __import__(name)
seconds = time.perf_counter() - t0
loaded = sorted({{m.split(".")[0] for m in set(sys.modules) - before}} & set({HEAVY!r}))
print(json.dumps({{"seconds": seconds, "heavy": loaded}}))
"""


def measure() -> dict[str, object]:
    """Import the DAG files in a fresh interpreter; return seconds and the heavy libraries loaded."""
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock_dev.bench_imports", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    for run in range(args.runs):
        result = measure()
        print(
            f"run {run + 1}/{args.runs}: {result['seconds']:.2f} s; heavy libraries loaded: {result['heavy'] or 'none'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
