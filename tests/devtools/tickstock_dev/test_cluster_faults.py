"""Faults injected into a running ``make cluster`` (``-m cluster``, ``make test-cluster``; tens of minutes).

One :class:`LocalCluster` (2 Celery workers x 4 slots, the shared 100/s budget, the simulator with
a warm day-bar cache) serves the module. Each fault test starts a 200-symbol x 1-year load of all
four timeframes, with the simulator's latency knob set so fetch tasks last seconds each (the load
takes minutes, and a fault lands while fetches run), waits for a real condition in the metadata
DB before it injects the fault, and ends with

- the bars equal to the simulator's: every expected key (the XNYS calendar's, as the DAG's own
  check) present for every symbol x timeframe and nothing else, and every stored bar equal field
  by field to what the simulator serves;
- no duplicate key row, no staged row left by the run;
- the job status (``tickstock.jobs.status:<job_id>``) ``completed`` with exact results.

What Airflow did (task tries from ``task_instance`` / ``task_instance_history``, the scheduler's
log lines, the DagRun's duration against an unfaulted baseline) is asserted where it is
deterministic and printed; every figure goes to ``test-artifacts/cluster/faults.json``.

The Redis message path: 100 job messages PUBLISHed in a burst as TickStockAppV2 does, the
triggerer (where the listener's sensor defers) SIGKILLed mid-burst and started again: exactly
100 ``redis__<job_id>`` runs, each with a final job status.
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import redis
import requests

from tickstock.intake import CHANNEL, DEAD_LETTER_STREAM, GROUP, STREAM
from tickstock.job_status import JobStatusStore
from tickstock.timeframes import ALL_TIMEFRAMES, OHLCV_TABLES, Timeframe
from tickstock.windows import plan_windows
from tickstock_dev import services
from tickstock_dev.bench_airflow import load_conf, reset_load_tables, sim_symbols
from tickstock_dev.cluster import LocalCluster, worker_name
from tickstock_dev.processes import wait_for
from tickstock_dev.stack import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tickstock.windows import LoadWindow

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[3]
ARTIFACT = ROOT / "test-artifacts" / "cluster" / "faults.json"
NEW_YORK = ZoneInfo("America/New_York")
SIM_NOW = "2025-12-02T21:00:00Z"
AS_OF = "2025-12-02"
SYMBOLS = 200
DAYS = 365
BATCH_SIZE = 25  # 8 batches x 4 timeframes = 32 fetch tasks on the 8-slot massive_api pool
# Per request. A fetch task's 8 threads take 25 symbols in 4 rounds: a few seconds per task, and
# the 800 requests of a load keep fetch tasks running for minutes (the bench's latency knob).
LATENCY_MS = 1500
RUN_TIMEOUT_S = 2400.0
FAULT_WAIT_S = 900.0
BURST = 100


@pytest.fixture(scope="module")
def symbols() -> list[str]:
    return sim_symbols(SYMBOLS)


@pytest.fixture(scope="module")
def cluster(symbols: list[str]) -> Iterator[LocalCluster]:
    from tickstock_dev.bench_sim import bench_simulator, warm

    local = LocalCluster(
        services.state_dir() / "cluster-faults",
        port=free_port(),
        rate_limit="100/s",
        simulator=lambda: bench_simulator(cache_symbols=SYMBOLS, now=SIM_NOW),
    )
    with local:
        assert local.sim is not None
        warm(local.sim, symbols)  # untimed: the simulator computes each symbol's year once
        yield local


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, Any]]:
    collected: dict[str, Any] = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    yield collected
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(collected, indent=2, default=str))


# ------------------------------------------------------------------------------------------------
# What a finished load must look like
# ------------------------------------------------------------------------------------------------


def planned_windows() -> dict[Timeframe, LoadWindow]:
    """The load's windows: the request ranges and the XNYS calendar's expected keys, as the DAG plans them."""
    return plan_windows(
        as_of=date.fromisoformat(AS_OF),
        days=DAYS,
        timeframes=ALL_TIMEFRAMES,
        now=datetime.fromisoformat(SIM_NOW.replace("Z", "+00:00")),
    )


def stored_bars(postgres_url: str, symbols: list[str]) -> dict[tuple[str, Timeframe], dict[Any, tuple[Any, ...]]]:
    bars: dict[tuple[str, Timeframe], dict[Any, tuple[Any, ...]]] = {}
    with psycopg.connect(postgres_url) as conn:
        for tf, table in OHLCV_TABLES.items():
            rows = conn.execute(
                f'SELECT symbol, "{table.time_column}", open, high, low, close, volume, vwap, transactions'
                f" FROM {table.table} WHERE symbol = ANY(%s)",
                (symbols,),
            ).fetchall()
            for symbol, key, *values in rows:
                bars.setdefault((symbol, tf), {})[key] = tuple(values)
    return bars


def simulator_bars(session: requests.Session, sim_url: str, symbol: str, window: LoadWindow) -> dict[Any, tuple]:
    """The simulator's bars of ``symbol`` for the window's request, keyed as stored (cf. test_universe_load)."""
    response = session.get(
        f"{sim_url}/v2/aggs/ticker/{symbol}/range/1/{window.timeframe.value}/{window.start}/{window.end}",
        params={"limit": 50000, "adjusted": "true"},
        timeout=60,
    )
    response.raise_for_status()
    bars = {}
    for bar in json.loads(response.text, parse_float=Decimal).get("results", []):
        start_utc = datetime.fromtimestamp(bar["t"] / 1000, UTC)
        key = start_utc if window.timeframe is Timeframe.HOUR else start_utc.astimezone(NEW_YORK).date()
        bars[key] = (bar["o"], bar["h"], bar["l"], bar["c"], Decimal(bar["v"]), bar.get("vw"), bar.get("n"))
    return bars


def duplicate_keys(postgres_url: str) -> dict[str, int]:
    with psycopg.connect(postgres_url) as conn:
        return {
            t.table: conn.execute(
                f'SELECT count(*) FROM (SELECT 1 FROM {t.table} GROUP BY symbol, "{t.time_column}"'
                " HAVING count(*) > 1) d"
            ).fetchone()[0]
            for t in OHLCV_TABLES.values()
        }


def assert_loaded_exactly(cluster: LocalCluster, symbols: list[str], run_id: str, job_id: str) -> None:
    """Bars equal to the simulator's, no duplicate, nothing left staged, the job status final and exact."""
    info, sim = cluster.info, cluster.sim
    assert info is not None
    assert sim is not None
    sim.configure(latency_ms=0)
    windows = planned_windows()
    stored = stored_bars(info.postgres_url, symbols)
    short = {
        f"{s}/{tf.value}": (len(stored.get((s, tf), {})), w.expected_count)
        for s in symbols
        for tf, w in windows.items()
        if set(stored.get((s, tf), {})) != set(w.expected)
    }
    assert short == {}, f"{len(short)} symbol/timeframe pairs differ from the calendar: {dict(list(short.items())[:5])}"
    mismatched = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {sim.api_key}"
        for symbol in symbols:
            for tf, window in windows.items():
                api = simulator_bars(session, sim.url, symbol, window)
                mine = stored[(symbol, tf)]
                mismatched += [(symbol, tf.value, key) for key in window.expected if mine[key] != api.get(key)]
    assert mismatched == [], mismatched[:5]
    assert duplicate_keys(info.postgres_url) == dict.fromkeys((t.table for t in OHLCV_TABLES.values()), 0)
    with psycopg.connect(info.postgres_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM ohlcv_staging_batches WHERE starts_with(load_key, %s)", (f"{run_id}|",)
        ).fetchone()[0]
    assert left == 0, f"{left} staged batches of {run_id} left"
    status = JobStatusStore(redis.Redis.from_url(info.redis_url, decode_responses=True)).get(job_id)
    assert status is not None
    per_timeframe = {tf: w.expected_count * len(symbols) for tf, w in windows.items()}
    assert (status["status"], status["progress"], status["total_symbols"], status["run_id"]) == (
        "completed",
        100,
        len(symbols),
        run_id,
    ), status
    assert status["results"] == {
        "symbols_loaded": len(symbols),
        "symbols_failed": 0,
        "hourly_bars": per_timeframe[Timeframe.HOUR],
        "daily_bars": per_timeframe[Timeframe.DAY],
        "weekly_bars": per_timeframe[Timeframe.WEEK],
        "monthly_bars": per_timeframe[Timeframe.MONTH],
        # The successful tries' requests: one range request per symbol and timeframe (a year has
        # more sessions than 200 symbols, so no grouped daily) and the ticker details of every
        # symbol (its metadata was emptied with the tables); a fault's failed try is not counted.
        "hourly_requests": len(symbols),
        "daily_requests": len(symbols),
        "weekly_requests": len(symbols),
        "monthly_requests": len(symbols),
        "grouped_daily_requests": 0,
        "ticker_details_requests": len(symbols),
        "splits": [],  # none of the 200 synthetic symbols splits in the window
        "errors": [],
    }, status


# ------------------------------------------------------------------------------------------------
# Driving a load and watching Airflow
# ------------------------------------------------------------------------------------------------


def start_load(cluster: LocalCluster, symbols: list[str], name: str) -> tuple[str, str]:
    info, sim = cluster.info, cluster.sim
    assert info is not None
    assert sim is not None
    reset_load_tables(info.postgres_url)
    sim.configure(latency_ms=LATENCY_MS)
    job_id = f"fault-{name}-{uuid.uuid4().hex[:8]}"
    run_id = cluster.trigger("universe_load", load_conf(symbols, job_id=job_id, days=DAYS, batch_size=BATCH_SIZE))
    return run_id, job_id


def running(cluster: LocalCluster, run_id: str, task_id: str, hostname: str | None = None) -> list[tuple[int, int]]:
    """(map index, try number) of the run's ``task_id`` instances running now (on ``hostname``)."""
    return [
        (ti.map_index, ti.try_number)
        for ti in cluster.task_instances("universe_load", run_id)
        if ti.task_id == task_id and ti.state == "running" and (hostname is None or ti.hostname == hostname)
    ]


def succeeded(cluster: LocalCluster, run_id: str, task_id: str) -> int:
    return sum(
        1 for ti in cluster.task_instances("universe_load", run_id) if ti.task_id == task_id and ti.state == "success"
    )


def earlier_tries(cluster: LocalCluster, run_id: str) -> list[tuple[str, int, int, str | None, str | None]]:
    """(task, map index, try, state, hostname) of every try that was retried (task_instance_history)."""
    return [
        tuple(row)
        for row in cluster.metadata_query(
            "SELECT task_id, map_index, try_number, state, hostname FROM task_instance_history"
            " WHERE dag_id = 'universe_load' AND run_id = %s ORDER BY task_id, map_index, try_number",
            (run_id,),
        )
    ]


def log_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_lines(path: Path, offset: int, pattern: str) -> list[str]:
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line.strip()[:240] for line in text.splitlines() if re.search(pattern, line, re.IGNORECASE)]


def run_seconds(run: dict[str, Any]) -> float:
    return (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()


def retried(cluster: LocalCluster, run_id: str) -> list[tuple[str, int, int, str | None]]:
    return [
        (ti.task_id, ti.map_index, ti.try_number, ti.hostname)
        for ti in cluster.task_instances("universe_load", run_id)
        if ti.try_number > 1
    ]


def wait_until(condition: Callable[[], object], what: str, timeout: float = FAULT_WAIT_S) -> float:
    """Wait for a real condition; return when it held (monotonic seconds)."""
    wait_for(condition, timeout=timeout, what=what)
    return time.monotonic()


# What the scheduler says about a dead task or scheduler (not its every-15-s "Adopting or resetting" line).
SCHEDULER_FAULT_LINES = (
    r"without a heartbeat|Marking task as|Reset the following|orphaned TaskInstances|adopted|state-changed-externally"
)


@pytest.fixture(scope="module")
def baseline(cluster: LocalCluster, symbols: list[str], figures: dict[str, Any]) -> float:
    """The same load with no fault: its DagRun seconds (every fault's duration is compared with it)."""
    run_id, job_id = start_load(cluster, symbols, "baseline")
    run = cluster.wait_for_run("universe_load", run_id, timeout=RUN_TIMEOUT_S)
    assert run["state"] == "success"
    assert_loaded_exactly(cluster, symbols, run_id, job_id)
    assert retried(cluster, run_id) == []
    seconds = run_seconds(run)
    figures["baseline"] = {
        "dag_run_s": round(seconds, 1),
        "task_instances": len(cluster.task_instances("universe_load", run_id)),
    }
    print(json.dumps(figures["baseline"]))
    return seconds


# ------------------------------------------------------------------------------------------------
# 1. SIGKILL a Celery worker while it runs fetch tasks
# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(5400)
def test_sigkill_of_a_worker_running_fetches(cluster, symbols, baseline, figures):
    victim = worker_name(1)
    scheduler_log = cluster.log_dir / "scheduler.log"
    offset = log_offset(scheduler_log)
    run_id, job_id = start_load(cluster, symbols, "worker-kill")
    wait_until(lambda: running(cluster, run_id, "fetch_bars", victim), f"fetch_bars running on {victim}")
    killed = {ti.map_index: (ti.task_id, ti.try_number) for ti in cluster.task_instances("universe_load", run_id)
              if ti.state == "running" and ti.hostname == victim}  # fmt: skip
    t_kill = time.monotonic()
    cluster.kill_worker(1, signal.SIGKILL)

    def all_noticed() -> bool:
        rows = {(ti.task_id, ti.map_index): ti for ti in cluster.task_instances("universe_load", run_id)}
        return all(
            (rows[(task, index)].state, rows[(task, index)].try_number) != ("running", tries)
            for index, (task, tries) in killed.items()
        )

    t_noticed = wait_until(all_noticed, "the scheduler to notice the killed worker's task instances")
    cluster.start_worker(1)  # and start it again: it takes new work
    t_restarted = time.monotonic()
    run = cluster.wait_for_run("universe_load", run_id, timeout=RUN_TIMEOUT_S)
    t_done = time.monotonic()

    tis = {(ti.task_id, ti.map_index): ti for ti in cluster.task_instances("universe_load", run_id)}
    history = earlier_tries(cluster, run_id)
    result = {
        "killed_task_instances": [f"{task}[{index}] try {tries}" for index, (task, tries) in sorted(killed.items())],
        "seconds_kill_to_detected": round(t_noticed - t_kill, 1),
        "seconds_worker_restart": round(t_restarted - t_noticed, 1),
        "seconds_kill_to_run_end": round(t_done - t_kill, 1),
        "dag_run_s": round(run_seconds(run), 1),
        "baseline_s": round(baseline, 1),
        "retried_now": [f"{t}[{i}] try {n} on {h}" for t, i, n, h in retried(cluster, run_id)],
        "earlier_tries": [f"{t}[{i}] try {n} {s} on {h}" for t, i, n, s, h in history],
        "scheduler_log": log_lines(scheduler_log, offset, SCHEDULER_FAULT_LINES)[:20],
    }
    figures["worker_sigkill"] = result
    print(json.dumps(result, indent=2))

    assert run["state"] == "success", result
    assert killed, "no task instance was running on the killed worker"
    for index, (task, tries) in killed.items():
        ti = tis[(task, index)]
        # The killed try stopped heartbeating; the scheduler failed it and Airflow retried it.
        assert (ti.state, ti.try_number) == ("success", tries + 1), (task, index, ti)
        assert (task, index, tries, "failed", victim) in history, (task, index, history)
    assert_loaded_exactly(cluster, symbols, run_id, job_id)


# ------------------------------------------------------------------------------------------------
# 2. Restart TickStock's PostgreSQL mid-load
# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(5400)
def test_restart_of_tickstock_postgres_mid_load(cluster, symbols, baseline, figures):
    run_id, job_id = start_load(cluster, symbols, "postgres-restart")
    pid_before = cluster.server_pids()["tickstock postgres"]
    # Mid-load: upserts (one per batch, each as soon as its fetch ends) have merged bars, and
    # more are merging right now.
    wait_until(
        lambda: succeeded(cluster, run_id, "upsert_bars") >= 1 and running(cluster, run_id, "upsert_bars"),
        "an upsert done and upserts running",
    )
    in_flight = [ti for ti in cluster.task_instances("universe_load", run_id) if ti.state == "running"]
    t_fault = time.monotonic()
    cluster.restart_tickstock_postgres()
    t_back = time.monotonic()
    run = cluster.wait_for_run("universe_load", run_id, timeout=RUN_TIMEOUT_S)
    t_done = time.monotonic()
    result = {
        "running_at_restart": [f"{ti.task_id}[{ti.map_index}]" for ti in in_flight],
        "seconds_postgres_down": round(t_back - t_fault, 1),
        "seconds_restart_to_run_end": round(t_done - t_fault, 1),
        "dag_run_s": round(run_seconds(run), 1),
        "baseline_s": round(baseline, 1),
        "retried": [f"{t}[{i}] try {n} on {h}" for t, i, n, h in retried(cluster, run_id)],
        "earlier_tries": [f"{t}[{i}] try {n} {s} on {h}" for t, i, n, s, h in earlier_tries(cluster, run_id)],
    }
    figures["tickstock_postgres_restart"] = result
    print(json.dumps(result, indent=2))

    assert cluster.server_pids()["tickstock postgres"] not in (None, pid_before)  # really a new server
    assert run["state"] == "success", result
    assert_loaded_exactly(cluster, symbols, run_id, job_id)


# ------------------------------------------------------------------------------------------------
# 3. Restart TickStock's Redis mid-load (job status, rate budget)
# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(5400)
def test_restart_of_tickstock_redis_mid_load(cluster, symbols, baseline, figures):
    info = cluster.info
    assert info is not None
    run_id, job_id = start_load(cluster, symbols, "redis-restart")
    pid_before = cluster.server_pids()["tickstock redis"]
    wait_until(
        lambda: succeeded(cluster, run_id, "fetch_bars") >= 1 and len(running(cluster, run_id, "fetch_bars")) >= 2,
        "a fetch done and fetches running (spending the shared budget)",
    )
    status_before = JobStatusStore(redis.Redis.from_url(info.redis_url, decode_responses=True)).get(job_id)
    in_flight = [ti for ti in cluster.task_instances("universe_load", run_id) if ti.state == "running"]
    t_fault = time.monotonic()
    cluster.restart_tickstock_redis()
    t_back = time.monotonic()
    status_after = JobStatusStore(redis.Redis.from_url(info.redis_url, decode_responses=True)).get(job_id)
    run = cluster.wait_for_run("universe_load", run_id, timeout=RUN_TIMEOUT_S)
    t_done = time.monotonic()
    result = {
        "running_at_restart": [f"{ti.task_id}[{ti.map_index}]" for ti in in_flight],
        "seconds_redis_down": round(t_back - t_fault, 1),
        "seconds_restart_to_run_end": round(t_done - t_fault, 1),
        "dag_run_s": round(run_seconds(run), 1),
        "baseline_s": round(baseline, 1),
        "retried": [f"{t}[{i}] try {n} on {h}" for t, i, n, h in retried(cluster, run_id)],
        "earlier_tries": [f"{t}[{i}] try {n} {s} on {h}" for t, i, n, s, h in earlier_tries(cluster, run_id)],
        "status_before": (status_before or {}).get("status"),
        "status_after_restart": (status_after or {}).get("status"),
    }
    figures["tickstock_redis_restart"] = result
    print(json.dumps(result, indent=2))

    assert cluster.server_pids()["tickstock redis"] not in (None, pid_before)
    # The status hash survived the restart (append-only file): TickStockAppV2 never sees it vanish.
    assert status_after is not None
    assert status_after["status"] == "processing", status_after
    assert run["state"] == "success", result
    assert_loaded_exactly(cluster, symbols, run_id, job_id)


# ------------------------------------------------------------------------------------------------
# 4. SIGKILL the scheduler and start it again
# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(5400)
def test_sigkill_of_the_scheduler_and_a_restart(cluster, symbols, baseline, figures):
    scheduler_log = cluster.log_dir / "scheduler.log"
    run_id, job_id = start_load(cluster, symbols, "scheduler-kill")
    wait_until(lambda: len(running(cluster, run_id, "fetch_bars")) >= 2, "fetches running")
    at_kill = cluster.task_instances("universe_load", run_id)
    running_at_kill = {(ti.task_id, ti.map_index): ti.try_number for ti in at_kill if ti.state == "running"}
    t_kill = time.monotonic()
    cluster.kill("scheduler", signal.SIGKILL)

    # Without a scheduler nothing new starts, but the workers finish what they run and report it
    # through the api-server: wait until one of those tasks has finished, then start a scheduler.
    def one_finished() -> bool:
        now = {(ti.task_id, ti.map_index): ti for ti in cluster.task_instances("universe_load", run_id)}
        return any(now[key].state == "success" for key in running_at_kill)

    t_finished = wait_until(one_finished, "a running task to finish while the scheduler is down")
    offset = log_offset(scheduler_log)
    cluster.restart("scheduler")
    t_restart = time.monotonic()

    before = {(ti.task_id, ti.map_index): ti.state for ti in cluster.task_instances("universe_load", run_id)}

    def progressing() -> bool:
        """Only a scheduler creates, schedules and queues task instances: one did since the restart."""
        return any(
            (ti.task_id, ti.map_index) not in before
            or (before[(ti.task_id, ti.map_index)] in (None, "scheduled", "up_for_retry") and ti.state != before[(ti.task_id, ti.map_index)])
            for ti in cluster.task_instances("universe_load", run_id)
        )  # fmt: skip

    t_resumed = wait_until(progressing, "the new scheduler to queue the next task instances")
    run = cluster.wait_for_run("universe_load", run_id, timeout=RUN_TIMEOUT_S)
    t_done = time.monotonic()
    tis = {(ti.task_id, ti.map_index): ti for ti in cluster.task_instances("universe_load", run_id)}
    result = {
        "running_at_kill": [f"{t}[{i}]" for t, i in sorted(running_at_kill)],
        "seconds_kill_to_first_finish_without_scheduler": round(t_finished - t_kill, 1),
        "seconds_scheduler_down": round(t_restart - t_kill, 1),
        "seconds_restart_to_next_task_queued": round(t_resumed - t_restart, 1),
        "seconds_kill_to_run_end": round(t_done - t_kill, 1),
        "dag_run_s": round(run_seconds(run), 1),
        "baseline_s": round(baseline, 1),
        "retried": [f"{t}[{i}] try {n} on {h}" for t, i, n, h in retried(cluster, run_id)],
        "scheduler_log": log_lines(scheduler_log, offset, SCHEDULER_FAULT_LINES)[:20],
    }
    figures["scheduler_sigkill"] = result
    print(json.dumps(result, indent=2))

    assert run["state"] == "success", result
    # The tasks the dead scheduler had started ran on to success in their first try: a scheduler
    # crash costs no task work, only scheduling time.
    for key, tries in running_at_kill.items():
        assert (tis[key].state, tis[key].try_number) == ("success", tries), (key, tis[key])
    assert_loaded_exactly(cluster, symbols, run_id, job_id)


# ------------------------------------------------------------------------------------------------
# 5. 100 job messages in a burst, the triggerer restarted mid-burst
# ------------------------------------------------------------------------------------------------


def burst_runs(cluster: LocalCluster, prefix: str) -> dict[str, str]:
    rows = cluster.metadata_query(
        "SELECT run_id, state FROM dag_run WHERE dag_id = 'universe_load' AND starts_with(run_id, %s)",
        (f"redis__{prefix}",),
    )
    return dict(rows)


def runs_with_job_ids(cluster: LocalCluster, job_ids: set[str]) -> list[str]:
    """Every universe_load run whose conf names one of ``job_ids`` (a duplicate would show twice)."""
    found = []
    for run_id, conf in cluster.metadata_query("SELECT run_id, conf FROM dag_run WHERE dag_id = 'universe_load'"):
        params = json.loads(conf) if isinstance(conf, (str, bytes)) else (conf or {})
        if params.get("job_id") in job_ids:
            found.append(run_id)
    return found


@pytest.mark.timeout(5400)
def test_burst_of_100_job_messages_with_a_triggerer_restart(cluster, figures):
    info = cluster.info
    assert info is not None
    assert cluster.sim is not None
    cluster.sim.configure(latency_ms=0)
    client = redis.Redis.from_url(info.redis_url, decode_responses=True)
    prefix = f"burst-{uuid.uuid4().hex[:6]}-"
    job_ids = [f"{prefix}{i:03d}" for i in range(BURST)]
    names = ["SCHG", "VUG", "SPY", "QQQ"]

    def message(i: int) -> str:
        return json.dumps(
            {
                "job_id": job_ids[i],
                "job_type": "csv_universe_load",
                "symbols": [names[i % len(names)]],
                "days": 2,
                "as_of": AS_OF,
                "timeframes": ["day"],
                "source": "fault test burst",
            }
        )

    t0 = time.monotonic()
    receivers = [client.publish(CHANNEL, message(i)) for i in range(BURST // 2)]
    wait_until(lambda: burst_runs(cluster, prefix), "the listener to create the burst's first run")
    t_kill = time.monotonic()
    cluster.kill("triggerer", signal.SIGKILL)  # the listener's sensor was deferred there
    receivers += [client.publish(CHANNEL, message(i)) for i in range(BURST // 2, BURST)]
    runs_at_kill = len(burst_runs(cluster, prefix))
    cluster.restart("triggerer")
    t_restart = time.monotonic()
    t_all_created = wait_until(lambda: len(burst_runs(cluster, prefix)) >= BURST, "100 runs", timeout=3600)
    t_done = wait_until(
        lambda: all(state in ("success", "failed") for state in burst_runs(cluster, prefix).values()),
        "every burst run to finish",
        timeout=3600,
    )
    runs = burst_runs(cluster, prefix)
    statuses = {job: JobStatusStore(client).get(job) for job in job_ids}
    dead = [fields.get("job_id") for _, fields in client.xrange(DEAD_LETTER_STREAM, "-", "+")]
    pending = client.xpending(STREAM, GROUP)["pending"]
    result = {
        "messages": BURST,
        "publish_receivers": sorted(set(receivers)),
        "runs_before_triggerer_kill": runs_at_kill,
        "seconds_triggerer_down": round(t_restart - t_kill, 1),
        "seconds_first_publish_to_100_runs": round(t_all_created - t0, 1),
        "seconds_first_publish_to_all_finished": round(t_done - t0, 1),
        "runs": len(runs),
        "run_states": sorted(set(runs.values())),
        "job_statuses": sorted({(s or {}).get("status", "none") for s in statuses.values()}),
        "stream_pending": pending,
    }
    figures["burst"] = result
    print(json.dumps(result, indent=2))

    assert all(n >= 1 for n in receivers)  # the bridge was subscribed for every PUBLISH
    assert set(runs) == {f"redis__{job}" for job in job_ids}  # 0 lost, none extra
    assert sorted(runs_with_job_ids(cluster, set(job_ids))) == sorted(runs)  # 0 duplicated
    assert set(runs.values()) == {"success"}, result
    for job, status in statuses.items():
        assert status is not None, job
        assert (status["status"], status["run_id"]) == ("completed", f"redis__{job}"), status
        assert (status["results"]["daily_bars"], status["results"]["symbols_loaded"]) == (2, 1), status
    assert not set(dead) & set(job_ids)
    assert pending == 0
