"""``make demo``: the design document's acceptance loads, offline, through Airflow.

Starts what is missing (embedded PostgreSQL and Redis, unless ``TICKSTOCK_POSTGRES_URL`` /
``TICKSTOCK_REDIS_URL`` are set; the Massive simulator with its clock just after the close of
2025-12-02), runs ``universe_load`` twice with ``dag.test()`` — SCHG+VUG for 2 days and SPY for
90 days — and prints bars per symbol x timeframe next to the counts the NYSE calendar expects.
Everything it started is stopped before it returns.

A newcomer reads the terminal, not Airflow's structlog stream (hundreds of lines per load): the
demo prints the planned windows, then the job's progress as TickStockAppV2 sees it (the job
status messages on ``tickstock.jobs.status``), then the table. Airflow's own output goes to a
log file whose path is printed at the end, and whose tail is printed when a load fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db

if TYPE_CHECKING:
    from collections.abc import Iterator

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


FINAL_STATES = frozenset({"completed", "completed_with_errors", "failed"})
LOG_TAIL_LINES = 60


def _windows(conf: dict) -> dict:
    """The windows ``universe_load`` plans for ``conf`` (the same domain function ``plan_load`` calls)."""
    from tickstock.load_request import parse_load_request
    from tickstock.windows import plan_windows

    request = parse_load_request(conf)
    return plan_windows(
        as_of=date.fromisoformat(conf["as_of"]),
        days=request.days,
        timeframes=request.timeframes,
        hourly_days=request.hourly_days,
        now=datetime.fromisoformat(SIM_NOW),
    )


def _stored(postgres_url: str, symbols: list[str], windows: dict) -> dict[tuple[str, str], int]:
    import psycopg

    from tickstock.timeframes import OHLCV_TABLES

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


@contextlib.contextmanager
def airflow_output_to(log_path: Path) -> Iterator[TextIO]:
    """Send everything written to file descriptors 1 and 2 to ``log_path``; yield the real terminal.

    Redirecting the descriptors, not ``sys.stdout``, also catches structlog's stream (which holds
    its own reference to the original stdout) and output of C extensions and subprocesses.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("ab") as log_file:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
            try:
                yield terminal
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
        terminal.close()


class StatusPrinter:
    """Print one job's status messages as TickStockAppV2 receives them (``tickstock.jobs.status``).

    Subscribes before the load starts, so no message is missed, and prints a line when the
    status changes or progress moves by 10 points or more, so a load shows a handful of lines.
    """

    def __init__(self, redis_url: str, job_id: str, out: TextIO) -> None:
        import redis

        from tickstock.job_status import STATUS_CHANNEL

        self._job_id, self._out = job_id, out
        self._client = redis.Redis.from_url(redis_url, decode_responses=True)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        self._pubsub.subscribe(STATUS_CHANNEL)
        confirmation = self._pubsub.get_message(timeout=10)
        if not confirmation or confirmation["type"] != "subscribe":
            raise RuntimeError(f"no subscription confirmation on {STATUS_CHANNEL}: {confirmation!r}")
        self._stop = threading.Event()
        self.final = threading.Event()
        self._last: tuple[str, int] | None = None
        self._thread = threading.Thread(target=self._read, name="demo-status", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message and message["type"] == "message":
                state = json.loads(message["data"])
                if state.get("job_id") == self._job_id:
                    self._show(state)

    def _show(self, state: dict) -> None:
        status, progress = state.get("status", "?"), int(state.get("progress", 0))
        last = self._last
        final = status in FINAL_STATES
        if final or last is None or last[0] != status or progress - last[1] >= 10:
            results = state.get("results") or {}
            bars = ", ".join(
                f"{name} {results.get(f'{name}_bars', 0)}" for name in ("hourly", "daily", "weekly", "monthly")
            )
            self._out.write(f"  [{status:<21} {progress:>3}%] {state.get('message', '')} · bars: {bars}\n")
            self._last = (status, progress)
        if final:
            self.final.set()

    def close(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the job's final status, then stop reading."""
        self.final.wait(timeout)
        self._stop.set()
        self._thread.join()
        self._pubsub.close()
        self._client.close()


def _show_windows(out: TextIO, windows: dict) -> None:
    for tf, window in windows.items():
        out.write(f"  planned {tf.value:<5} {window.start} → {window.end}: {window.expected_count} per symbol\n")


def main() -> int:
    from massive_sim.testing import run_simulator

    base = services.state_dir()
    started_at = time.monotonic()
    log_path = base / "airflow-demo" / "demo.log"
    log_path.unlink(missing_ok=True)
    urls = services.ensure_services(base)
    print(f"PostgreSQL: {urls.postgres_url}{' (started)' if urls.started_postgres else ''}")
    print(f"Redis:      {urls.redis_url}{' (started)' if urls.started_redis else ''}")
    failures = 0
    rows: list[tuple[str, str, str, int, int, str]] = []
    try:
        with run_simulator(now=SIM_NOW) as sim, airflow_output_to(log_path) as out:
            out.write(f"Massive simulator: {sim.url} (clock {SIM_NOW})\n")
            env = airflow_env(base / "airflow-demo", urls, massive_url=sim.url, massive_api_key=sim.api_key)
            os.environ.update(env)
            out.write("Preparing Airflow's metadata DB ...\n")
            ensure_airflow_db(env)
            from tickstock.schema import upgrade

            schema = upgrade(urls.postgres_url)
            out.write(f"Schema at revision {schema.after} (python -m tickstock.schema upgrade)\n\n")

            from airflow.dag_processing.dagbag import DagBag

            dag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag("universe_load")
            for conf in LOADS:
                symbols = ", ".join(conf["symbols"])
                out.write(f"universe_load {conf['job_id']}: {symbols}, {conf['days']} days as of {conf['as_of']}\n")
                windows = _windows(conf)
                _show_windows(out, windows)
                printer = StatusPrinter(urls.redis_url, conf["job_id"], out)
                try:
                    run = dag.test(run_conf=conf)
                finally:
                    printer.close()
                stored = _stored(urls.postgres_url, conf["symbols"], windows)
                for symbol in conf["symbols"]:
                    for tf, window in windows.items():
                        got, n = stored[(symbol, tf.value)], window.expected_count
                        failures += got != n
                        rows.append((conf["job_id"], symbol, tf.value, got, n, "ok" if got == n else "MISMATCH"))
                out.write(f"  run {run.run_id}: {run.state}\n\n")
                if run.state != "success":
                    failures += 1
                    _show_tail(out, log_path)
    finally:
        stopped = []
        if urls.started_postgres or urls.started_redis:
            stopped = services.stop_services(base)
    print(f"{'job':<20} {'symbol':<7} {'timeframe':<10} {'stored':>7} {'expected':>9}  result")
    for job, symbol, tf, got, n, verdict in rows:
        print(f"{job:<20} {symbol:<7} {tf:<10} {got:>7} {n:>9}  {verdict}")
    print(f"\nStopped: {', '.join(stopped) or 'nothing (servers were already running)'}; simulator stopped.")
    print(f"Airflow's log of this demo: {log_path}")
    print(
        f"Demo {'PASSED' if not failures else 'FAILED'} in {time.monotonic() - started_at:.0f} s "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)"
    )
    return 1 if failures else 0


def _show_tail(out: TextIO, log_path: Path) -> None:
    sys.stdout.flush()
    lines = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    out.write(f"  --- last {len(lines)} lines of {log_path} ---\n")
    out.writelines(f"  {line}\n" for line in lines)
    out.write("  ---\n")


if __name__ == "__main__":
    sys.exit(main())
