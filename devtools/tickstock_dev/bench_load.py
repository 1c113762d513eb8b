"""Measurements 2-5: whole loads against the simulator, and the simulator's own ceiling.

2. the design document's loader (:mod:`tickstock_dev.bench_baseline`) against ``universe_load``,
   paired run by run, without and with 20 ms of API latency;
3. ``universe_load`` under the API's rate limit: how close total time gets to requests ÷ rate;
4. peak memory of a 5,000-symbol load;
5. the simulator's throughput, next to the request rates the loaders reached, so a reader can
   check the simulator was never what limited 2-3.

All loads are fresh (tables and symbol metadata emptied before each run), one year as of
2025-12-02 on the simulator's fixed clock, all four timeframes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tickstock_dev.bench_airflow import AirflowLoader, LoadRun, load_conf, loaded_bars, reset_load_tables, sim_symbols
from tickstock_dev.bench_report import Figure, Section, Target, fmt, ratios
from tickstock_dev.bench_sim import warm

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from massive_sim.testing import SimHandle

BASELINE_NOW = datetime(2025, 12, 2, 16, 0)  # the design document reads datetime.now(): pinned to the sim's day
GIB = 2**30
DATA_PATH_TASKS = ("fetch_bars", "upsert_bars")


@dataclass
class Observed:
    """Request rates seen by the simulator during a load (for measurement 5's headroom check)."""

    label: str
    requests: int
    seconds: float
    peak_1s: int
    cold: bool = False

    @property
    def mean_rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _sim_counts(sim: SimHandle) -> tuple[int, int, int]:
    """(successful API requests, 429s, max requests in any 1 s window) since the last reset."""
    stats = sim.stats()
    by_status = stats.get("by_status", {})
    return int(by_status.get("200", 0)), int(by_status.get("429", 0)), int(stats.get("max_in_any_1s", 0))


def _fresh(sim: SimHandle, postgres_url: str, redis_client: redis.Redis, **knobs: Any) -> None:
    """Empty tables and job status, reset the simulator's statistics and set its knobs."""
    reset_load_tables(postgres_url)
    redis_client.flushdb()
    sim.reset()
    if knobs:
        sim.configure(**knobs)


def _breakdown(run: LoadRun) -> str:
    """Where a ``dags test`` run's time went: each task id's summed duration, and the rest."""
    parts = sorted(run.task_seconds.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} {v:.1f} s ({run.task_counts.get(k, 0)} TI)" for k, v in parts)
    rest = run.run_s - run.task_total_s
    return f"{text}; between tasks (Airflow's own work) {rest:.1f} s of {run.run_s:.1f} s"


# ------------------------------------------------------------------------------------------------
# 2. End to end against the design document's loader
# ------------------------------------------------------------------------------------------------


def run_end_to_end(
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    *,
    sizes: tuple[int, ...],
    latencies: tuple[int, ...],
    runs_for: Callable[[int], int],
    observed: list[Observed],
    profile: bool = True,
    log: Callable[[str], None] = print,
) -> Section:
    from tickstock_dev.bench_baseline import DesignDocLoader

    t_section = time.perf_counter()
    section = Section("2", "End to end: universe_load vs the design document's loader")
    loader.set_rate_limit("")
    baseline = DesignDocLoader(sim.url, sim.api_key, postgres_url, redis_client, BASELINE_NOW)
    breakdowns: list[str] = []
    profiled: LoadRun | None = None
    for latency in latencies:
        for n in sizes:
            symbols = sim_symbols(n)
            runs = runs_for(n)
            warm(sim, symbols)
            base_s, ul_run, ul_wall, base_req, ul_req, ul_data = [], [], [], [], [], []
            for r in range(runs):
                _fresh(sim, postgres_url, redis_client, latency_ms=str(latency))
                t0 = time.perf_counter()
                result = baseline.handle_csv_universe_load({"job_id": f"bench-baseline-{n}", "symbols": symbols})
                base_s.append(time.perf_counter() - t0)
                if result["symbols_loaded"] != n:
                    raise RuntimeError(f"baseline loaded {result['symbols_loaded']}/{n}: {result['errors'][:3]}")
                ok, _, peak = _sim_counts(sim)
                base_req.append(ok)
                observed.append(Observed(f"baseline {n} sym, {latency} ms", ok, base_s[-1], peak))

                _fresh(sim, postgres_url, redis_client, latency_ms=str(latency))
                want_profile = profile and latency == latencies[0] and n == sizes[0] and r == runs - 1
                run = loader.run(load_conf(symbols, job_id=f"bench-ul-{n}-{latency}-{r}"), profile=want_profile)
                bars = loaded_bars(postgres_url)
                if bars["day"] < n * 250:
                    raise RuntimeError(f"universe_load stored only {bars} for {n} symbols")
                ok, _, peak = _sim_counts(sim)
                ul_req.append(ok)
                ul_run.append(run.run_s)
                ul_wall.append(run.wall_s)
                ul_data.append(sum(run.task_seconds.get(t, 0.0) for t in DATA_PATH_TASKS))
                observed.append(Observed(f"universe_load {n} sym, {latency} ms", ok, run.run_s, peak))
                if want_profile:
                    profiled = run
                log(
                    f"  {n} symbols, {latency} ms, run {r + 1}/{runs}: baseline {base_s[-1]:.1f} s; "
                    f"universe_load run {run.run_s:.1f} s (process {run.wall_s:.1f} s)"
                )
                if r == runs - 1:
                    breakdowns.append(f"- {n} symbols, {latency} ms: {_breakdown(run)}.")
            tag = f"{n} sym, {latency} ms"
            section.add(f"baseline (design doc), {tag}", "s", base_s)
            section.add(f"universe_load DagRun, {tag}", "s", ul_run)
            section.add(f"universe_load process (dags test), {tag}", "s", ul_wall)
            section.add(f"API requests, baseline, {tag}", "req", base_req)
            section.add(f"API requests, universe_load, {tag}", "req", ul_req)
            speedup = section.add(f"speed-up baseline ÷ DagRun, {tag}", "×", ratios(base_s, ul_run))
            section.add(f"speed-up baseline ÷ process, {tag}", "×", ratios(base_s, ul_wall))
            section.add(f"universe_load data path (fetch and upsert TIs), {tag}", "s", ul_data)
            section.add(f"speed-up baseline ÷ data path, {tag}", "×", ratios(base_s, ul_data))
            section.targets.append(Target(f"speed-up, {tag}", ">= 20× faster", speedup, speedup.median >= 20))
    section.method = [
        "Baseline: `tickstock_dev.bench_baseline.DesignDocLoader`, the sketch of sprint-56-historical-data-load.md "
        "as written: per symbol ticker details + `register_symbol`, then hour, day, week, month one after another, "
        "each a bare `requests.get` (new TCP connection) followed by `execute_batch` on a fresh psycopg2 "
        "connection, a Redis job-status write per symbol. In the bench process.",
        "",
        "universe_load: `airflow dags test universe_load -c {...}` in a subprocess (embedded PostgreSQL + Redis, "
        "the simulator as `massive_default`, `massive_rate_limit` empty = no shared budget, default "
        "`batch_size` 50). *DagRun* is the run's `start_date`→`end_date` in the metadata DB: what a run "
        "triggered on an already running scheduler takes. *process* adds the CLI's start-up "
        "(imports, DAG parsing, in-process API server), which a deployed Airflow pays once, not per load.",
        "",
        "Both load the same symbols, 1 year as of 2025-12-02, all four timeframes, into emptied tables; "
        "runs alternate baseline / universe_load so both see the same machine state. The speed-up is "
        "computed per pair. The simulator's latency knob adds the given delay to every API response.",
    ]
    section.notes += ["Where universe_load's time went (last run of each configuration):", "", *breakdowns]
    if profiled and profiled.profile:
        section.profile = profiled.profile.markdown(
            f"`airflow dags test` process, {sizes[0]} symbols, {latencies[0]} ms (last run)"
        )
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# 3. Against the API's rate bound
# ------------------------------------------------------------------------------------------------


def run_rate_bound(
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    *,
    symbols: int,
    runs: int,
    rate: int = 100,
    observed: list[Observed],
    profile: bool = True,
    log: Callable[[str], None] = print,
) -> Section:
    t_section = time.perf_counter()
    section = Section("3", f"Against the API's rate bound ({rate} req/s)")
    loader.set_rate_limit(f"{rate}/s")
    names = sim_symbols(symbols)
    warm(sim, names)
    run_s, wall_s, bound_s, rejected, peaks, fetch_s, fetch_rate = [], [], [], [], [], [], []
    last: LoadRun | None = None
    for r in range(runs):
        _fresh(sim, postgres_url, redis_client, rate_limit=f"{rate}/s")
        run = loader.run(load_conf(names, job_id=f"bench-rate-{symbols}-{r}"), profile=profile and r == runs - 1)
        ok, too_many, peak = _sim_counts(sim)
        bound = ok / rate
        run_s.append(run.run_s)
        wall_s.append(run.wall_s)
        bound_s.append(bound)
        rejected.append(too_many)
        peaks.append(peak)
        fetch_s.append(run.task_seconds.get("fetch_bars", 0.0))
        fetch_rate.append(ok / (fetch_s[-1] + run.task_seconds.get("register_symbols", 0.0) or 1.0))
        observed.append(Observed(f"universe_load {symbols} sym, {rate}/s", ok, run.run_s, peak))
        last = run
        log(
            f"  run {r + 1}/{runs}: {ok} requests ({too_many} answered 429), bound {bound:.1f} s, "
            f"DagRun {run.run_s:.1f} s, process {run.wall_s:.1f} s"
        )
    loader.set_rate_limit("")
    section.add("API requests ÷ rate (the bound)", "s", bound_s)
    section.add("universe_load DagRun", "s", run_s)
    section.add("universe_load process (dags test)", "s", wall_s)
    section.add("fetch_bars TIs, summed", "s", fetch_s)
    section.add("request rate inside fetch_bars + register_symbols", "req/s", fetch_rate)
    section.add("requests answered 429 by the simulator", "req", rejected)
    section.add("most requests the simulator saw in any 1 s", "req", peaks)
    ratio = section.add("DagRun ÷ bound", "×", ratios(run_s, bound_s))
    section.add("process ÷ bound", "×", ratios(wall_s, bound_s))
    section.targets.append(
        Target(f"{symbols} symbols at {rate} req/s", "<= 1.25 × the bound", ratio, ratio.median <= 1.25)
    )
    section.method = [
        f"Simulator limited to {rate} req/s (excess answered 429), Variable `massive_rate_limit` = `{rate}/s` "
        f"(the loader's Redis-shared budget), {symbols:,} symbols × 1 year, all four timeframes, fresh tables. "
        "The bound is the successful API requests the simulator counted ÷ the rate: no loader can finish "
        "sooner. Same `dags test` mode and clocks as measurement 2.",
    ]
    if last is not None:
        section.notes.append(f"Where the last run's time went: {_breakdown(last)}.")
        if last.profile:
            section.profile = last.profile.markdown(f"`airflow dags test` process, {symbols} symbols at {rate}/s")
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# 4. Memory
# ------------------------------------------------------------------------------------------------


def run_memory(
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    *,
    symbols: int,
    runs: int,
    observed: list[Observed],
    batch_size: int = 500,
    log: Callable[[str], None] = print,
) -> Section:
    t_section = time.perf_counter()
    section = Section("4", f"Memory: peak RSS in a {symbols:,}-symbol load")
    loader.set_rate_limit("")
    names = sim_symbols(symbols)
    peak_proc, peak_tree, run_s, longest = [], [], [], []
    last: LoadRun | None = None
    for r in range(runs):
        _fresh(sim, postgres_url, redis_client)
        run = loader.run(load_conf(names, job_id=f"bench-mem-{symbols}-{r}", batch_size=batch_size))
        ok, _, peak = _sim_counts(sim)
        observed.append(Observed(f"universe_load {symbols} sym (cold series)", ok, run.run_s, peak, cold=True))
        peak_proc.append(run.peak_rss_process / 2**20)
        peak_tree.append(run.peak_rss_tree / 2**20)
        run_s.append(run.run_s)
        longest.append(max(run.task_peak.values(), default=0.0))
        last = run
        log(
            f"  run {r + 1}/{runs}: peak RSS {run.peak_rss_process / 2**20:,.0f} MiB "
            f"(tree {run.peak_rss_tree / 2**20:,.0f} MiB), DagRun {run.run_s:.1f} s, {ok} requests"
        )
    mib = section.add("peak RSS of the dags test process (all tasks)", "MiB", peak_proc)
    section.add("peak RSS of its process tree", "MiB", peak_tree)
    section.add("universe_load DagRun", "s", run_s)
    section.add("longest single task instance", "s", longest)
    gib = Figure("peak RSS", "GiB", tuple(v / 1024 for v in mib.samples))
    section.targets.append(Target("peak RSS, biggest task", "< 1 GiB", gib, gib.median < 1.0))
    section.method = [
        f"{symbols:,} symbols × 1 year, all four timeframes, no rate limit, `batch_size` {batch_size} (the largest "
        "the DAG accepts, so each fetch task holds the most bars a task can: the worst case for one task; the "
        "default 50 gives 10× smaller fetch tasks and 10× more of them), `airflow dags test`. Under `dags test` "
        "every task instance runs inside that one process, one after another, so the process's peak RSS "
        "(polled with psutil every 50 ms, whole process tree too) is an upper bound for the biggest single "
        "task, Airflow's own in-process API server and DAG included. On a worker each task runs in its own "
        "smaller process.",
    ]
    if last is not None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(last.task_counts.items()))
        section.notes.append(f"Task instances of the last run: {counts}. {_breakdown(last)}.")
    section.seconds = time.perf_counter() - t_section
    return section


# ------------------------------------------------------------------------------------------------
# 5. The simulator's ceiling
# ------------------------------------------------------------------------------------------------


def _sim_bench_rates(sim: SimHandle, *, runs: int, seconds: float, cold: bool) -> list[float]:
    """Run ``massive_sim.bench`` against ``sim``; return its per-run rates (parsed from its output)."""
    import argparse
    import contextlib
    import io
    import re

    from massive_sim import bench as sim_bench

    args = argparse.Namespace(processes=2, threads=2, seconds=seconds, runs=runs, tickers=50, cold=cold)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        sim_bench.bench(sim.url, sim.api_key, args)
    return [float(m) for m in re.findall(r"^run \d+: (\d+(?:\.\d+)?) req/s", out.getvalue(), re.MULTILINE)]


def run_sim_throughput(
    sim: SimHandle, *, runs: int, seconds: float, observed: list[Observed], log: Callable[[str], None] = print
) -> Section:
    t_section = time.perf_counter()
    section = Section("5", "Simulator throughput (is it ever the bottleneck?)")
    sim.reset()
    cached = _sim_bench_rates(sim, runs=runs, seconds=seconds, cold=False)
    log(f"  cached series: {', '.join(f'{r:,.0f}' for r in cached)} req/s")
    cold = _sim_bench_rates(sim, runs=runs, seconds=seconds, cold=True)
    log(f"  cold series:   {', '.join(f'{r:,.0f}' for r in cold)} req/s")
    sim.reset()
    warm_cap = section.add("simulator, cached one-year daily series", "req/s", cached)
    cold_cap = section.add("simulator, cold one-year daily series (first request per symbol)", "req/s", cold)
    rows = [
        "| load | series | requests | mean req/s | most in any 1 s | simulator capacity ÷ that peak |",
        "|---|---|---|---|---|---|",
    ]
    worst = float("inf")
    for o in observed:
        capacity = cold_cap if o.cold else warm_cap
        head = capacity.median / max(o.peak_1s, 1)
        if not o.cold:  # the timed comparisons (2, 3) run on warmed series
            worst = min(worst, head)
        rows.append(
            f"| {o.label} | {'cold' if o.cold else 'cached'} | {o.requests:,} | {fmt(o.mean_rate)} | "
            f"{o.peak_1s} | {fmt(head)}× |"
        )
    section.method = [
        f"`massive_sim.bench` (the simulator's own script: 2 client processes × 2 keep-alive `http.client` "
        f"connections, {runs} runs of {seconds:g} s) against the same simulator process the loads used, without "
        "latency or rate limit. *Cached*: 50 tickers whose series are already generated; *cold*: every request a "
        "series never generated before (a new data version per run), which is what a loader's first pass over "
        "a universe looks like. The loads' rates below are what the simulator itself counted.",
    ]
    if observed:
        section.notes += ["Request rates the loads of this run reached:", "", *rows]
        headroom = Figure("cached capacity ÷ highest 1-s peak of the timed loads", "×", (worst,))
        section.targets.append(
            Target("simulator is not the bottleneck", "capacity > the loads' peak", headroom, worst > 1.0)
        )
    section.seconds = time.perf_counter() - t_section
    return section


__all__ = [
    "GIB",
    "Observed",
    "run_end_to_end",
    "run_memory",
    "run_rate_bound",
    "run_sim_throughput",
]
