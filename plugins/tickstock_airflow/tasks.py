"""TaskFlow tasks shared by ``universe_load`` and ``nightly_refresh``.

Each task is a thin adapter: it builds hooks from connection ids, calls the Airflow-free domain
code in ``include/tickstock`` and returns a small JSON result. Heavy data never crosses XCom:
bars travel through staged batches in TickStock's database, XComs carry keys and counters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import Asset, XComArg, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tickstock.load_request import InvalidRequest, parse_load_request
from tickstock.timeframes import OHLCV_TABLES, Timeframe
from tickstock_airflow.hooks import MASSIVE_CONN_ID, MASSIVE_POOL

if TYPE_CHECKING:
    from tickstock.results import LoadSummary
    from tickstock.windows import LoadWindow

log = logging.getLogger(__name__)

DB_CONN_ID = "tickstock_db"
REDIS_CONN_ID = "tickstock_redis"
# Ticker-details threads. The shared rate budget serves waiting threads in turn, so a task's share
# of it follows its thread count: with 8, the details of a 5,000-symbol load (a quarter of its
# requests) got an eighth of the budget beside seven 8-thread fetches and finished last (250 s,
# the fetches 237 s); 24 gives them about the share of their requests.
METADATA_WORKERS = 24
DEFAULT_RATE_LIMIT = "100/s"  # Massive's advice for paid plans; "5/min" on the free tier

# Readable labels for mapped fetches in the grid: "day · AAPL…MSFT (50)".
FETCH_MAP_INDEX_TEMPLATE = (
    "{{ task.timeframe }} · {{ task.symbols[0] }}…{{ task.symbols[-1] }} ({{ task.symbols | length }})"
)

# The scheduler hands free slots to the highest priority first. The ticker-details task shares
# the request budget with the batches and runs all along, so it goes first; then a finished
# batch's upsert, then the next fetch: with fetches first, every upsert of a 5,000-symbol load
# waited until the last fetch had started (34 upserts, 46 s after the last request), while the
# other running fetches keep the budget full whenever one slot merges. "absolute": Airflow's
# default rule adds the weights of everything downstream, which ranks every fetch above every
# single task.
FIRST_PRIORITY = 100
UPSERT_PRIORITY = 20
FETCH_PRIORITY = 10

RATE_LIMIT_VARIABLE = "massive_rate_limit"
RATE_LIMIT_TEMPLATE = f"{{{{ var.value.get('{RATE_LIMIT_VARIABLE}', '{DEFAULT_RATE_LIMIT}') }}}}"

# One Asset per table, so other DAGs can be scheduled on fresh bars.
OHLCV_ASSETS: dict[Timeframe, Asset] = {
    tf: Asset(name=f"tickstock.{t.table}", uri=f"tickstock://tickstock_db/{t.table}") for tf, t in OHLCV_TABLES.items()
}


def load_batches(batches: XComArg) -> XComArg:
    """Map one ``load_batch`` task group per planned batch: ``fetch_bars`` → ``upsert_bars``.

    A mapped task group rather than a map of upserts over the map of fetches: a mapped task
    whose input is another mapped task's output waits for that *whole* map, so no batch was
    merged before the last fetch ended (283 s of upserts after the last API request of a
    5,000-symbol load on ``make cluster``). Inside the group, batch n's upsert starts as soon as
    batch n's fetch ends, beside the other fetches, and the tail after the last request is one
    upsert. Task ids carry no group prefix: ``fetch_bars`` and ``upsert_bars`` are the names the
    grid, the logs and the tools use. Every DAG that fetches bars wires them here (the
    ``massive_api`` pool, the shared rate budget, readable grid labels), so they cannot drift.

    Grouped-daily fetches (a batch with ``sessions``: the day bars of a large universe, one
    request per session) are batches of the same map, so they too are merged as they end, and a
    load without any costs no task at all.

    Returns the upserts' output: outside the group it is the list of every batch's result.
    """
    from airflow.sdk import task_group

    from tickstock_airflow.operators.massive import MassiveBarsToStagingOperator

    job_id = job_id_of(batches)

    @task_group(group_id="load_batch", prefix_group_id=False)
    def load_batch(batch: Any) -> XComArg:
        fetched = MassiveBarsToStagingOperator(
            task_id="fetch_bars",
            batch=batch,
            pool=MASSIVE_POOL,
            rate_limit=RATE_LIMIT_TEMPLATE,
            map_index_template=FETCH_MAP_INDEX_TEMPLATE,
            priority_weight=FETCH_PRIORITY,
            weight_rule="absolute",
        )
        return upsert_bars(fetched.output, job_id)

    # One mapped argument, the whole batch (why: MassiveBarsToStagingOperator's ``batch``).
    return load_batch.expand(batch=batches)


def massive_hook(*, pool_size: int = 10):
    """Return a MassiveHook on the shared request budget (Variable ``massive_rate_limit``).

    :param pool_size: HTTP connections kept, one per thread that will share the hook
    """
    from airflow.sdk import Variable

    from tickstock_airflow.hooks.massive import MassiveHook

    rate_limit = Variable.get(RATE_LIMIT_VARIABLE, default=DEFAULT_RATE_LIMIT) or None
    return MassiveHook(
        massive_conn_id=MASSIVE_CONN_ID, rate_limit=rate_limit, redis_conn_id=REDIS_CONN_ID, pool_size=pool_size
    )


def pg_connection():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn()


def job_status_store():
    from airflow.providers.redis.hooks.redis import RedisHook

    from tickstock.job_status import JobStatusStore

    return JobStatusStore(RedisHook(redis_conn_id=REDIS_CONN_ID).get_conn())


def planned_windows(plan: Mapping[str, Any]) -> dict[Timeframe, LoadWindow]:
    """Recompute a plan's check windows exactly (same request shape, as_of and planning instant)."""
    from datetime import datetime

    from tickstock.windows import plan_windows

    spec = plan["check"]
    return plan_windows(
        as_of=date.fromisoformat(spec["as_of"]),
        days=spec["days"],
        timeframes=tuple(Timeframe(tf) for tf in spec["timeframes"]),
        hourly_days=spec["hourly_days"],
        extended_hours=spec["extended_hours"],
        now=datetime.fromisoformat(spec["planned_at"]),
    )


def fail_job(job_id: str, run_id: str, message: str, *, cause: BaseException) -> NoReturn:
    """Report a run that cannot start as ``failed`` in the job status, then fail the task for good."""
    from tickstock.job_status import JobState

    job_status_store().update(
        job_id, status=JobState.FAILED, progress=100, message=message, errors=[str(cause)], fields={"run_id": run_id}
    )
    raise AirflowFailException(message) from cause


PLAN_KEY = "plan"
JOB_ID_KEY = "job_id"


def mapped_results(results: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Return every result of a mapped task, or of a task in a mapped task group, as a list.

    A mapped task's output arrives as Airflow's lazy XCom sequence: iterating it fetches one XCom
    per item and then probes the index past the end, which the task SDK logs at error level
    (``XCom not found … offset=N``) in a run that succeeds; a full slice is one
    ``GetXComSequenceSlice`` request and probes nothing. A task inside a mapped task group is
    not itself mapped: its output is pulled with ``xcom_pull``, which returns a list, a single
    result when the group expanded once, and nothing when it did not expand.
    """
    if results is None:
        return []
    if isinstance(results, Mapping):
        return [results]
    return list(results[:])


def plan_of(planner: XComArg) -> XComArg:
    """Return the plan a planning task publishes next to its batches (XCom key ``plan``).

    Airflow maps only over a task's ``return_value``, so planners return the batch list and
    publish everything else (symbols, job id, check windows) under :data:`PLAN_KEY`.
    """
    return XComArg(planner.operator, key=PLAN_KEY)


def job_id_of(planner: XComArg) -> XComArg:
    """Return the job id a planning task publishes on its own (XCom key ``job_id``).

    Mapped tasks take only this, not the whole plan: the plan holds every symbol (and, in a
    refresh, each one's check bounds), and every task instance that takes it pulls, renders and
    stores it again (hundreds of KB, hundreds of times per run).
    """
    return XComArg(planner.operator, key=JOB_ID_KEY)


@task
def plan_load(**context: Any) -> list[dict[str, Any]]:
    """Validate params, check the schema is at head, compute windows and return the batches to map over.

    The schema is never changed here (see ``tickstock.schema``): a database behind head fails the
    run at once, before any API request, with the command that upgrades it.
    """
    from datetime import UTC, datetime

    from tickstock.plan import mapped_batches
    from tickstock.plan import plan_load as build_plan
    from tickstock.schema import SchemaNotAtHead, require_head
    from tickstock.splits import AdjustmentMismatch, check_basis, initialise_watermark

    params = context["params"]
    run_id = context["run_id"]
    try:
        request = parse_load_request(params)
    except InvalidRequest as exc:
        fail_job(str(params.get("job_id") or run_id), run_id, f"Invalid load request: {exc}", cause=exc)
    job_id = request.job_id or run_id
    with pg_connection() as conn:
        try:
            require_head(conn)
        except SchemaNotAtHead as exc:
            fail_job(job_id, run_id, str(exc), cause=exc)
    planned_at = datetime.now(UTC)
    log.info("=== PROCESSING JOB %s ===", job_id)
    log.info("Source: %s", request.source or context["dag_run"].run_type)
    log.info("Symbols in message: %s", list(request.symbols))
    log.info("Symbol count: %d", len(request.symbols))
    plan = build_plan(request, run_id=run_id, now=planned_at)
    for timeframe, window in plan.windows.items():
        log.info(
            "%s window: %s to %s, %d bars expected per symbol",
            timeframe,
            window.start,
            window.end,
            window.expected_count,
        )
    with pg_connection() as conn:
        try:
            check_basis(conn, request.symbols, [OHLCV_TABLES[tf].table for tf in request.timeframes], request.adjusted)
        except AdjustmentMismatch as exc:
            fail_job(job_id, run_id, f"Invalid load request: {exc}", cause=exc)
        # Bars fetched from now on reflect every split executed so far (see tickstock.splits).
        initialise_watermark(conn, plan.as_of)
    job_status_store().start(
        job_id,
        total_symbols=len(request.symbols),
        batches_total=len(plan.batches) + len(plan.grouped),
        message=f"Starting load of {len(request.symbols)} symbols",
        fields={"run_id": run_id, "source": request.source or ""},
    )
    context["ti"].xcom_push(key=JOB_ID_KEY, value=job_id)
    context["ti"].xcom_push(
        key=PLAN_KEY,
        value={
            "job_id": job_id,
            "symbols": list(request.symbols),
            "batch_count": len(plan.batches) + len(plan.grouped),
            "min_completeness": float(params.get("min_completeness", 1.0)),
            "splits_window": [min(w.start for w in plan.windows.values()).isoformat(), plan.as_of.isoformat()]
            if plan.windows and request.adjusted
            else None,
            "check": {
                "as_of": plan.as_of.isoformat(),
                "planned_at": planned_at.isoformat(),
                "days": request.days,
                "timeframes": [tf.value for tf in request.timeframes],
                "hourly_days": request.hourly_days,
                "extended_hours": request.extended_hours,
            },
        },
    )
    return mapped_batches(plan.grouped, plan.batches)


@task(priority_weight=FIRST_PRIORITY, weight_rule="absolute")
def register_symbols(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Register ticker details in ``symbols``; unknown tickers are registered with the symbol only."""
    from tickstock.splits import splits_of_stored
    from tickstock.symbols import register_symbols as upsert
    from tickstock.symbols import symbol_row, symbols_with_fresh_metadata

    symbols = plan["symbols"]
    with pg_connection() as conn:
        fresh = symbols_with_fresh_metadata(conn, symbols)
        stale = [s for s in symbols if s not in fresh]
        log.info("Fetching metadata for %d symbols (%d already fresh)", len(stale), len(fresh))
        hook = massive_hook(pool_size=METADATA_WORKERS)
        with ThreadPoolExecutor(max_workers=METADATA_WORKERS) as pool:
            details = dict(zip(stale, pool.map(hook.get_ticker_details, stale), strict=True))
        unknown = [s for s, d in details.items() if d is None]
        for symbol, found in details.items():
            if found is None:
                log.warning("⚠ No metadata found for %s, registering with symbol only", symbol)
            else:
                log.info("✓ Symbol registered: %s (%s)", found.get("name"), found.get("type"))
        upsert(conn, [symbol_row(s, d) for s, d in details.items()], fresh=fresh)
    # Ticker-details requests only: the splits query below is not part of the registration's cost.
    result: dict[str, Any] = {
        "unknown": unknown,
        "registered": len(details),
        "fresh": len(fresh),
        "requests": hook.requests_made,
    }
    window = plan.get("splits_window")
    if window:
        # Recorded, not acted on: bars fetched now are already on the basis these splits set.
        seen = splits_of_stored(hook.get_splits(*window), symbols)
        result["splits"] = [split.to_json() for found in seen.values() for split in found]
        for split in (split for found in seen.values() for split in found):
            log.info("Split in the load window: %s %s %s", split.symbol, split.execution_date, split.ratio)
    return result


# none_failed: in nightly_refresh one of the two fetch paths is often an empty (skipped) map.
@task(
    map_index_template="{{ map_index_label }}",
    trigger_rule="none_failed",
    priority_weight=UPSERT_PRIORITY,
    weight_rule="absolute",
)
def upsert_bars(fetch_result: Mapping[str, Any], job_id: str) -> dict[str, Any]:
    """Merge one fetched batch from staging into its OHLCV table, in one transaction."""
    from tickstock.staging import merge_staged

    timeframe = Timeframe(fetch_result["timeframe"])
    key = fetch_result["staging_key"]
    context = get_current_context()
    symbols = sorted(fetch_result.get("bars", {}))
    context["map_index_label"] = f"{timeframe.value} · {symbols[0]}…{symbols[-1]} ({len(symbols)})" if symbols else key
    from tickstock.splits import AdjustmentMismatch

    try:
        with pg_connection() as conn:
            merged = merge_staged(conn, key, timeframe, adjusted=fetch_result.get("adjusted", True))
    except AdjustmentMismatch as exc:  # a concurrent load claimed the other basis: retrying cannot help
        raise AirflowFailException(str(exc)) from exc
    fetched = sum(fetch_result.get("bars", {}).values())
    if fetched and not merged.staged:
        # Rows are kept staged until the run ends, so a retried upsert finds them again; none
        # at all means they were lost (an unlogged table is emptied by a database crash) or the
        # run was cleared from upsert_bars onwards after it ended. Never report such a batch as 0 bars.
        raise AirflowFailException(
            f"{fetched} bars staged under {key} are gone (TickStock's database crashed, or the run was"
            " cleared without its fetch tasks): clear this batch's fetch_bars with its downstream tasks"
        )
    table = OHLCV_TABLES[timeframe].table
    for symbol, count in sorted(merged.staged.items()):
        log.info("✓ Inserted %d bars into %s for %s", count, table, symbol)
    log.info(
        "✓ Inserted %d bars into %s (%d new, %d changed, %d unchanged)",
        merged.staged.total(),
        table,
        merged.inserted.total(),
        merged.updated.total(),
        merged.unchanged,
    )
    result = {
        "timeframe": timeframe.value,
        "staging_key": key,
        "bars": dict(merged.staged),
        "inserted": merged.inserted.total(),
        "updated": merged.updated.total(),
        # rows inserted or changed per symbol: what a split reload rewrote (results.splits)
        "written": dict(merged.inserted + merged.updated),
        "failed": dict(fetch_result.get("failed", {})),
        "invalid": dict(fetch_result.get("invalid", {})),
        "requests": fetch_result.get("requests", 0),
        "source": fetch_result.get("source"),
    }
    from tickstock.results import RESULT_FIELD

    errors = [f"{s}: {timeframe.value} bars: {r}" for s, r in result["failed"].items()]
    job_status_store().update(
        job_id,
        increments={RESULT_FIELD[timeframe]: merged.staged.total()},
        errors=errors,
        batches_done=1,
        message=f"Loaded {timeframe.value} bars for {len(symbols)} symbols",
    )
    return result


# The OHLCV assets are updated once per run, by the task that proves the bars complete: one event
# per table for downstream DAGs, not one per table from each of hundreds of mapped upserts.
#
# A load that passes the check is reported done by the check itself, and finish_job is skipped:
# started as one more task on a worker it cost 2-3 s of every run's critical path (3.9 s from the
# last upsert to the run's end for 100 symbols), and TickStockAppV2 waits for ``completed``.
# finish_job stays the failure path: ``all_done`` waits for every batch, which no trigger rule
# that fires on a failure does (``one_failed`` fires at the first, with batches still running).
# A short circuit that skips only its direct downstream, so trigger rules further on still hold.
@task.short_circuit(
    outlets=list(OHLCV_ASSETS.values()), trigger_rule="none_failed", ignore_downstream_trigger_rules=False
)
def check_bar_counts(
    plan: Mapping[str, Any],
    upserts: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None,
    registration: Mapping[str, Any] | None = None,
) -> bool:
    """Compare stored bars with the exact calendar counts; fail listing the short pairs.

    Returns whether ``finish_job`` must still run: ``False`` once this task has closed the job
    (every batch merged, the check passed, some symbol loaded), ``True`` to leave a failed job
    (say every symbol's fetch failed) to ``finish_job``.
    """
    from tickstock.checks import count_bars, evaluate
    from tickstock.job_status import JobState

    context = get_current_context()
    upserts = mapped_results(upserts)
    summary = run_summary(plan, upserts, registration)
    checked = summary.loaded
    since = {symbol: date.fromisoformat(day) for symbol, day in plan["check"].get("since", {}).items()}

    def count(window: LoadWindow) -> list[Any]:
        with pg_connection() as conn:
            return count_bars(conn, window, checked, since)

    # One query per timeframe, each on its own connection at once: the check is on the run's
    # critical path after the last upsert, and the day query of a large universe counts millions
    # of rows while the others would wait behind it.
    windows = list(planned_windows(plan).values())
    with ThreadPoolExecutor(max_workers=max(1, len(windows))) as pool:
        counts = [found for per_window in pool.map(count, windows) for found in per_window]
    outcome = evaluate(counts, min_completeness=plan["min_completeness"])
    result = {
        "passed": outcome.passed,
        "summary": outcome.summary(),
        "checked_symbols": len(checked),
        "pairs": len(counts),
    }
    context["ti"].xcom_push(key="outcome", value=result)
    if not outcome.passed:
        raise AirflowFailException(f"Bar-count check failed: {outcome.summary()}")
    log.info("Bar-count check passed: %d symbol x timeframe pairs exact", len(counts))
    summary.check_passed = True
    if summary.state is JobState.FAILED:
        log.info("The job failed (%s): finish_job reports it", summary.message())
        return True
    close_job(plan, upserts, registration, result)
    log.info("finish_job skipped: it reports failed jobs only")
    return False


def record_splits(
    plan: Mapping[str, Any],
    registration: Mapping[str, Any] | None,
    upserts: Sequence[Mapping[str, Any]],
    *,
    completed: bool,
) -> list[dict[str, Any]] | None:
    """``results.splits`` of a run, and the split watermark advanced when a refresh completed.

    The watermark moves only when every symbol loaded and the check passed: a failed reload is
    retried by the next run, which asks for the same execution dates again.
    """
    from collections import Counter

    from tickstock.splits import Split, advance_watermark, record_reloads, split_results

    found = plan.get("splits") if plan.get("splits") is not None else (registration or {}).get("splits")
    if found is None:
        return None
    written: Counter[str] = Counter()
    for result in upserts:
        written.update(result.get("written", {}))
    splits = [Split.from_json(item) for item in found]
    entries = split_results(splits, written)
    for entry in entries:
        log.info(
            "Split %s %s %s: %d rows rewritten", entry["symbol"], entry["date"], entry["ratio"], entry["rows_rewritten"]
        )
    through = plan.get("splits_through")
    if through and completed:
        with pg_connection() as conn:
            record_reloads(conn, splits, written, get_current_context()["run_id"])
            advance_watermark(conn, date.fromisoformat(through))
        log.info("Split watermark advanced to %s", through)
    elif through:
        log.warning("Split watermark not advanced: the run did not complete; the next run asks again")
    return entries


def run_summary(
    plan: Mapping[str, Any], upserts: Sequence[Mapping[str, Any]], registration: Mapping[str, Any] | None
) -> LoadSummary:
    """The run's :class:`~tickstock.results.LoadSummary`, as the check and the job's close both read it."""
    from tickstock.results import summarise

    return summarise(
        symbols=plan["symbols"],
        batch_results=upserts,
        planned_batches=plan["batch_count"],
        unknown_symbols=(registration or {}).get("unknown", []),
        daily_expected=plan.get("daily_required", True),
        details_requests=(registration or {}).get("requests", 0),
    )


def close_job(
    plan: Mapping[str, Any],
    upserts: Sequence[Mapping[str, Any]],
    registration: Mapping[str, Any] | None,
    outcome: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Clear the merged batches, log the JOB COMPLETE summary and write the final job status.

    Shared by the two tasks that can end a job: ``check_bar_counts`` when it passed, and
    ``finish_job`` for every other end. Idempotent, so a retried task writes the same status.
    """
    from tickstock.job_status import JobState
    from tickstock.results import DETAILS_REQUESTS, GROUPED_REQUESTS, REQUEST_FIELD
    from tickstock.staging import clear_staged

    # Merged batches stay staged until now (a retried upsert needs them); a failed batch stays
    # staged for a cleared re-run, or until purge_stale_staging.
    with pg_connection() as conn:
        cleared = clear_staged(conn, [result["staging_key"] for result in upserts])
    log.info("Cleared %d staged bars of %d merged batches", cleared, len(upserts))
    summary = run_summary(plan, upserts, registration)
    requests_made = {
        tf.value: summary.requests[REQUEST_FIELD[tf]] for tf in Timeframe if summary.requests[REQUEST_FIELD[tf]]
    }
    log.info(
        "API requests by timeframe: %s (%d of the day requests grouped daily), %d ticker details",
        requests_made,
        summary.requests[GROUPED_REQUESTS],
        summary.requests[DETAILS_REQUESTS],
    )
    if outcome is None:
        summary.check_passed, summary.check_summary = False, "the check did not run (an upstream task failed)"
    else:
        summary.check_passed, summary.check_summary = outcome["passed"], outcome["summary"]
    results = summary.results()
    splits = record_splits(plan, registration, upserts, completed=summary.state is JobState.COMPLETED)
    if splits is not None:
        results["splits"] = splits
    log.info("=" * 60)
    log.info("JOB COMPLETE: %s", plan["job_id"])
    log.info("=" * 60)
    log.info("Symbols loaded: %d/%d", results["symbols_loaded"], len(plan["symbols"]))
    log.info("Symbols failed: %d", results["symbols_failed"])
    for name in ("hourly", "daily", "weekly", "monthly"):
        log.info("%s bars inserted: %d", name.capitalize(), results[f"{name}_bars"])
    if results["errors"]:
        log.error("Errors encountered:")
        for error in results["errors"]:
            log.error("  - %s", error)
    job_status_store().update(
        plan["job_id"],
        status=summary.state,
        progress=100,
        message=summary.message(),
        results={k: v for k, v in results.items() if k not in ("errors", "splits")},
        splits=results.get("splits"),
        errors=results["errors"],
        replace_errors=True,
        fields={"requests": json.dumps(requests_made)},
    )
    if summary.state is JobState.FAILED:
        raise AirflowFailException(summary.message())
    return {"status": summary.state.value, "requests": requests_made, **results}


@task(trigger_rule="all_done")
def finish_job(
    upserts: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None,
    registration: Mapping[str, Any] | None = None,
    *,
    planner: str,
) -> dict[str, Any]:
    """End a job that ``check_bar_counts`` did not close: write its status, fail the run if it failed.

    It runs when a task upstream failed (the check then never ran), when the check failed, or
    when the check passed on a failed job; after every batch, never beside a running one.

    The plan is pulled here rather than taken as an argument: when the planner fails (a bad
    request, a schema behind head) it has already written the ``failed`` status and published no
    plan, and an argument that cannot be resolved would fail this task and have it retried for
    nothing. Without a plan it fails at once, without retries.
    """
    context = get_current_context()
    plan = context["ti"].xcom_pull(task_ids=planner, key=PLAN_KEY)
    if plan is None:
        raise AirflowFailException(f"{planner} published no plan (it failed; its job status says why)")
    outcome = context["ti"].xcom_pull(task_ids="check_bar_counts", key="outcome")
    return close_job(plan, mapped_results(upserts), registration, outcome)
