"""Which Airflow mode the end-to-end figures use: ``dags test`` vs a scheduler with LocalExecutor.

``airflow dags test`` runs task instances one after another inside one process; a deployed Airflow
runs them in parallel worker processes (one task-SDK process per TI) driven by the scheduler.
This optional measurement (``--only mode``) loads the same universe both ways: the mode that is
faster on this machine is the fairer stand-in for "the project's loader" in measurement 2.

The scheduler mode runs the real components as separate processes on the bench's Airflow home:
``api-server`` (the Execution API the workers report to), ``dag-processor`` and ``scheduler``
(LocalExecutor), a shared JWT secret; the run is created with ``airflow dags trigger`` and timed by
its DagRun ``start_date``→``end_date`` like the other measurements.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sqlite3
import subprocess
import time
from typing import TYPE_CHECKING, Any

from tickstock_dev.bench_airflow import AirflowLoader, _parse_ts, load_conf, reset_load_tables, sim_symbols
from tickstock_dev.bench_report import Section, ratios

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis

    from massive_sim.testing import SimHandle

PARALLELISM = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def airflow_services(loader: AirflowLoader, *, log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """api-server + dag-processor + scheduler (LocalExecutor) on ``loader``'s home; stopped on exit."""
    port = _free_port()
    env = {
        **loader.env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    logs = loader.home / "services"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in (
            ("api-server", [loader.airflow, "api-server", "--port", str(port)]),
            ("dag-processor", [loader.airflow, "dag-processor"]),
            ("scheduler", [loader.airflow, "scheduler"]),
        ):
            out = (logs / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
        _wait_for_dag(loader, timeout=240)
        log("  scheduler, dag-processor and api-server up; universe_load parsed")
        yield env
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait_for_dag(loader: AirflowLoader, timeout: float) -> None:
    db = loader.home / "airflow.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(db) as conn:
            row = conn.execute("SELECT 1 FROM serialized_dag WHERE dag_id = 'universe_load'").fetchone()
            if row:
                return
        time.sleep(1)
    raise RuntimeError("the dag-processor did not serialise universe_load in time; see services/*.log")


def trigger_and_wait(loader: AirflowLoader, env: dict[str, str], conf: dict[str, Any], *, timeout: float) -> float:
    """Trigger one run through the CLI, wait for it to finish; return its DagRun seconds."""
    run_id = f"bench__{int(time.time() * 1000)}"
    subprocess.run(
        [loader.airflow, "dags", "trigger", "universe_load", "--run-id", run_id, "-c", json.dumps(conf)],
        env=env,
        check=True,
        capture_output=True,
    )
    db = loader.home / "airflow.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = 'universe_load' AND run_id = ?",
                (run_id,),
            ).fetchone()
            if row and row[0] in ("success", "failed"):
                if row[0] != "success":
                    raise RuntimeError(f"scheduler run {run_id} ended {row[0]}; see the task logs")
                start, end = _parse_ts(row[1]), _parse_ts(row[2])
                if start is None or end is None:
                    raise RuntimeError(f"scheduler run {run_id} has no start/end date")
                return (end - start).total_seconds()
        time.sleep(0.5)
    raise RuntimeError(f"scheduler run {run_id} did not finish within {timeout:.0f} s")


def run_mode_comparison(
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    *,
    symbols: int,
    runs: int,
    log: Callable[[str], None] = print,
) -> Section:
    from tickstock_dev.bench_sim import warm

    t_section = time.perf_counter()
    section = Section("2b", "Which Airflow mode: dags test vs scheduler + LocalExecutor")
    loader.set_rate_limit("")
    names = sim_symbols(symbols)
    warm(sim, names)
    in_process = []
    for r in range(runs):
        reset_load_tables(postgres_url)
        redis_client.flushdb()
        run = loader.run(load_conf(names, job_id=f"bench-mode-test-{r}"))
        in_process.append(run.run_s)
        log(f"  dags test run {r + 1}/{runs}: DagRun {run.run_s:.1f} s")
    scheduled = []
    with airflow_services(loader, log=log) as env:
        for r in range(runs):
            reset_load_tables(postgres_url)
            redis_client.flushdb()
            seconds = trigger_and_wait(loader, env, load_conf(names, job_id=f"bench-mode-sched-{r}"), timeout=1200)
            scheduled.append(seconds)
            log(f"  scheduler run {r + 1}/{runs}: DagRun {seconds:.1f} s")
    section.add(f"DagRun, airflow dags test (in-process, sequential TIs), {symbols} sym", "s", in_process)
    section.add(f"DagRun, scheduler + LocalExecutor (parallelism {PARALLELISM}), {symbols} sym", "s", scheduled)
    section.add("scheduler ÷ dags test", "×", ratios(scheduled, in_process))
    section.method = [
        f"{symbols} symbols × 1 year, 0 ms latency, no rate limit, warmed simulator. The scheduler mode runs "
        "`airflow api-server`, `dag-processor` and `scheduler` (LocalExecutor, parallelism "
        f"{PARALLELISM}, pool `massive_api` 16 slots) on the same SQLite metadata DB and triggers with "
        "`airflow dags trigger`; both are timed by the DagRun's own start→end. Whichever is faster on this "
        "machine is used for measurements 2-4 (the decision is stated in the note's conditions).",
    ]
    section.seconds = time.perf_counter() - t_section
    return section
