"""Measurement 6: ``nightly_refresh`` of a 5,000-symbol universe for one new session.

What a nightly refresh costs once the whole universe is loaded: requests per endpoint and
timeframe, wall time, and the rows it writes. It starts from a ``universe_load`` of the same
symbols (1 year as of 2025-12-02, the simulator's day); measurement 4 leaves exactly that load in
the bench database, so it is reused when present and loaded here otherwise. Then the
simulator's clock moves to the evening of the next session (Wednesday 2025-12-03, 18:30 New
York) and ``nightly_refresh`` runs for it twice:

- **next session**: what every trading evening costs: the new session, the revision window, the
  open week and month, and the hourly window;
- **rerun, same session**: the same refresh again (a retried or duplicate run): the same
  requests, and no row may change.

Both go through ``airflow dags test`` like the other loads, so Airflow's own per-task work is in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tickstock_dev.bench_airflow import AS_OF, AirflowLoader, LoadRun, load_conf, loaded_bars, sim_symbols
from tickstock_dev.bench_load import Observed, _breakdown, _fresh
from tickstock_dev.bench_report import Figure, Section, Target

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from massive_sim.testing import SimHandle

REFRESH_AS_OF = "2025-12-03"
REFRESH_NOW = "2025-12-03T23:30:00Z"  # 18:30 New York, when the schedule fires
TABLES = {"hour": "ohlcv_hourly", "day": "ohlcv_daily", "week": "ohlcv_weekly", "month": "ohlcv_monthly"}
SCENARIOS = ("next session", "rerun, same session")


@dataclass
class RefreshRun:
    """What one ``nightly_refresh`` run cost and did."""

    scenario: str
    run: LoadRun
    by_endpoint: dict[str, int]
    by_status: dict[str, int]
    peak_1s: int
    requests_by_timeframe: dict[str, int]
    rows_added: dict[str, int]
    rows_written: dict[str, int]

    @property
    def bar_requests(self) -> int:
        return self.by_endpoint.get("aggs", 0) + self.by_endpoint.get("grouped", 0)


def expected_bar_requests(symbols: int) -> int:
    """Requests the refresh should make when every symbol is loaded up to the session before.

    Per symbol one request each for the open week, the open month and the hourly window; daily
    bars for the revision window (the previous and the new session) come from grouped daily,
    one request per session for all symbols.
    """
    return 3 * symbols + 2


def _holds_load(postgres_url: str, names: list[str]) -> bool:
    """Whether the bench database holds exactly a completed load of ``names`` as of ``AS_OF``."""
    import psycopg

    from tickstock.schema import upgrade

    upgrade(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        stored = {row[0] for row in conn.execute("SELECT symbol FROM symbols WHERE active")}
        if stored != set(names):
            return False
        last = conn.execute("SELECT max(date), count(DISTINCT symbol) FROM ohlcv_daily").fetchone()
    return last is not None and str(last[0]) == AS_OF and last[1] == len(names)


def _rows_written_since(postgres_url: str, since: Any) -> dict[str, int]:
    """Rows per table whose ``updated_at`` is at or after ``since`` (inserted or changed)."""
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        return {
            tf: conn.execute(f"SELECT count(*) FROM {table} WHERE updated_at >= %s", (since,)).fetchone()[0]  # type: ignore[index]
            for tf, table in TABLES.items()
        }


def _db_now(postgres_url: str) -> Any:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]


def _job_requests(redis_client: redis.Redis, job_id: str) -> dict[str, int]:
    raw = redis_client.hget(f"tickstock.jobs.status:{job_id}", "requests")
    return json.loads(raw) if raw else {}


def _refresh_once(
    scenario: str,
    index: int,
    *,
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    profile: bool,
) -> RefreshRun:
    sim.reset()
    sim.configure(now=REFRESH_NOW)
    before = loaded_bars(postgres_url)
    since = _db_now(postgres_url)
    job_id = f"bench-refresh-{index}"
    run = loader.run({"as_of": REFRESH_AS_OF, "job_id": job_id}, dag_id="nightly_refresh", profile=profile)
    after = loaded_bars(postgres_url)
    stats = sim.stats()
    return RefreshRun(
        scenario=scenario,
        run=run,
        by_endpoint={k: int(v) for k, v in stats.get("by_endpoint", {}).items()},
        by_status={k: int(v) for k, v in stats.get("by_status", {}).items()},
        peak_1s=int(stats.get("max_in_any_1s", 0)),
        requests_by_timeframe=_job_requests(redis_client, job_id),
        rows_added={tf: after[tf] - before[tf] for tf in TABLES},
        rows_written=_rows_written_since(postgres_url, since),
    )


def run_refresh(
    sim: SimHandle,
    loader: AirflowLoader,
    postgres_url: str,
    redis_client: redis.Redis,
    *,
    symbols: int,
    observed: list[Observed],
    profile: bool = False,
    log: Callable[[str], None] = print,
) -> Section:
    from tickstock_airflow.refresh_tasks import DEFAULT_REFRESH_BATCH_SIZE

    t_section = time.perf_counter()
    section = Section("6", f"Nightly refresh of a {symbols:,}-symbol universe, one new session")
    loader.set_rate_limit("")
    names = sim_symbols(symbols)
    setup = "reused the load measurement 4 left in the database"
    if not _holds_load(postgres_url, names):
        _fresh(sim, postgres_url, redis_client)
        load = loader.run(load_conf(names, job_id=f"bench-refresh-load-{symbols}", batch_size=500))
        setup = f"loaded here first ({load.run_s:.0f} s DagRun)"
        log(f"  universe_load of {symbols:,} symbols for the refresh: {load.run_s:.1f} s")
    runs = []
    for index, scenario in enumerate(SCENARIOS):
        refresh = _refresh_once(
            scenario,
            index,
            sim=sim,
            loader=loader,
            postgres_url=postgres_url,
            redis_client=redis_client,
            profile=profile and index == 0,
        )
        runs.append(refresh)
        ok = refresh.by_status.get("200", 0)
        observed.append(Observed(f"nightly_refresh {symbols} sym, {scenario}", ok, refresh.run.run_s, refresh.peak_1s))
        log(
            f"  {scenario}: DagRun {refresh.run.run_s:.1f} s (process {refresh.run.wall_s:.1f} s), "
            f"{refresh.bar_requests:,} bar requests {refresh.by_endpoint}, rows added {refresh.rows_added}, "
            f"rows written {refresh.rows_written}"
        )

    expected = expected_bar_requests(symbols)
    for refresh in runs:
        label = refresh.scenario
        section.add(f"{label}: DagRun (scheduler's view)", "s", [refresh.run.run_s])
        section.add(f"{label}: process wall time (dags test)", "s", [refresh.run.wall_s])
        section.add(f"{label}: bar requests (aggs + grouped daily)", "requests", [refresh.bar_requests])
        section.add(f"{label}: rows inserted or changed", "rows", [sum(refresh.rows_written.values())])
        requests = Figure(f"bar requests, {label}", "requests", (float(refresh.bar_requests),))
        section.targets.append(
            Target(f"refresh requests, {label}", f"= {expected:,} (3 per symbol + 2 grouped)", requests,
                   refresh.bar_requests == expected and not _errors(refresh))
        )  # fmt: skip
    rerun = runs[-1]
    written = Figure("rows changed by the rerun", "rows", (float(sum(rerun.rows_written.values())),))
    section.targets.append(Target("rerun changes no row", "= 0 rows", written, written.median == 0))

    section.method = [
        f"{symbols:,} synthetic symbols, loaded by `universe_load` (1 year as of {AS_OF}, all four timeframes, "
        f"batch 500; {setup}). The simulator's clock then moves to {REFRESH_NOW} (18:30 New York on "
        f"{REFRESH_AS_OF}, a Wednesday, when the schedule fires) and `nightly_refresh` runs through "
        "`airflow dags test` with `as_of` that day and its defaults (2 revision sessions, 2 hourly sessions, "
        f"batch {DEFAULT_REFRESH_BATCH_SIZE}, no rate limit), twice: the next session, then the same refresh again. "
        "Requests are the "
        "simulator's own counts; rows are counted with `updated_at` (set only when a row is inserted or a "
        "value changes).",
    ]
    for refresh in runs:
        lines = [
            f"**{refresh.scenario}**: requests by endpoint {_fmt_counts(refresh.by_endpoint)}; by HTTP status "
            f"{_fmt_counts(refresh.by_status)}; by timeframe (the job status) "
            f"{_fmt_counts(refresh.requests_by_timeframe)}; busiest second {refresh.peak_1s} requests.",
            f"Rows added {_fmt_counts(refresh.rows_added)}; rows inserted or changed "
            f"{_fmt_counts(refresh.rows_written)}.",
            f"Task instances: {_fmt_counts(refresh.run.task_counts)}. {_breakdown(refresh.run)}.",
        ]
        section.notes.append(" ".join(lines))
        if refresh.run.profile is not None:
            section.profile = refresh.run.profile.markdown(f"Profile of the {refresh.scenario} run (py-spy)")
    section.seconds = time.perf_counter() - t_section
    return section


def _errors(refresh: RefreshRun) -> int:
    return sum(v for k, v in refresh.by_status.items() if k != "200")


def _fmt_counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"
