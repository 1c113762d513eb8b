"""``make cluster``: CeleryExecutor workers on PostgreSQL metadata, driven as a user and as the bench does.

The smoke test (in ``make test``) runs the command itself, ``python -m tickstock_dev.cluster``, in a
process group of its own, loads two symbols through the REST API, checks the bars and that task
instances ran on both workers (hostnames from the metadata DB), then sends SIGTERM to the group
twice and checks that nothing is left: no component, no task process, no server.

The acceptance load (``-m cluster``, ``make test-cluster``; tens of minutes on 2 cores) drives
:class:`LocalCluster` in-process: 500 symbols x 1 year on 2 workers with the shared 100/s
request budget, exact bar counts, both workers used, a batch fetched on one worker and upserted on
the other, and the simulator's busiest second within the budget. Its figures are printed and
written to ``test-artifacts/cluster/acceptance.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import psycopg
import pytest
import redis

from tickstock.job_status import JobStatusStore
from tickstock.timeframes import ALL_TIMEFRAMES, OHLCV_TABLES
from tickstock.windows import plan_windows
from tickstock_dev import services
from tickstock_dev.bench_airflow import load_conf, reset_load_tables, sim_symbols
from tickstock_dev.cluster import LocalCluster, server_pids, worker_name
from tickstock_dev.processes import wait_for
from tickstock_dev.stack import AirflowApi, free_port

if TYPE_CHECKING:
    from tickstock_dev.cluster import TaskInstanceRow

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SIM_NOW = "2025-12-02T21:00:00Z"
AS_OF = "2025-12-02"
READY_LINE = "Ctrl-C (or SIGTERM) stops everything"
START_TIMEOUT_S = 600.0  # first start: initdb x2, airflow db migrate, DAG parse, on a loaded 2-core box


def expected_counts(symbols: list[str], days: int) -> dict[tuple[str, str], int]:
    """Bars per (symbol, table) a complete load has: the XNYS calendar's, as the DAG's own check."""
    windows = plan_windows(
        as_of=date.fromisoformat(AS_OF),
        days=days,
        timeframes=ALL_TIMEFRAMES,
        now=datetime.fromisoformat(SIM_NOW.replace("Z", "+00:00")).astimezone(UTC),
    )
    return {(s, OHLCV_TABLES[tf].table): w.expected_count for s in symbols for tf, w in windows.items()}


def bar_counts(postgres_url: str, symbols: list[str]) -> dict[tuple[str, str], int]:
    counts = {}
    with psycopg.connect(postgres_url) as conn:
        for table in (t.table for t in OHLCV_TABLES.values()):
            rows = conn.execute(
                f"SELECT symbol, count(*) FROM {table} WHERE symbol = ANY(%s) GROUP BY 1", (symbols,)
            ).fetchall()
            counts.update({(symbol, table): n for symbol, n in rows})
    return counts


def hosts_by_task(tis: list[TaskInstanceRow]) -> dict[str, set[str | None]]:
    hosts: dict[str, set[str | None]] = {}
    for ti in tis:
        hosts.setdefault(ti.task_id, set()).add(ti.hostname)
    return hosts


def cross_worker_batches(tis: list[TaskInstanceRow]) -> list[tuple[int, str, str]]:
    """(map index, fetch host, upsert host) of every batch fetched on one worker and upserted on another."""
    fetch = {ti.map_index: ti.hostname for ti in tis if ti.task_id == "fetch_bars"}
    upsert = {ti.map_index: ti.hostname for ti in tis if ti.task_id == "upsert_bars"}
    return sorted((i, fetch[i], upsert[i]) for i in fetch.keys() & upsert.keys() if fetch[i] != upsert[i])


def _banner_value(text: str, label: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.split(":", 1)[1].strip()


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.timeout(1200)
def test_make_cluster_loads_on_both_workers_and_stops_on_sigterm(tmp_path):
    state = services.state_dir() / "cluster-test"
    out = tmp_path / "cluster.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MASSIVE_", "TICKSTOCK_"))}
    argv = [sys.executable, "-m", "tickstock_dev.cluster", "--state", str(state), "--port", str(free_port())]
    with out.open("w") as sink:
        launcher = subprocess.Popen(
            [*argv, "--workers", "2", "--concurrency", "2"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # `make cluster` in a terminal: a process group of its own
        )
    descendants: list[psutil.Process] = []
    try:
        wait_for(
            lambda: READY_LINE in out.read_text() or launcher.poll() is not None,
            timeout=START_TIMEOUT_S,
            what="make cluster to be ready",
        )
        banner = out.read_text()
        assert launcher.poll() is None, banner
        assert "CeleryExecutor, 2 workers" in banner
        url = _banner_value(banner, "UI / API")
        password = _banner_value(banner, "user / password").split(" / ")[1]
        postgres_url = _banner_value(banner, "TickStock DB")
        metadata_url = _banner_value(banner, "metadata DB").split(" (")[0]
        redis_url = _banner_value(banner, "TickStock Redis")

        reset_load_tables(postgres_url)  # the state folder is reused across sessions
        api = AirflowApi(url, "admin", password)
        symbols = ["SCHG", "VUG"]
        job_id = f"cluster-smoke-{uuid.uuid4().hex[:8]}"
        # batch_size 1: 8 fetch batches (symbol x timeframe pairs), more than one worker's 2 slots
        conf = {"symbols": symbols, "days": 2, "as_of": AS_OF, "job_id": job_id, "batch_size": 1}
        run_id = api.trigger("universe_load", conf)
        run = api.wait_for_run("universe_load", run_id, timeout=600)
        assert run["state"] == "success"

        assert bar_counts(postgres_url, symbols) == expected_counts(symbols, 2)
        assert set(expected_counts(symbols, 2).values()) == {14, 2, 1}  # hourly 2x7, daily 2, week/month 1
        status = JobStatusStore(redis.Redis.from_url(redis_url, decode_responses=True)).get(job_id)
        assert (status["status"], status["progress"]) == ("completed", 100)

        with psycopg.connect(metadata_url) as conn:
            rows = conn.execute(
                "SELECT task_id, state, hostname FROM task_instance WHERE dag_id = 'universe_load' AND run_id = %s",
                (run_id,),
            ).fetchall()
        # Day bars of 2 symbols over 2 sessions come per symbol: no grouped-daily task at all.
        # finish_job is the failure path: the check closed this job, so it never reached a worker.
        assert {task: state for task, state, _ in rows if task == "finish_job"} == {"finish_job": "skipped"}
        worked = [(task, state, host) for task, state, host in rows if task != "finish_job"]
        assert {state for _, state, _ in worked} == {"success"}
        assert {task for task, _, _ in worked} == {
            "plan_load",
            "register_symbols",
            "fetch_bars",
            "upsert_bars",
            "check_bar_counts",
        }
        assert {host for _, _, host in worked} == {worker_name(1), worker_name(2)}
        with psycopg.connect(metadata_url) as conn:
            times = conn.execute(
                "SELECT task_id, queued_dttm, start_date, end_date FROM task_instance"
                " WHERE dag_id = 'universe_load' AND run_id = %s AND state = 'success'",
                (run_id,),
            ).fetchall()
        queued = {task: [q for t, q, _, _ in times if t == task] for task in ("register_symbols", "fetch_bars")}
        # 8 batches + ticker details for 4 slots: the details task goes first
        # (priority), not behind the fetches (it used to start after all of them)
        assert len(queued["fetch_bars"]) == 8
        assert queued["register_symbols"][0] <= min(queued["fetch_bars"])
        # One task group per batch: a batch is merged while other batches are still fetching,
        # not after the whole fetch map.
        first_upsert = min(start for task, _, start, _ in times if task == "upsert_bars")
        assert first_upsert < max(end for task, _, _, end in times if task == "fetch_bars")
        # Each fetch resolves its batch with one pull of the planner's list from the API server
        # (the group maps one argument, the whole batch); one group argument per field was one
        # pull each, eight per fetch.
        plan_pulls = [
            line
            for line in (state / "logs" / "api-server.log").read_text().splitlines()
            if "method=GET" in line and f"/xcoms/universe_load/{run_id}/plan_load/return_value" in line
        ]
        assert len(plan_pulls) == len(queued["fetch_bars"]), plan_pulls
        # Both workers started warm: task processes fork from a worker that imported their modules.
        for index in (1, 2):
            worker_log = (state / "logs" / f"{worker_name(index)}.log").read_text()
            assert "TickStock task modules and the NYSE calendar preloaded" in worker_log

        descendants = psutil.Process(launcher.pid).children(recursive=True)
        servers = server_pids(state)
        assert all(servers.values()), servers
        os.killpg(launcher.pid, signal.SIGTERM)
        wait_for(lambda: "Stopping ..." in out.read_text(), timeout=60, what="the launcher to start stopping")
        os.killpg(launcher.pid, signal.SIGTERM)  # the second signal of a group kill, mid clean-up
        assert launcher.wait(timeout=300) == 0, out.read_text()[-3000:]
        _, alive = psutil.wait_procs(descendants, timeout=60)
        assert alive == [], [(p.pid, p.cmdline()) for p in alive]
        assert server_pids(state) == dict.fromkeys(servers), out.read_text()[-3000:]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        for process in _alive(descendants):
            process.kill()
        LocalCluster(state).stop_servers()  # those of a run that failed before its own stop


# ------------------------------------------------------------------------------------------------
# Acceptance: 500 symbols x 1 year on 2 workers
# ------------------------------------------------------------------------------------------------

ACCEPTANCE_SYMBOLS = 500
RATE = 100


@pytest.mark.cluster
@pytest.mark.timeout(5400)
def test_500_symbols_one_year_on_two_workers():
    from tickstock_dev.bench_sim import bench_simulator, warm

    names = sim_symbols(ACCEPTANCE_SYMBOLS)
    cluster = LocalCluster(
        services.state_dir() / "cluster-acceptance",
        port=free_port(),
        rate_limit=f"{RATE}/s",
        # A day-bar cache for every symbol-year, and the API's rate limit enforced (429 beyond it).
        simulator=lambda: bench_simulator(cache_symbols=ACCEPTANCE_SYMBOLS, now=SIM_NOW, rate_limit=f"{RATE}/s"),
    )
    with cluster:
        info = cluster.info
        assert info is not None
        assert cluster.sim is not None
        warm(cluster.sim, names)  # the cold path computes each symbol's year once; resets the stats
        reset_load_tables(info.postgres_url)
        job_id = f"cluster-acceptance-{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        run_id = cluster.trigger("universe_load", load_conf(names, job_id=job_id))
        run = cluster.wait_for_run("universe_load", run_id, timeout=4800)
        wall_s = time.monotonic() - t0
        stats = cluster.sim.stats()
        tis = cluster.task_instances("universe_load", run_id)
        counts = bar_counts(info.postgres_url, names)

    run_s = (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()
    per_worker = {
        host: sum(1 for ti in tis if ti.hostname == host) for host in sorted({ti.hostname or "" for ti in tis})
    }
    crossed = cross_worker_batches(tis)
    figures = {
        "symbols": ACCEPTANCE_SYMBOLS,
        "workers": len(info.workers),
        "concurrency": info.concurrency,
        "state": run["state"],
        "wall_s": round(wall_s, 1),
        "dag_run_s": round(run_s, 1),
        "task_instances": len(tis),
        "task_instances_per_worker": per_worker,
        "fetch_hosts": sorted(h or "" for h in hosts_by_task(tis).get("fetch_bars", set())),
        "upsert_hosts": sorted(h or "" for h in hosts_by_task(tis).get("upsert_bars", set())),
        "batches_fetched_and_upserted_on_different_workers": len(crossed),
        "requests_ok": stats["by_status"].get("200", 0),
        "requests_429": stats["by_status"].get("429", 0),
        "busiest_second": stats["max_in_any_1s"],
        "busiest_second_accepted": stats["max_accepted_in_any_1s"],
        "busiest_minute": stats["max_in_any_60s"],
        "rate_limit_per_s": RATE,
        "retried_task_instances": sum(1 for ti in tis if ti.try_number > 1),
        # where the run's time went: summed TI seconds and TI count per task id
        "task_seconds": {
            task: round(sum(ti.seconds or 0.0 for ti in tis if ti.task_id == task), 1)
            for task in sorted({ti.task_id for ti in tis})
        },
        "task_counts": {
            task: sum(1 for ti in tis if ti.task_id == task) for task in sorted({ti.task_id for ti in tis})
        },
    }
    artifacts = ROOT / "test-artifacts" / "cluster"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "acceptance.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))

    assert run["state"] == "success", figures
    assert counts == expected_counts(names, 365)
    assert {ti.state for ti in tis} == {"success"}
    assert set(per_worker) == set(info.workers), figures
    assert crossed, "every batch was fetched and upserted on the same worker"
    assert stats["max_in_any_1s"] <= RATE, figures


# ------------------------------------------------------------------------------------------------
# The harness's fault controls (what the fault tests build on)
# ------------------------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_components_are_killed_and_restarted_one_at_a_time():
    """SIGKILL of a worker takes its whole tree and nothing else; every restart leaves a working cluster."""
    cluster = LocalCluster(services.state_dir() / "cluster-test", port=free_port(), concurrency=2)
    with cluster:
        info = cluster.info
        assert info is not None
        servers = cluster.server_pids()

        worker = _tree(cluster.processes.get(worker_name(1)).process.pid)
        other = _tree(cluster.processes.get(worker_name(2)).process.pid)
        cluster.kill_worker(1)
        assert psutil.wait_procs(worker, timeout=60)[1] == []
        assert _alive(other) == other
        cluster.restart(worker_name(1))  # returns once Celery logged "ready"
        assert cluster.processes.get(worker_name(1)).running

        for component in ("scheduler", "triggerer"):
            tree = _tree(cluster.processes.get(component).process.pid)
            cluster.kill(component)
            assert psutil.wait_procs(tree, timeout=60)[1] == []
            cluster.restart(component)
            assert cluster.processes.get(component).running

        cluster.restart_tickstock_postgres()
        cluster.restart_tickstock_redis()
        after = cluster.server_pids()
        assert after["tickstock postgres"] not in (None, servers["tickstock postgres"])
        assert after["tickstock redis"] not in (None, servers["tickstock redis"])
        # Airflow's metadata DB and the broker were not touched
        assert after["airflow postgres"] == servers["airflow postgres"]
        assert after["broker redis"] == servers["broker redis"]
        # same URLs as before the restarts
        assert redis.Redis.from_url(info.redis_url).ping()
        reset_load_tables(info.postgres_url)

        symbols = ["SCHG", "VUG"]
        run_id = cluster.trigger("universe_load", {"symbols": symbols, "days": 2, "as_of": AS_OF, "batch_size": 1})
        run = cluster.wait_for_run("universe_load", run_id, timeout=900)
        tis = cluster.task_instances("universe_load", run_id)
        assert run["state"] == "success", [(ti.task_id, ti.map_index, ti.state) for ti in tis]
        assert bar_counts(info.postgres_url, symbols) == expected_counts(symbols, 2)
        assert {ti.hostname for ti in tis} == {worker_name(1), worker_name(2)}
    assert set(cluster.server_pids().values()) == {None}
