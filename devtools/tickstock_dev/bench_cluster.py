"""Targets 1-5 and 7 of issue 15, measured where users run the loader: on ``make cluster``.

One :class:`~tickstock_dev.cluster.LocalCluster` (CeleryExecutor, 2 workers, PostgreSQL metadata,
the ``massive_api`` pool, the shared Redis request budget at 100/s, the intake bridge and the
``redis_job_listener`` DAG) serves every measurement here, in this order:

- ``job`` (target 4): the job TickStockAppV2 sends most, SCHG + VUG for 2 days, PUBLISHed on
  ``tickstock.jobs.data_load``; timed from the PUBLISH to the ``completed`` status message on
  ``tickstock.jobs.status`` (subscribed before publishing, so no poll interval is in the figure);
- ``speedup`` (target 3): the design document's loader (:mod:`tickstock_dev.bench_baseline`,
  unthrottled as written) vs a ``universe_load`` DagRun, 100 symbols x 1 year, paired per run;
- ``dagstest``: the same 100-symbol load through ``airflow dags test`` (the mode the older
  figures came from), a secondary row next to target 3;
- ``load`` (targets 1, 2, 7): 5,000 symbols x 1 year, all timeframes, fresh database: DagRun
  against requests ÷ 100, requests per symbol, and the peak RSS of every task process;
- ``refresh`` (target 5): ``nightly_refresh`` of that universe for one new session.

The simulator enforces the API's limit itself (100/s, excess answered 429) and answers every
request after ``latency_ms`` (100 ms: the real API's order; some rows also at 0 ms). Its day-bar
cache is sized for the largest universe and warmed before anything is timed (see bench_sim).

Why the figures are what they are is in the section notes: per task id summed seconds and task
instance counts, the scheduling gap (queued → running) per task id, and the request rate over
the run against the budget; :mod:`tickstock_dev.bench_analysis` turns them into the text under a
missed target.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tickstock_dev.bench_airflow import AS_OF, SIM_NOW, reset_load_tables, sim_symbols
from tickstock_dev.bench_report import Figure, Section, Target, ratios
from tickstock_dev.cluster import DEFAULT_CONCURRENCY, DEFAULT_WORKERS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import redis

    from tickstock_dev.cluster import LocalCluster

RATE = 100
STATE_DIR_NAME = "cluster-bench"  # under the state folder; the acceptance tests use others
JOB_SYMBOLS = ("SCHG", "VUG")  # curated simulator tickers: TickStockAppV2's most frequent job
JOB_DAYS = 2
BASELINE_NOW = datetime(2025, 12, 2, 16, 0)  # the design document reads datetime.now(): the sim's day
REFRESH_AS_OF = "2025-12-03"
REFRESH_NOW = "2025-12-03T23:30:00Z"  # 18:30 New York, when the schedule fires
FINAL_JOB_STATES = frozenset({"completed", "completed_with_errors", "failed"})
GIB = 2**30
RATE_BUCKET_S = 10
LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ClusterSizes:
    """Sizes of the cluster measurements: the issue's, or tiny ones for the smoke test."""

    load_symbols: int
    speedup_symbols: int
    speedup_runs: int
    speedup_latencies: tuple[int, ...]
    job_runs: int
    job_runs_0ms: int
    speedup_runs_0ms: int = 1  # the 0-ms pair is a side row: one run keeps the bench inside 40 min
    workers: int = DEFAULT_WORKERS
    concurrency: int = DEFAULT_CONCURRENCY
    latency_ms: int = 100


CLUSTER_FULL = ClusterSizes(
    load_symbols=5000,
    speedup_symbols=100,
    speedup_runs=3,
    speedup_latencies=(100, 0),
    job_runs=10,
    job_runs_0ms=3,
)
CLUSTER_QUICK = ClusterSizes(
    load_symbols=5,
    speedup_symbols=3,
    speedup_runs=1,
    speedup_latencies=(100,),
    job_runs=1,
    job_runs_0ms=0,
)


def universe_conf(symbols: list[str], *, job_id: str, days: int = 365) -> dict[str, Any]:
    """A ``universe_load`` conf with the DAG's own defaults (batching included): what a user sends."""
    return {"symbols": symbols, "days": days, "as_of": AS_OF, "job_id": job_id, "source": "make bench"}


# ------------------------------------------------------------------------------------------------
# What a cluster run cost: task instances, scheduling gaps, the request rate over time
# ------------------------------------------------------------------------------------------------


@dataclass
class TaskRow:
    task_id: str
    map_index: int
    state: str | None
    hostname: str | None
    try_number: int
    queued: datetime | None
    start: datetime | None
    end: datetime | None
    ti_uuid: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.start and self.end else 0.0

    @property
    def waited(self) -> float | None:
        """Queued → running: the scheduler-to-worker hand-over (Celery, a free slot, process start)."""
        return (self.start - self.queued).total_seconds() if self.start and self.queued else None


@dataclass
class ClusterRun:
    """One DagRun on the cluster and what it cost."""

    dag_id: str
    run_id: str
    state: str
    run_s: float
    wall_s: float
    tasks: list[TaskRow]
    stats: dict[str, Any]
    started_epoch: float
    peak_rss: dict[str, int] = field(default_factory=dict)
    peak_supervisor_rss: int = 0

    @property
    def by_endpoint(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.stats.get("by_endpoint", {}).items() if v}

    @property
    def by_status(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.stats.get("by_status", {}).items()}

    @property
    def served(self) -> int:
        """API requests the simulator answered other than 429 (the ones the budget had to pay for)."""
        return int(self.stats.get("total", 0)) - self.by_status.get("429", 0)

    def breakdown(self) -> list[str]:
        """Per task id: TIs, summed and longest seconds, median/max queued → running."""
        per: dict[str, list[TaskRow]] = defaultdict(list)
        for t in self.tasks:
            per[t.task_id].append(t)
        rows = [
            "| task id | TIs | summed s | longest s | queued → running, median / max s | first start → last end, s |",
            "|---|---|---|---|---|---|",
        ]
        run_start = min((t.start for t in self.tasks if t.start), default=None)
        for task_id, tis in sorted(per.items(), key=lambda kv: min(t.start or LATEST for t in kv[1])):
            waits = [w for t in tis if (w := t.waited) is not None]
            starts = [t.start for t in tis if t.start]
            ends = [t.end for t in tis if t.end]
            span = ""
            if starts and ends and run_start:
                first, last = (min(starts) - run_start).total_seconds(), (max(ends) - run_start).total_seconds()
                span = f"{first:.1f} → {last:.1f}"
            wait = f"{statistics.median(waits):.1f} / {max(waits):.1f}" if waits else "–"
            rows.append(
                f"| {task_id} | {len(tis)} | {sum(t.seconds for t in tis):.1f} | "
                f"{max((t.seconds for t in tis), default=0):.1f} | {wait} | {span} |"
            )
        busy = sum(t.seconds for t in self.tasks)
        rows += ["", f"Task instances summed {busy:.0f} s over a {self.run_s:.0f} s DagRun."]
        return rows

    def request_span(self, rate: int = RATE, bucket: int = RATE_BUCKET_S) -> tuple[float, float, float]:
        """(s before the first request, s after the last one, % of ``bucket``-s steps at >= 90 % of the budget)."""
        arrivals = sorted(self.stats.get("arrivals", []))
        if not arrivals:
            return float("nan"), float("nan"), 0.0
        first = arrivals[0] - self.started_epoch
        tail = self.started_epoch + self.run_s - arrivals[-1]
        counts: dict[int, int] = defaultdict(int)
        for a in arrivals:
            counts[int(max(0.0, a - self.started_epoch) // bucket)] += 1
        steps = max(1, int(self.run_s // bucket))
        full = sum(1 for i in range(steps) if counts.get(i, 0) >= 0.9 * rate * bucket)
        return first, tail, 100.0 * full / steps

    def add_span_figures(self, section: Section, suffix: str = "") -> None:
        first, tail, full = self.request_span()
        section.add(f"DagRun start → first API request{suffix}", "s", [first])
        section.add(f"last API request → DagRun end{suffix}", "s", [tail])
        section.add(f"10-s steps with the budget ≥ 90 % used{suffix}", "%", [full])
        busy = sum(t.seconds for t in self.tasks if t.task_id != "fetch_bars")
        section.add(f"summed seconds of task instances that do not fetch{suffix}", "s", [busy])

    def rate_profile(self, rate: int = RATE, bucket: int = RATE_BUCKET_S) -> list[str]:
        """Requests per second in ``bucket``-second steps from the DagRun's start, against the budget."""
        arrivals = sorted(self.stats.get("arrivals", []))
        if not arrivals:
            return []
        t0 = self.started_epoch
        end = t0 + max(self.run_s, arrivals[-1] - t0)
        counts: dict[int, int] = defaultdict(int)
        for a in arrivals:
            counts[int(max(0.0, a - t0) // bucket)] += 1
        steps = range(int((end - t0) // bucket) + 1)
        cells = [f"{counts.get(i, 0) / bucket:.0f}" for i in steps]
        full = sum(1 for i in steps if counts.get(i, 0) >= 0.9 * rate * bucket)
        first = arrivals[0] - t0
        return [
            f"Requests/s in {bucket}-s steps from the DagRun's start (budget {rate}/s): {' '.join(cells)}.",
            f"First request {first:.1f} s after the DagRun started; "
            f"{full} of {len(cells)} steps at ≥ 90 % of the budget.",
        ]


def _parse(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def task_rows(cluster: LocalCluster, dag_id: str, run_id: str) -> list[TaskRow]:
    rows = cluster.metadata_query(
        "SELECT task_id, map_index, state, hostname, try_number, queued_dttm, start_date, end_date, id::text"
        " FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
        (dag_id, run_id),
    )
    return [TaskRow(*row) for row in rows]


class TaskRssPoller:
    """Peak RSS of every task process under the Celery workers, polled with psutil.

    In Airflow 3 a Celery pool process supervises each task it takes: it forks the task runner,
    which renames itself ``airflow worker -- <task instance uuid>`` and runs the operator; the
    pool process (the supervisor) stays and takes the next task. The peak per task instance is
    that task runner's RSS (resident pages, shared ones included: an upper bound of what the
    task adds), keyed by the task instance's uuid so it can be attributed to a task id. The
    supervisors' peak is kept separately.
    """

    def __init__(self, worker_pids: list[int], interval: float = 0.2) -> None:
        self._worker_pids = worker_pids
        self._interval = interval
        self._stop = threading.Event()
        self.by_ti: dict[str, int] = {}
        self.supervisor = 0
        self._thread = threading.Thread(target=self._loop, name="task-rss-poller", daemon=True)

    def __enter__(self) -> TaskRssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            for pid in self._worker_pids:
                try:
                    children = psutil.Process(pid).children(recursive=True)
                except psutil.Error:
                    continue
                for p in children:
                    try:
                        title = " ".join(p.cmdline())
                        rss = p.memory_info().rss
                    except psutil.Error:
                        continue
                    if title.startswith("airflow worker -- "):
                        ti = title.removeprefix("airflow worker -- ").strip()
                        self.by_ti[ti] = max(self.by_ti.get(ti, 0), rss)
                    else:
                        self.supervisor = max(self.supervisor, rss)
            self._stop.wait(self._interval)


def worker_pids(cluster: LocalCluster) -> list[int]:
    from tickstock_dev.cluster import worker_name

    return [cluster.processes.get(worker_name(i)).process.pid for i in range(1, cluster.workers + 1)]


def run_dag(
    cluster: LocalCluster,
    dag_id: str,
    conf: dict[str, Any],
    *,
    timeout: float = 3600,
    poll_rss: bool = False,
) -> ClusterRun:
    """Trigger one run through the REST API, wait for it, collect its task instances and the sim's stats."""
    sim = cluster.sim
    assert sim is not None
    poller = TaskRssPoller(worker_pids(cluster)) if poll_rss else None
    t0, epoch0 = time.perf_counter(), time.time()
    if poller:
        poller.__enter__()
    try:
        run_id = cluster.trigger(dag_id, conf)
        run = cluster.wait_for_run(dag_id, run_id, timeout=timeout)
    finally:
        if poller:
            poller.__exit__()
    wall = time.perf_counter() - t0
    stats = sim.stats()
    start, end = _parse(run.get("start_date")), _parse(run.get("end_date"))
    tasks = task_rows(cluster, dag_id, run_id)
    result = ClusterRun(
        dag_id,
        run_id,
        run["state"],
        (end - start).total_seconds() if start and end else float("nan"),
        wall,
        tasks,
        stats,
        start.timestamp() if start else epoch0,
    )
    if poller:
        by_uuid = {t.ti_uuid: t.task_id for t in tasks}
        for ti, rss in poller.by_ti.items():
            task_id = by_uuid.get(ti, "(unknown task)")
            result.peak_rss[task_id] = max(result.peak_rss.get(task_id, 0), rss)
        result.peak_supervisor_rss = poller.supervisor
    if result.state != "success":
        failed = [(t.task_id, t.map_index, t.state) for t in tasks if t.state != "success"][:10]
        raise RuntimeError(f"{dag_id} run {run_id} ended {result.state}; task instances not successful: {failed}")
    return result


def _fresh(cluster: LocalCluster, latency_ms: int, **knobs: Any) -> None:
    """Empty TickStock's load tables, reset the simulator's statistics, set its latency."""
    assert cluster.info is not None
    assert cluster.sim is not None
    reset_load_tables(cluster.info.postgres_url)
    cluster.sim.reset()
    cluster.sim.configure(latency_ms=latency_ms, **knobs)


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def conditions(cluster: LocalCluster, sizes: ClusterSizes) -> str:
    return (
        f"make cluster: CeleryExecutor, {cluster.workers} workers × concurrency {cluster.concurrency}, "
        f"parallelism {cluster.parallelism}, pool `massive_api` {cluster.pool_slots} slots, PostgreSQL metadata; "
        f"Variable `massive_rate_limit` {cluster.rate_limit} and the simulator limited to {RATE}/s (429 beyond); "
        f"simulator latency {sizes.latency_ms} ms per response unless a row says 0 ms"
    )


# ------------------------------------------------------------------------------------------------
# Target 4: a small job by Redis message, PUBLISH -> completed
# ------------------------------------------------------------------------------------------------


@dataclass
class JobTiming:
    job_id: str
    seconds: dict[str, float]  # status -> seconds after PUBLISH it was first seen
    final: str
    receivers: int
    published_epoch: float = 0.0
    run: dict[str, float] = field(default_factory=dict)  # queued_at/start_date/end_date -> s after PUBLISH


def publish_and_wait(client: redis.Redis, *, job_id: str, timeout: float = 600) -> JobTiming:
    """PUBLISH one job message and follow its status messages until a final status."""
    from tickstock.intake import CHANNEL
    from tickstock.job_status import STATUS_CHANNEL

    message = {
        "job_id": job_id,
        "job_type": "csv_universe_load",
        "symbols": list(JOB_SYMBOLS),
        "days": JOB_DAYS,
        "as_of": AS_OF,
        "source": "make bench",
    }
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(STATUS_CHANNEL)
    pubsub.get_message(timeout=5)  # the subscribe confirmation: subscribed before the PUBLISH
    seen: dict[str, float] = {}
    try:
        t0, epoch = time.perf_counter(), time.time()
        receivers = int(client.publish(CHANNEL, json.dumps(message)))
        deadline = t0 + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id}: no final status after {timeout:.0f} s (seen {seen})")
            raw = pubsub.get_message(timeout=min(remaining, 5.0))
            if raw is None or raw.get("type") != "message":
                continue
            state = json.loads(raw["data"])
            if state.get("job_id") != job_id:
                continue
            status = str(state.get("status"))
            seen.setdefault(status, time.perf_counter() - t0)
            if status in FINAL_JOB_STATES:
                return JobTiming(job_id, seen, status, receivers, epoch)
    finally:
        pubsub.close()


def run_job_latency(cluster: LocalCluster, sizes: ClusterSizes, *, log: Callable[[str], None] = print) -> Section:
    import redis as redis_lib

    assert cluster.info is not None
    assert cluster.sim is not None
    t_section = time.perf_counter()
    section = Section("4", f"A small job by Redis message: {' + '.join(JOB_SYMBOLS)}, {JOB_DAYS} days")
    client = redis_lib.Redis.from_url(cluster.info.redis_url, decode_responses=True)
    tag = uuid.uuid4().hex[:6]
    last_run: ClusterRun | None = None
    series: dict[int, list[JobTiming]] = {}
    try:
        plan = [(sizes.latency_ms, sizes.job_runs), (0, sizes.job_runs_0ms)]
        for latency, runs in plan:
            if runs <= 0:
                continue
            cluster.sim.reset()
            cluster.sim.configure(latency_ms=latency)
            warmup = publish_and_wait(client, job_id=f"bench-job-{tag}-{latency}ms-warm")
            log(f"  {latency} ms: untimed warm-up job {warmup.final} after {warmup.seconds.get(warmup.final, 0):.1f} s")
            timings = []
            for r in range(runs):
                timing = publish_and_wait(client, job_id=f"bench-job-{tag}-{latency}ms-{r}")
                if timing.final != "completed":
                    raise RuntimeError(f"job {timing.job_id} ended {timing.final}")
                # `completed` comes from the run's last task: the DagRun itself ends a moment later.
                run = cluster.wait_for_run("universe_load", f"redis__{timing.job_id}", timeout=300)
                for name in ("queued_at", "start_date", "end_date"):
                    if (when := _parse(run.get(name))) is not None:
                        timing.run[name] = when.timestamp() - timing.published_epoch
                timings.append(timing)
                steps = ", ".join(f"{k} {v:.1f} s" for k, v in timing.seconds.items())
                log(f"  {latency} ms, run {r + 1}/{runs}: {steps}")
            series[latency] = timings
            if latency == sizes.latency_ms:
                job = timings[-1].job_id
                run = cluster.wait_for_run("universe_load", f"redis__{job}", timeout=300)
                start, end = _parse(run.get("start_date")), _parse(run.get("end_date"))
                last_run = ClusterRun(
                    "universe_load", f"redis__{job}", run["state"],
                    (end - start).total_seconds() if start and end else float("nan"), 0.0,
                    task_rows(cluster, "universe_load", f"redis__{job}"), cluster.sim.stats(),
                    start.timestamp() if start else 0.0,
                )  # fmt: skip
    finally:
        client.close()
    for latency, timings in series.items():
        label = f"{latency} ms"
        done = section.add(f"PUBLISH → completed, {label}", "s", [t.seconds["completed"] for t in timings])
        for status in ("queued", "processing"):
            values = [t.seconds[status] for t in timings if status in t.seconds]
            if values:
                section.add(f"PUBLISH → {status}, {label}", "s", values)
        for name, what in (("queued_at", "run created"), ("start_date", "DagRun start"), ("end_date", "DagRun end")):
            values = [t.run[name] for t in timings if name in t.run]
            if values:
                section.add(f"PUBLISH → {what}, {label}", "s", values)
        if latency == sizes.latency_ms:
            target = Target("small job, PUBLISH → completed (p50)", "<= 12 s", done, done.median <= 12, 4)
            section.targets.append(target)
    section.method = [
        f'The message TickStockAppV2 sends, `{{"job_type": "csv_universe_load", "symbols": '
        f'{json.dumps(list(JOB_SYMBOLS))}, "days": {JOB_DAYS}, "as_of": "{AS_OF}"}}` with a new `job_id`, '
        "PUBLISHed on `tickstock.jobs.data_load` (the intake bridge copies it to the stream, "
        "`redis_job_listener` triggers `universe_load`). Timed from just before the PUBLISH to the first "
        "`completed` message for the job on `tickstock.jobs.status` (subscribed before publishing); the "
        "`queued` and `processing` messages are timed the same way (`queued` is only published when the run "
        "has not started yet), the run's creation, start and end from its DagRun (`redis__<job_id>`). "
        "Warm cluster: one untimed job first "
        f"at each latency. Runs one after another; the symbols' bars are already stored after the warm-up, "
        "so later jobs re-upsert unchanged rows (ticker details are fresh and not fetched again).",
    ]
    if last_run is not None:
        section.notes += [
            f"Where the last {sizes.latency_ms}-ms job's DagRun ({last_run.run_s:.1f} s) went:",
            "",
            *last_run.breakdown(),
        ]
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# Target 3: the design document's loader vs universe_load, 100 symbols
# ------------------------------------------------------------------------------------------------


def run_speedup(cluster: LocalCluster, sizes: ClusterSizes, *, log: Callable[[str], None] = print) -> Section:
    import redis as redis_lib

    from tickstock_dev.bench_baseline import DesignDocLoader

    assert cluster.info is not None
    assert cluster.sim is not None
    t_section = time.perf_counter()
    n = sizes.speedup_symbols
    section = Section("3", f"{n} symbols × 1 year: universe_load vs the design document's loader")
    names = sim_symbols(n)
    client = redis_lib.Redis.from_url(cluster.info.redis_url)
    baseline = DesignDocLoader(cluster.sim.url, cluster.sim.api_key, cluster.info.postgres_url, client, BASELINE_NOW)
    last: dict[int, ClusterRun] = {}
    try:
        # Untimed: the first universe_load after the cluster starts pays one-off costs (each Celery
        # pool process's first task, first connections; measured 18.0 s against 10.6 s for the
        # next run), which a long-running deployment pays once, not per load.
        _fresh(cluster, sizes.speedup_latencies[0])
        warm = run_dag(cluster, "universe_load", universe_conf(names, job_id=f"bench-ul-{n}-warm"))
        log(f"  {n} symbols: untimed warm-up universe_load, DagRun {warm.run_s:.1f} s")
        for latency in sizes.speedup_latencies:
            base_s, run_s, wall_s, base_req, ul_req = [], [], [], [], []
            runs = sizes.speedup_runs if latency == sizes.latency_ms else sizes.speedup_runs_0ms
            for r in range(runs):
                _fresh(cluster, latency)
                t0 = time.perf_counter()
                result = baseline.handle_csv_universe_load({"job_id": f"bench-baseline-{n}-{r}", "symbols": names})
                base_s.append(time.perf_counter() - t0)
                if result["symbols_loaded"] != n:
                    raise RuntimeError(f"baseline loaded {result['symbols_loaded']}/{n}: {result['errors'][:3]}")
                base_req.append(int(cluster.sim.stats().get("total", 0)))
                _fresh(cluster, latency)
                run = run_dag(cluster, "universe_load", universe_conf(names, job_id=f"bench-ul-{n}-{latency}-{r}"))
                run_s.append(run.run_s)
                wall_s.append(run.wall_s)
                ul_req.append(run.served)
                last[latency] = run
                log(
                    f"  {n} symbols, {latency} ms, run {r + 1}/{runs}: baseline {base_s[-1]:.1f} s, "
                    f"universe_load DagRun {run.run_s:.1f} s (trigger → done {run.wall_s:.1f} s)"
                )
            tag = f"{latency} ms"
            section.add(f"design document's loader, {tag}", "s", base_s)
            section.add(f"universe_load DagRun, {tag}", "s", run_s)
            section.add(f"universe_load trigger → final state, {tag}", "s", wall_s)
            section.add(f"API requests, design document's loader, {tag}", "req", base_req)
            section.add(f"API requests, universe_load, {tag}", "req", ul_req)
            speedup = section.add(f"speed-up: loader ÷ DagRun, {tag}", "×", ratios(base_s, run_s))
            section.add(f"universe_load requests ÷ {RATE}/s (its bound), {tag}", "s", [r / RATE for r in ul_req])
            last[latency].add_span_figures(section, f", {tag}")
            if latency == sizes.latency_ms:
                section.targets.append(Target(f"speed-up, {n} sym, {tag}", ">= 5×", speedup, speedup.median >= 5, 3))
    finally:
        client.close()
    section.method = [
        "Design document's loader: `tickstock_dev.bench_baseline.DesignDocLoader` as written (per symbol ticker "
        "details, then hour, day, week, month one after another, bare `requests.get`, a psycopg2 connection per "
        "insert), unthrottled, in the bench process, against the cluster's TickStock database and simulator. "
        f"universe_load: triggered through the REST API with the DAG's defaults at the cluster's {RATE}/s budget; "
        "*DagRun* is its `start_date` → `end_date` (the target), *trigger → final state* adds the scheduler's "
        "pick-up and the 1-s poll. Fresh tables before each side; the pairs alternate. One untimed universe_load "
        "of the same symbols runs first (the cluster's first run pays one-off start-up costs).",
    ]
    for latency, run in last.items():
        section.notes += [f"Where the last universe_load DagRun at {latency} ms ({run.run_s:.1f} s) went:", ""]
        section.notes += [*run.breakdown(), "", *run.rate_profile(), ""]
    section.seconds = time.perf_counter() - t_section
    return section


def run_dags_test_row(
    cluster: LocalCluster,
    sizes: ClusterSizes,
    airflow_home: Path,
    *,
    log: Callable[[str], None] = print,
) -> Section:
    """The older mode as a secondary row: the same 100-symbol load through ``airflow dags test``."""
    import redis as redis_lib

    from tickstock_dev import services
    from tickstock_dev.bench_airflow import AirflowLoader
    from tickstock_dev.bench_baseline import DesignDocLoader

    assert cluster.info is not None
    assert cluster.sim is not None
    t_section = time.perf_counter()
    n = sizes.speedup_symbols
    latency = sizes.latency_ms
    section = Section("3b", f"Secondary: the same {n} symbols through `airflow dags test` ({latency} ms)")
    urls = services.ServiceUrls(cluster.info.postgres_url, cluster.info.redis_url)
    loader = AirflowLoader(airflow_home, urls, cluster.sim, rate_limit=f"{RATE}/s")
    log("  preparing the dags-test Airflow home (SQLite metadata, pool massive_api)")
    loader.prepare()
    names = sim_symbols(n)
    client = redis_lib.Redis.from_url(cluster.info.redis_url)
    baseline = DesignDocLoader(cluster.sim.url, cluster.sim.api_key, cluster.info.postgres_url, client, BASELINE_NOW)
    try:
        _fresh(cluster, latency)
        t0 = time.perf_counter()
        baseline.handle_csv_universe_load({"job_id": f"bench-baseline-dt-{n}", "symbols": names})
        base_s = time.perf_counter() - t0
        _fresh(cluster, latency)
        run = loader.run(universe_conf(names, job_id=f"bench-dagstest-{n}"))
    finally:
        client.close()
    log(f"  dags test: baseline {base_s:.1f} s, DagRun {run.run_s:.1f} s, process {run.wall_s:.1f} s")
    section.add("design document's loader", "s", [base_s])
    section.add("universe_load DagRun (dags test)", "s", [run.run_s])
    section.add("universe_load process (dags test, CLI start-up included)", "s", [run.wall_s])
    section.add("speed-up: loader ÷ DagRun (dags test)", "×", [base_s / run.run_s])
    section.method = [
        f"Not a target row: `airflow dags test universe_load` (SQLite metadata, every task in one process, one "
        f"after another) on the cluster's TickStock database and simulator, {RATE}/s budget, {latency} ms, "
        "the DAG's defaults; the mode the figures before issue 15 came from, kept for comparison with target 3.",
    ]
    counts = ", ".join(f"{k} {v:.1f} s ({run.task_counts.get(k, 0)} TI)" for k, v in sorted(run.task_seconds.items()))
    section.notes.append(f"Task instances: {counts}.")
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# Targets 1, 2, 7: the 5,000-symbol load
# ------------------------------------------------------------------------------------------------


def run_big_load(
    cluster: LocalCluster, sizes: ClusterSizes, *, log: Callable[[str], None] = print
) -> tuple[Section, ClusterRun]:
    t_section = time.perf_counter()
    n = sizes.load_symbols
    section = Section("1", f"{n:,} symbols × 1 year, all timeframes, on the cluster at {RATE} req/s")
    names = sim_symbols(n)
    _fresh(cluster, sizes.latency_ms)
    run = run_dag(cluster, "universe_load", universe_conf(names, job_id=f"bench-load-{n}"), poll_rss=True)
    bound = run.served / RATE
    per_symbol = run.served / n
    peak_task, peak_mib = max(run.peak_rss.items(), key=lambda kv: kv[1], default=("(none seen)", 0))
    log(
        f"  DagRun {run.run_s:.1f} s, {run.served:,} requests (bound {bound:.1f} s, {per_symbol:.2f} per symbol), "
        f"peak task RSS {peak_mib / 2**20:,.0f} MiB ({peak_task})"
    )
    section.add("universe_load DagRun", "s", [run.run_s])
    section.add("trigger → final state", "s", [run.wall_s])
    section.add("API requests served (not 429)", "req", [run.served])
    section.add("requests ÷ rate (the bound)", "s", [bound])
    section.add("requests answered 429", "req", [run.by_status.get("429", 0)])
    section.add("most requests in any 1 s", "req", [run.stats.get("max_in_any_1s", 0)])
    _add_loop_stalls(section, run.stats)
    ratio = section.add("DagRun ÷ bound", "×", [run.run_s / bound if bound else float("inf")])
    per = section.add("API requests per symbol", "req", [per_symbol])
    rss = Figure("peak RSS of a task process", "GiB", (peak_mib / GIB,))
    section.add("peak RSS of a task process", "MiB", [peak_mib / 2**20])
    section.add("peak RSS of a Celery pool process (supervisor)", "MiB", [run.peak_supervisor_rss / 2**20])
    run.add_span_figures(section)
    for endpoint, count in sorted(run.by_endpoint.items()):
        section.add(f"requests per symbol: {endpoint}", "req", [count / n])
    section.targets += [
        Target(f"{n:,} sym at {RATE}/s, {sizes.latency_ms} ms: DagRun ÷ (requests ÷ {RATE})", "<= 1.2", ratio,
               ratio.median <= 1.2, 1),
        Target(f"{n:,} sym: API requests per symbol, fresh database", "<= 4.06", per, per.median <= 4.06, 2),
        Target(f"peak RSS of any task in the {n:,}-symbol load", "< 1 GiB", rss, rss.median < 1.0, 7),
    ]  # fmt: skip
    section.method = [
        f"{n:,} synthetic symbols × 1 year as of {AS_OF}, all four timeframes, the DAG's defaults, triggered "
        "through the REST API into emptied tables (fresh database: no symbol metadata either). Requests are the "
        f"simulator's own count of the answers other than 429; the bound is that count ÷ {RATE}/s. Peak RSS: psutil "
        "polls every 0.2 s the processes under both Celery workers; each task instance's runner process "
        "(`airflow worker -- <uuid>`, forked by the pool process that supervises it) is one task, its RSS "
        "(resident, shared pages included) attributed to its task id; the pool processes are reported apart.",
    ]
    section.notes += [
        f"Requests by endpoint {_counts(run.by_endpoint)}; by status {_counts(run.by_status)}.",
        "",
        "Peak RSS per task id (MiB): " + ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in sorted(run.peak_rss.items())),
        "",
        "Where the DagRun's time went:",
        "",
        *run.breakdown(),
        "",
        *run.rate_profile(),
    ]
    section.seconds = time.perf_counter() - t_section
    return section, run


def _add_loop_stalls(section: Section, stats: dict[str, Any]) -> None:
    """The simulator's own event-loop stalls: arrivals it stamped late, together, as a burst."""
    section.add("simulator event-loop stalls ≥ 50 ms", "", [stats.get("loop_stalls", 0)])
    section.add("simulator event loop stalled, in all", "s", [stats.get("loop_stalled_s", 0.0)])
    section.add("simulator stalls in or just before the busiest 1 s", "s", [stats.get("busiest_1s_stalled_s", 0.0)])


# ------------------------------------------------------------------------------------------------
# Target 5: nightly_refresh of the loaded universe
# ------------------------------------------------------------------------------------------------


def unpause_without_scheduled_run(cluster: LocalCluster, dag_id: str, *, timeout: float = 180) -> list[str]:
    """Unpause ``dag_id``, fail the run its timetable creates for the latest real slot, wait it out.

    With ``catchup=False`` the scheduler creates the run of the most recent 18:30 New York at
    once; on the simulator's frozen 2025 clock that run would ask for sessions a year in the
    future and share the budget with the timed run. The scheduler is left on (the listener DAG
    lives on it). Failing the run as soon as it shows up is not enough: one bench saw its tasks
    already fetching (1,628 requests before the timed run started, which then queued behind it).
    So this waits until the scheduler has dealt with the due slot (a new run exists, or the next
    creation lies in the future), fails every run it created since the unpause and then waits
    until none of their task instances is still working. Returns those runs' ids.
    """
    from tickstock_dev.processes import wait_for

    rows = cluster.metadata_query("SELECT coalesce(max(id), 0) FROM dag_run WHERE dag_id = %s", (dag_id,))
    before = int(rows[0][0]) if rows else 0
    cluster.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def new_runs() -> list[str]:
        found = cluster.metadata_query(
            "SELECT run_id FROM dag_run WHERE dag_id = %s AND run_type = 'scheduled' AND id > %s", (dag_id, before)
        )
        return [run_id for (run_id,) in found]

    def due_slot_handled() -> bool:
        if new_runs():
            return True
        found = cluster.metadata_query("SELECT next_dagrun_create_after > now() FROM dag WHERE dag_id = %s", (dag_id,))
        return bool(found and found[0][0])

    wait_for(due_slot_handled, timeout=timeout, what=f"the scheduler to deal with {dag_id}'s due slot")
    stray = new_runs()
    for run_id in stray:
        cluster.api.call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    def stray_tasks_done() -> bool:
        busy = cluster.metadata_query(
            "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
            "AND state IN ('scheduled', 'queued', 'running', 'restarting', 'up_for_retry', 'deferred')",
            (dag_id, stray),
        )
        return not busy or int(busy[0][0]) == 0

    if stray:
        wait_for(stray_tasks_done, timeout=timeout, what=f"the task instances of {dag_id}'s failed run(s) to stop")
    return stray


def run_refresh(
    cluster: LocalCluster,
    sizes: ClusterSizes,
    *,
    loaded: bool,
    log: Callable[[str], None] = print,
) -> Section:
    from tickstock_dev.bench_refresh import expected_bar_requests

    assert cluster.sim is not None
    t_section = time.perf_counter()
    n = sizes.load_symbols
    section = Section("5", f"nightly_refresh of the {n:,}-symbol universe, one new session, at {RATE} req/s")
    setup = "the load of target 1 left in the database"
    if not loaded:
        _fresh(cluster, 0)
        load = run_dag(cluster, "universe_load", universe_conf(sim_symbols(n), job_id=f"bench-refresh-load-{n}"))
        setup = f"a universe_load run here first ({load.run_s:.0f} s DagRun, 0 ms latency, untimed)"
        log(f"  universe_load of {n:,} symbols for the refresh: {load.run_s:.1f} s")
    failed = unpause_without_scheduled_run(cluster, "nightly_refresh")
    try:
        cluster.sim.reset()
        cluster.sim.configure(now=REFRESH_NOW, latency_ms=sizes.latency_ms)
        run = run_dag(cluster, "nightly_refresh", {"as_of": REFRESH_AS_OF, "job_id": f"bench-refresh-{n}"})
    finally:
        cluster.api.call("PATCH", "/api/v2/dags/nightly_refresh", {"is_paused": True})
        cluster.sim.configure(now=SIM_NOW)
    bound = run.served / RATE
    bar_requests = run.by_endpoint.get("aggs", 0) + run.by_endpoint.get("grouped", 0)
    log(f"  DagRun {run.run_s:.1f} s, {run.served:,} requests ({_counts(run.by_endpoint)}), bound {bound:.1f} s")
    section.add("nightly_refresh DagRun", "s", [run.run_s])
    section.add("trigger → final state", "s", [run.wall_s])
    section.add("API requests served (not 429)", "req", [run.served])
    section.add("bar requests (aggs + grouped daily)", "req", [bar_requests])
    section.add("requests ÷ rate (the bound)", "s", [bound])
    section.add("requests answered 429", "req", [run.by_status.get("429", 0)])
    section.add("most requests in any 1 s", "req", [run.stats.get("max_in_any_1s", 0)])
    _add_loop_stalls(section, run.stats)
    ratio = section.add("DagRun ÷ bound", "×", [run.run_s / bound if bound else float("inf")])
    run.add_span_figures(section)
    first, _, _ = run.request_span()
    if first < 0:  # a request the timed run cannot have sent: its figures would be void
        raise RuntimeError(f"the simulator counted requests {-first:.1f} s before the timed nightly_refresh started")
    section.targets.append(
        Target(f"nightly_refresh, {n:,} sym at {RATE}/s: DagRun ÷ (requests ÷ {RATE})", "<= 1.2", ratio,
               ratio.median <= 1.2, 5)
    )  # fmt: skip
    section.method = [
        f"{n:,} symbols loaded 1 year as of {AS_OF} ({setup}); the simulator's clock moves to {REFRESH_NOW} "
        f"(18:30 New York on {REFRESH_AS_OF}) and `nightly_refresh` is triggered with `as_of` {REFRESH_AS_OF} "
        f"and its defaults, {sizes.latency_ms} ms latency, {RATE}/s. The DAG is unpaused only for this run; the "
        "run its timetable creates at once for the latest real 18:30 (catchup off) is marked failed, and its "
        f"tasks stopped, before the timed run starts ({len(failed)} such run(s) this time). "
        "Expected bar requests when nothing else changed: "
        f"{expected_bar_requests(n):,} (3 per symbol + 2 grouped sessions).",
    ]
    section.notes += [
        f"Requests by endpoint {_counts(run.by_endpoint)}; by status {_counts(run.by_status)}.",
        "",
        "Where the DagRun's time went:",
        "",
        *run.breakdown(),
        "",
        *run.rate_profile(),
    ]
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# The cluster every measurement above shares
# ------------------------------------------------------------------------------------------------


def bench_cluster(base: Path, sizes: ClusterSizes, *, log: Callable[[str], None] = print) -> LocalCluster:
    """A LocalCluster in its own state folder, the simulator limited to 100/s with a big enough cache."""
    from tickstock_dev.bench_sim import bench_simulator
    from tickstock_dev.cluster import LocalCluster
    from tickstock_dev.stack import free_port

    cache = max(sizes.load_symbols, sizes.speedup_symbols)
    return LocalCluster(
        base / STATE_DIR_NAME,
        workers=sizes.workers,
        concurrency=sizes.concurrency,
        port=free_port(),
        rate_limit=f"{RATE}/s",
        simulator=lambda: bench_simulator(cache_symbols=cache, now=SIM_NOW, rate_limit=f"{RATE}/s"),
    )


def run_all(
    base: Path,
    sizes: ClusterSizes,
    only: list[str],
    measure: Callable[[str, str, Callable[[], Section]], None],
    *,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Start the cluster, warm the simulator, run the selected measurements; return condition lines."""
    from tickstock_dev.bench_sim import warm

    cluster = bench_cluster(base, sizes, log=log)
    lines: list[str] = []
    t0 = time.perf_counter()
    log(f"starting make cluster ({sizes.workers} workers × {sizes.concurrency}) in its own state folder")
    with cluster:
        started = time.perf_counter() - t0
        assert cluster.sim is not None
        biggest = max(sizes.load_symbols if {"load", "refresh"} & set(only) else 0, sizes.speedup_symbols)
        t1 = time.perf_counter()
        warm(cluster.sim, sim_symbols(biggest))
        warmed = time.perf_counter() - t1
        log(f"  cluster up in {started:.0f} s; simulator warmed for {biggest:,} symbols in {warmed:.0f} s")
        lines.append(conditions(cluster, sizes))
        lines.append(
            f"cluster start {started:.0f} s; simulator cache warmed for {biggest:,} symbol-years in {warmed:.0f} s "
            "(untimed, before any measurement)"
        )
        if "job" in only:
            log(f"4. small job by Redis message, {sizes.job_runs} runs (+{sizes.job_runs_0ms} at 0 ms)")
            measure("4", "Small job by Redis message", lambda: run_job_latency(cluster, sizes, log=log))
        if "speedup" in only:
            log(f"3. {sizes.speedup_symbols} symbols: design document's loader vs universe_load")
            measure("3", "Speed-up", lambda: run_speedup(cluster, sizes, log=log))
        if "dagstest" in only:
            log(f"3b. secondary: {sizes.speedup_symbols} symbols through airflow dags test")
            home = base / "airflow-bench-cluster"
            measure("3b", "dags test row", lambda: run_dags_test_row(cluster, sizes, home, log=log))
        loaded = False
        if "load" in only:
            log(f"1/2/7. {sizes.load_symbols:,} symbols x 1 year at {RATE}/s")

            def big() -> Section:
                nonlocal loaded
                section, _ = run_big_load(cluster, sizes, log=log)
                loaded = True
                return section

            measure("1", "Big load", big)
        if "refresh" in only:
            log(f"5. nightly_refresh of {sizes.load_symbols:,} symbols")
            measure("5", "Nightly refresh on the cluster", lambda: run_refresh(cluster, sizes, loaded=loaded, log=log))
    return lines


def iter_targets(sections: list[Section]) -> Iterator[Target]:
    for section in sections:
        yield from section.targets
