"""Run ``universe_load`` through Airflow for the benchmark and report what the run cost.

Each load is one ``airflow dags test universe_load -c '{...}'`` subprocess with the environment
``tickstock_dev.airflow_env`` builds (its own ``AIRFLOW_HOME``, the simulator as
``massive_default``, Variable ``massive_rate_limit`` from the environment). A subprocess, not
``dag.test()`` in the bench process, so the figures include everything a real run pays (imports,
parsing, the in-process Execution API) and the process's memory can be measured on its own.

Three clocks are kept per load: the process wall time, the DagRun's own ``start_date`` →
``end_date`` from the metadata DB (what a scheduler-driven run would show in the UI, without the
CLI's start-up), and the sum of task durations per task id (to tell work from per-task overhead).
Peak RSS is polled with psutil for the whole process tree; under ``dags test`` every task runs in
that one process, so its peak bounds the biggest task's from above.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db

if TYPE_CHECKING:
    from massive_sim.testing import SimHandle
    from tickstock_dev.bench_profile import Profile
    from tickstock_dev.services import ServiceUrls

POOL = "massive_api"
POOL_SLOTS = 16
SIM_NOW = "2025-12-02T21:00:00Z"
AS_OF = "2025-12-02"


def sim_symbols(count: int) -> list[str]:
    """The first ``count`` synthetic tickers of the simulator's universe (seed 0).

    Synthetic names only: the curated ones include an illiquid, a 2025 listing and a delisted
    ticker, whose short series are correct but would make runs of different sizes unequal.
    """
    from massive_sim.universe import CURATED_TICKERS, Universe

    names = [t.ticker for t in Universe(seed=0, synthetic_size=max(count, 5000)).tickers]
    names = [n for n in names if n not in CURATED_TICKERS]
    if count > len(names):
        raise ValueError(f"the simulator has only {len(names)} synthetic tickers")
    return names[:count]


def load_conf(symbols: list[str], *, job_id: str, days: int = 365, batch_size: int = 50) -> dict[str, Any]:
    """The ``universe_load`` params of a benchmark load: all four timeframes, 1 year as of the sim's day."""
    return {
        "symbols": symbols,
        "days": days,
        "as_of": AS_OF,
        "job_id": job_id,
        "source": "make bench",
        "batch_size": batch_size,
    }


@dataclass
class LoadRun:
    """What one ``universe_load`` run cost."""

    state: str
    wall_s: float
    run_s: float
    peak_rss_tree: int
    peak_rss_process: int
    task_seconds: dict[str, float] = field(default_factory=dict)
    task_counts: dict[str, int] = field(default_factory=dict)
    task_peak: dict[str, float] = field(default_factory=dict)
    profile: Profile | None = None
    log_tail: str = ""

    @property
    def task_total_s(self) -> float:
        return sum(self.task_seconds.values())


class _RssPoller:
    """Poll a process tree's RSS every ``interval`` s; keep the peak of the tree and of one process."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak_tree = 0
        self.peak_process = 0
        self._thread = threading.Thread(target=self._loop, name="rss-poller", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        continue
                if rss:
                    self.peak_tree = max(self.peak_tree, sum(rss))
                    self.peak_process = max(self.peak_process, *rss)
            except psutil.Error:
                break
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class AirflowLoader:
    """Runs a DAG (``universe_load`` unless told) with ``airflow dags test`` against one simulator and database."""

    def __init__(
        self,
        airflow_home: Path,
        urls: ServiceUrls,
        sim: SimHandle,
        *,
        rate_limit: str = "",
        use_executor: bool = False,
        dags_folder: Path | None = None,
    ) -> None:
        self.home = airflow_home
        self.env = {
            **os.environ,
            **airflow_env(airflow_home, urls, massive_url=sim.url, massive_api_key=sim.api_key),
            # Empty = no shared budget (the pool still bounds concurrency); "100/s" = Massive's advice.
            "AIRFLOW_VAR_MASSIVE_RATE_LIMIT": rate_limit,
            "AIRFLOW__CORE__MAX_MAP_LENGTH": "1024",
            "PYTHONUNBUFFERED": "1",
        }
        if use_executor:
            self.env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        if dags_folder is not None:
            self.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder.resolve())
        self.use_executor = use_executor
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def prepare(self) -> None:
        """Migrate the metadata DB once and make sure the ``massive_api`` pool exists."""
        ensure_airflow_db(self.env)
        subprocess.run(
            [self.airflow, "pools", "set", POOL, str(POOL_SLOTS), "Massive API fetches (make bench)"],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def set_rate_limit(self, rate_limit: str) -> None:
        self.env["AIRFLOW_VAR_MASSIVE_RATE_LIMIT"] = rate_limit

    def run(
        self, conf: dict[str, Any], *, dag_id: str = "universe_load", profile: bool = False, timeout: float = 1800
    ) -> LoadRun:
        """Run one DagRun; raise when the process fails or the DagRun is not ``success``."""
        from tickstock_dev import bench_profile

        argv = [self.airflow, "dags", "test", dag_id, "-c", json.dumps(conf)]
        if self.use_executor:
            argv.append("--use-executor")
        log_path = self.home / "bench-last-run.log"
        self.home.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        with log_path.open("w") as log_file:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT)
            poller = _RssPoller(proc.pid)
            profiles: list[Profile] = []
            if profile:
                with bench_profile.record(proc.pid, rate=50, subprocesses=True) as profiles:
                    code = proc.wait(timeout=timeout)
            else:
                code = proc.wait(timeout=timeout)
            wall = time.perf_counter() - t0
            poller.stop()
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        if code != 0:
            raise RuntimeError(f"airflow dags test exited {code}; last lines:\n{tail}")
        run = self._last_run(started_at, dag_id)
        run.wall_s = wall
        run.peak_rss_tree = poller.peak_tree
        run.peak_rss_process = poller.peak_process
        run.profile = profiles[0] if profiles else None
        run.log_tail = tail
        if run.state != "success":
            raise RuntimeError(f"{dag_id} ended {run.state}; last lines:\n{tail}")
        return run

    def _last_run(self, not_before: float, dag_id: str) -> LoadRun:
        """Read the DAG's newest DagRun and its task instances from the metadata DB."""
        db = self.home / "airflow.db"
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT id, run_id, state, start_date, end_date FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
            if row is None:
                raise RuntimeError(f"no {dag_id} DagRun in the metadata DB")
            _, run_id, state, start, end = row
            start_dt, end_dt = _parse_ts(start), _parse_ts(end)
            if start_dt is None or start_dt.timestamp() < not_before - 5:
                raise RuntimeError(f"newest DagRun {run_id} started before this load")
            tis = conn.execute(
                "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        seconds: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        peak: dict[str, float] = defaultdict(float)
        for task_id, ts, te in tis:
            s, e = _parse_ts(ts), _parse_ts(te)
            if s and e:
                d = (e - s).total_seconds()
                seconds[task_id] += d
                counts[task_id] += 1
                peak[task_id] = max(peak[task_id], d)
        run_s = (end_dt - start_dt).total_seconds() if start_dt and end_dt else float("nan")
        return LoadRun(state, 0.0, run_s, 0, 0, dict(seconds), dict(counts), dict(peak))


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def reset_load_tables(postgres_url: str) -> None:
    """Empty the tables a load writes, so every run loads fresh rows and fetches fresh metadata."""
    import psycopg

    from tickstock.schema import upgrade
    from tickstock.staging import clear_all_staged
    from tickstock.timeframes import OHLCV_TABLES

    upgrade(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(['symbols', *(t.table for t in OHLCV_TABLES.values())])}")
        clear_all_staged(conn)
        conn.execute("CHECKPOINT")


def loaded_bars(postgres_url: str) -> dict[str, int]:
    """Rows per OHLCV table: proof that a timed load actually loaded."""
    import psycopg

    from tickstock.timeframes import OHLCV_TABLES

    with psycopg.connect(postgres_url) as conn:
        return {
            tf.value: conn.execute(f"SELECT count(*) FROM {t.table}").fetchone()[0]  # type: ignore[index]
            for tf, t in OHLCV_TABLES.items()
        }
