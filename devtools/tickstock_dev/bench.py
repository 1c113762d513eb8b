"""``make bench``: issue 15's targets measured on ``make cluster``, next to the design document's loader.

    python -m tickstock_dev.bench [--quick] [--only upsert,job,speedup,dagstest,load,refresh]
                                  [--runs N] [--output docs/benchmarks.md] [--no-profile]

The default measurements (docs/benchmarks.md says what each does and why):

- ``upsert`` (target 6): the bulk-upsert path vs a raw COPY (>= 1M rows), on the embedded services;
- on one :class:`~tickstock_dev.cluster.LocalCluster` (2 Celery workers, PostgreSQL metadata,
  the simulator limited to 100 req/s and answering after 100 ms), see :mod:`tickstock_dev.bench_cluster`:

  - ``job`` (target 4): SCHG + VUG for 2 days by Redis message, PUBLISH → ``completed``, 10 runs;
  - ``speedup`` (target 3): 100 symbols, the design document's loader vs a universe_load DagRun;
  - ``dagstest``: the same 100 symbols through ``airflow dags test`` (a secondary row);
  - ``load`` (targets 1, 2, 7): 5,000 symbols x 1 year: DagRun ÷ (requests ÷ 100), requests per
    symbol, peak RSS of every task process;
  - ``refresh`` (target 5): ``nightly_refresh`` of those 5,000 symbols for one new session.

The measurements of the ``airflow dags test`` era stay available with ``--only``:
``dagstest-e2e`` (100/500 symbols, 0/20 ms), ``dagstest-rate`` (1,000 symbols at 100 req/s),
``dagstest-memory``, ``sim`` (the simulator's throughput), ``dagstest-refresh`` and ``mode``.

The upsert and the ``dags test`` measurements use the embedded PostgreSQL/Redis (a dedicated
database ``tickstock_bench``, recreated, and Redis database 3); the cluster has its own servers
in its own state folder (``<state>/cluster-bench``) and free ports, so a run touches neither
development data nor another cluster. ``--quick`` shrinks every size so the harness runs in a
few minutes (the smoke tests use it with ``--only``); its numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tickstock_dev import services
from tickstock_dev.bench_report import Section, dump_results, load_results, section_order

if TYPE_CHECKING:
    from collections.abc import Callable

MEASUREMENTS = ("upsert", "job", "speedup", "dagstest", "load", "refresh")
CLUSTER_MEASUREMENTS = ("job", "speedup", "dagstest", "load", "refresh")
# The airflow-dags-test era's measurements (and dags test vs LocalExecutor): run with --only.
OPTIONAL = ("dagstest-e2e", "dagstest-rate", "dagstest-memory", "sim", "dagstest-refresh", "mode")
# Their sections keep their old numbers behind an "A" so they never mix with issue 15's targets.
SECONDARY_PREFIX = "A"
BENCH_DATABASE = "tickstock_bench"
BENCH_REDIS_DB = 3
DEFAULT_OUTPUT = services.REPO_ROOT / "docs" / "benchmarks.md"
SIM_NOW = "2025-12-02T21:00:00Z"


@dataclass(frozen=True)
class Sizes:
    """How big and how often: the full issue sizes, or tiny ones for the smoke test."""

    upsert_rows: int
    upsert_runs: int
    e2e_sizes: tuple[int, ...]
    e2e_latencies: tuple[int, ...]
    e2e_runs_small: int
    e2e_runs_large: int
    rate_symbols: int
    rate_runs: int
    memory_symbols: int
    memory_runs: int
    sim_runs: int
    sim_seconds: float
    refresh_symbols: int

    def e2e_runs(self, n: int) -> int:
        """Fewer runs of the biggest end-to-end size: the baseline alone needs minutes per run."""
        return self.e2e_runs_large if n == max(self.e2e_sizes) and len(self.e2e_sizes) > 1 else self.e2e_runs_small


FULL = Sizes(
    upsert_rows=1_000_000,
    upsert_runs=2,
    e2e_sizes=(100, 500),
    e2e_latencies=(0, 20),
    e2e_runs_small=2,
    e2e_runs_large=1,
    rate_symbols=1000,
    rate_runs=2,
    memory_symbols=5000,
    memory_runs=1,
    sim_runs=3,
    sim_seconds=3.0,
    refresh_symbols=5000,
)
QUICK = Sizes(
    upsert_rows=2_520,
    upsert_runs=2,
    e2e_sizes=(3,),
    e2e_latencies=(0,),
    e2e_runs_small=1,
    e2e_runs_large=1,
    rate_symbols=3,
    rate_runs=1,
    memory_symbols=5,
    memory_runs=1,
    sim_runs=2,
    sim_seconds=0.5,
    refresh_symbols=5,
)


def _bench_urls(urls: services.ServiceUrls) -> services.ServiceUrls:
    """Recreate the bench database; point Redis at the bench's own database index."""
    import psycopg

    admin = services.with_database(urls.postgres_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    redis_url = urlsplit(urls.redis_url)._replace(path=f"/{BENCH_REDIS_DB}").geturl()
    return services.ServiceUrls(services.with_database(urls.postgres_url, BENCH_DATABASE), redis_url)


def _postgres_version(postgres_url: str) -> str:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return f"{version} (embedded, {'TimescaleDB ' + ts[0] if ts else 'plain tables, no TimescaleDB'})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tickstock_dev.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    p.add_argument("--only", default=",".join(MEASUREMENTS), help=f"comma list of {', '.join(MEASUREMENTS)}")
    p.add_argument("--runs", type=int, help="override the number of runs of every measurement")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown note (default docs/benchmarks.md)")
    p.add_argument("--no-profile", action="store_true", help="skip py-spy profiles")
    p.add_argument("--note", action="append", default=[], help="a line for the note's conditions list")
    p.add_argument(
        "--render-from",
        type=Path,
        action="append",
        help="re-render the note from results JSON file(s), sections concatenated; measure nothing",
    )
    p.add_argument(
        "--dags-folder", type=Path, help="run universe_load from this folder instead of dags/ (e.g. a candidate fix)"
    )
    p.add_argument(
        "--cluster-symbols", type=int, help="symbols of the cluster's big load and refresh (default 5,000; to try)"
    )
    args = p.parse_args(argv)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(args.only) - set(MEASUREMENTS) - set(OPTIONAL))
    if unknown:
        p.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS + OPTIONAL)}")
    return args


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    import redis

    from tickstock_dev import bench_load, bench_refresh, bench_upsert
    from tickstock_dev.bench_airflow import AirflowLoader
    from tickstock_dev.bench_cluster import CLUSTER_FULL, CLUSTER_QUICK
    from tickstock_dev.bench_report import (
        CPU_PROBE_BEST_S,
        CPU_PROBE_ITERATIONS,
        cpu_probe,
        machine_description,
        render_console,
    )
    from tickstock_dev.bench_sim import bench_simulator

    args = parse_args(argv)
    if args.render_from:
        payload, sections = load_results(args.render_from[0])
        for extra in args.render_from[1:]:
            more_payload, more = load_results(extra)
            sections += more
            payload["conditions"] = [*payload["conditions"], *more_payload["conditions"]]  # type: ignore[list-item]
            payload["total_seconds"] = float(payload["total_seconds"]) + float(more_payload["total_seconds"])  # type: ignore[arg-type]
        sections.sort(key=section_order)
        _write(args.output, payload, sections)
        return 0
    sizes = QUICK if args.quick else FULL
    if args.runs:
        n = args.runs
        sizes = dataclasses.replace(
            sizes, upsert_runs=n, e2e_runs_small=n, e2e_runs_large=n, rate_runs=n, memory_runs=n, sim_runs=n
        )
    cluster_sizes = CLUSTER_QUICK if args.quick else CLUSTER_FULL
    if args.runs:
        cluster_sizes = dataclasses.replace(cluster_sizes, speedup_runs=args.runs, job_runs=args.runs)
    if args.cluster_symbols:
        cluster_sizes = dataclasses.replace(cluster_sizes, load_symbols=args.cluster_symbols)
    profile = not args.no_profile

    def log(text: str) -> None:
        print(text, flush=True)

    def measure(key: str, title: str, work: Callable[[], Section], *, rekey: str | None = None) -> None:
        """Run one measurement; a failure is reported in the note instead of losing the others.

        :param rekey: the key the section gets in this note (the older modules number their own)
        """
        t_start = time.perf_counter()
        try:
            section = work()
            if rekey is not None:
                section.key = rekey
            sections.append(section)
        except Exception as exc:
            import traceback

            log(f"  {key}. FAILED: {exc!r}")
            failed = Section(rekey or key, f"{title} (FAILED)")
            failed.notes = ["The measurement failed; the others ran. Last lines:", "", "```"]
            failed.notes += [*traceback.format_exc().splitlines()[-12:], "```"]
            failed.seconds = time.perf_counter() - t_start
            sections.append(failed)

    # The baseline logs every request at INFO as the design document does (its f-strings are still
    # built, so their cost stays in); Airflow's imports turn INFO on, which would flood the console.
    logging.getLogger("tickstock_dev.bench_baseline").setLevel(logging.WARNING)
    logging.getLogger("tickstock").setLevel(logging.WARNING)

    probe_repeats = 1 if args.quick else 3
    probe_start = cpu_probe(repeats=probe_repeats)
    log(f"CPU probe: {probe_start:.2f} s")
    started, t0 = datetime.now(UTC), time.perf_counter()
    base = services.state_dir()
    urls = services.ensure_services(base)
    bench = _bench_urls(urls)
    redis_client = redis.Redis.from_url(bench.redis_url)
    sections = []
    conditions_cluster: list[str] = []
    machine = machine_description(_postgres_version(bench.postgres_url))
    try:
        if "upsert" in args.only:

            def upsert() -> Section:
                section = bench_upsert.run(
                    bench.postgres_url, rows=sizes.upsert_rows, runs=sizes.upsert_runs, profile=profile, log=log
                )
                section.targets = [dataclasses.replace(t, number=6) for t in section.targets]
                return section

            log(f"6. upsert vs raw COPY, {sizes.upsert_rows:,} rows x {sizes.upsert_runs} runs")
            measure("6", "Bulk upsert vs raw COPY", upsert, rekey="6")
        if any(m in args.only for m in CLUSTER_MEASUREMENTS):
            from tickstock_dev import bench_cluster

            conditions_cluster = bench_cluster.run_all(base, cluster_sizes, args.only, measure, log=log)
        needs_sim = [m for m in args.only if m in OPTIONAL]
        if needs_sim:
            observed: list[bench_load.Observed] = []
            biggest = max(
                [
                    sizes.memory_symbols if "dagstest-memory" in args.only else 0,
                    sizes.refresh_symbols if "dagstest-refresh" in args.only else 0,
                    sizes.rate_symbols,
                    *sizes.e2e_sizes,
                ]
            )
            with bench_simulator(cache_symbols=biggest, now=SIM_NOW) as sim:
                loader = AirflowLoader(base / "airflow-bench", bench, sim, dags_folder=args.dags_folder)
                if any(m in args.only for m in OPTIONAL if m != "sim"):
                    log("preparing Airflow (metadata DB, pool massive_api)")
                    loader.prepare()
                if "dagstest-e2e" in args.only:
                    log(f"A2. dags test end to end, sizes {sizes.e2e_sizes}, latencies {sizes.e2e_latencies} ms")
                    measure("2", "End to end", lambda: (
                        bench_load.run_end_to_end(
                            sim, loader, bench.postgres_url, redis_client,
                            sizes=sizes.e2e_sizes, latencies=sizes.e2e_latencies, runs_for=sizes.e2e_runs,
                            observed=observed, profile=profile, log=log,
                        )
                    ), rekey="A2")  # fmt: skip
                if "mode" in args.only:
                    from tickstock_dev.bench_executor import run_mode_comparison

                    n = sizes.e2e_sizes[0]
                    log(f"A2b. Airflow mode: dags test vs scheduler + LocalExecutor, {n} symbols")
                    measure("2b", "Airflow mode", lambda: (
                        run_mode_comparison(
                            sim, loader, bench.postgres_url, redis_client,
                            symbols=n, runs=sizes.e2e_runs_large, log=log,
                        )
                    ), rekey="A2b")  # fmt: skip
                if "dagstest-rate" in args.only:
                    log(f"A3. dags test rate bound, {sizes.rate_symbols} symbols at 100 req/s x {sizes.rate_runs} runs")
                    measure("3", "Rate bound", lambda: (
                        bench_load.run_rate_bound(
                            sim, loader, bench.postgres_url, redis_client,
                            symbols=sizes.rate_symbols, runs=sizes.rate_runs, observed=observed,
                            profile=profile, log=log,
                        )
                    ), rekey="A3")  # fmt: skip
                if "dagstest-memory" in args.only:
                    log(f"A4. dags test memory, {sizes.memory_symbols} symbols x {sizes.memory_runs} runs")
                    measure("4", "Memory", lambda: (
                        bench_load.run_memory(
                            sim, loader, bench.postgres_url, redis_client,
                            symbols=sizes.memory_symbols, runs=sizes.memory_runs, observed=observed, log=log,
                        )
                    ), rekey="A4")  # fmt: skip
                if "sim" in args.only:
                    log(f"A5. simulator throughput, {sizes.sim_runs} runs x {sizes.sim_seconds:g} s")
                    measure(
                        "5",
                        "Simulator throughput",
                        lambda: bench_load.run_sim_throughput(
                            sim, runs=sizes.sim_runs, seconds=sizes.sim_seconds, observed=observed, log=log
                        ),
                        rekey="A5",
                    )
                if "dagstest-refresh" in args.only:
                    log(f"A6. dags test nightly refresh, {sizes.refresh_symbols} symbols, one new session and a rerun")
                    measure("6", "Nightly refresh", lambda: (
                        bench_refresh.run_refresh(
                            sim, loader, bench.postgres_url, redis_client,
                            symbols=sizes.refresh_symbols, observed=observed, profile=profile, log=log,
                        )
                    ), rekey="A6")  # fmt: skip
    finally:
        redis_client.flushdb()
        redis_client.close()
        if urls.started_postgres or urls.started_redis:
            services.stop_services(base)
    total = time.perf_counter() - t0
    load1, load5, load15 = os.getloadavg()
    probe_end = cpu_probe(repeats=probe_repeats)
    conditions = [
        f"sizes: {'--quick (harness check only, not a measurement)' if args.quick else 'full (the issue sizes)'}; "
        f"measurements: {', '.join(args.only)}",
        *conditions_cluster,
        f"load average at the end (1/5/15 min): {load1:.2f} / {load5:.2f} / {load15:.2f} on {os.cpu_count()} cores",
        f"CPU probe ({CPU_PROBE_ITERATIONS:,} iterations of a pure-Python loop on one core, best of {probe_repeats}; "
        f"{CPU_PROBE_BEST_S} s at best here, 1.9-2.9 s on busy hours; blind to I/O and memory contention): "
        f"{probe_start:.2f} s at the start, {probe_end:.2f} s at the end",
        *args.note,
    ]
    if args.dags_folder:
        conditions.append(f"universe_load ran from a DAG folder given with --dags-folder ({args.dags_folder.name}/)")
    payload = {
        "started": started.isoformat(),
        "total_seconds": total,
        "machine": machine,
        "conditions": conditions,
        "command": "make bench" + (" (--quick)" if args.quick else ""),
    }
    name = "results" if args.only == list(MEASUREMENTS) else "results-" + "-".join(args.only)
    results = args.output.with_suffix(".json") if args.quick else base / "bench" / f"{name}.json"
    dump_results(results, payload, sections)
    print(render_console(sections))
    _write(args.output, payload, sections)
    print(f"\nwrote {args.output.name} in {total / 60:.1f} min (raw results: {results.name})")
    return 0


def _write(output: Path, payload: dict, sections: list) -> None:
    """Render the note (with the analysis of missed targets) from measured sections."""
    from tickstock_dev.bench_analysis import analyse
    from tickstock_dev.bench_report import render_markdown

    text = render_markdown(
        sections,
        payload["machine"],
        started=datetime.fromisoformat(payload["started"]),
        total_seconds=payload["total_seconds"],
        command=payload["command"],
        conditions=payload["conditions"],
        analysis=analyse(sections),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
