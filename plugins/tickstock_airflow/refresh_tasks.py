"""Tasks specific to ``nightly_refresh``; fetch (both endpoints), upsert, check and finish come from ``tasks``."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from tickstock.timeframes import Timeframe
from tickstock_airflow.tasks import JOB_ID_KEY, PLAN_KEY, fail_job, job_status_store, massive_hook, pg_connection

log = logging.getLogger(__name__)

DEFAULT_CHECK_DAYS = 30
# A refresh asks for a few bars per symbol, so a task's cost is mostly Airflow's own per-task
# work: 250 symbols per batch instead of universe_load's 50 halved the DagRun of a 1,000-symbol
# refresh in make bench's setting (65-70 s -> 35 s) with the same requests. The smallest batch the
# automatic size (tickstock.plan.auto_batch_size) picks for a refresh.
DEFAULT_REFRESH_BATCH_SIZE = 250


@task
def plan_refresh(**context: Any) -> list[dict[str, Any]]:
    """Find what every active symbol needs and turn it into fetch batches (or grouped-daily requests)."""
    from tickstock import calendar
    from tickstock.grouped_daily import grouped_requests, use_grouped_daily
    from tickstock.load_request import InvalidRequest, parse_load_request
    from tickstock.plan import MAX_MAPPED_TASKS, auto_batch_size, mapped_batches
    from tickstock.refresh import (
        DATED_TIMEFRAMES,
        RefreshRange,
        batch_groups,
        calendar_keys,
        find_first_missing,
        group_ranges,
        plan_symbol_range,
        read_extents,
        refresh_summary,
        reload_range,
    )
    from tickstock.schema import SchemaNotAtHead, require_head
    from tickstock.splits import AdjustmentMismatch, SplitReloads, check_basis, plan_split_reloads
    from tickstock.sqlfiles import read_sql
    from tickstock.staging import load_key
    from tickstock.timeframes import OHLCV_TABLES
    from tickstock.windows import plan_windows

    params = context["params"]
    run_id = context["run_id"]
    planned_at = datetime.now(UTC)
    as_of = date.fromisoformat(params["as_of"]) if params.get("as_of") else calendar.today_new_york(planned_at)
    job_id = params.get("job_id") or run_id
    try:
        shape = parse_load_request(
            {
                "symbols": ["SPY"],
                **{k: params[k] for k in ("hourly_days", "hourly_session", "batch_size", "adjusted") if k in params},
            }
        )
    except InvalidRequest as exc:
        raise AirflowFailException(f"Invalid refresh request: {exc}") from exc
    as_of_is_session = calendar.is_session(as_of)
    sessions = calendar.started_sessions(calendar.sessions(calendar.CALENDAR_START, as_of), planned_at)

    with pg_connection() as conn:
        try:
            require_head(conn)  # never DDL in a run: tooling upgrades (python -m tickstock.schema upgrade)
        except SchemaNotAtHead as exc:
            fail_job(job_id, run_id, str(exc), cause=exc)
        symbols = [row[0] for row in conn.execute(read_sql("dml/active_symbols.sql")).fetchall()]
        try:
            check_basis(conn, symbols, [OHLCV_TABLES[tf].table for tf in Timeframe], shape.adjusted)
        except AdjustmentMismatch as exc:
            fail_job(job_id, run_id, f"Invalid refresh request: {exc}", cause=exc)
        extents_by_tf = {tf: read_extents(conn, tf, symbols) for tf in DATED_TIMEFRAMES}
        split_plan = SplitReloads({}, [], None)
        if shape.adjusted:  # raw bars are not restated by a split
            split_plan = plan_split_reloads(
                conn, as_of=as_of, extents=extents_by_tf, get_splits=massive_hook().get_splits
            )
        reloads = split_plan.splits
        for symbol, found in sorted(reloads.items()):
            log.info(
                "Split-adjusted history of %s changed (%s): reloading every stored bar",
                symbol,
                ", ".join(f"{s.ratio} on {s.execution_date}" for s in found),
            )
        ranges = []
        since: dict[str, str] = {}
        for timeframe in DATED_TIMEFRAMES:
            keys = calendar_keys(timeframe, sessions)
            extents = extents_by_tf[timeframe]
            missing = find_first_missing(conn, timeframe, extents, keys)
            for extent in extents:
                item = plan_symbol_range(
                    extent,
                    timeframe,
                    sessions=sessions,
                    first_missing=missing.get(extent.symbol),
                    as_of_is_session=as_of_is_session,
                )
                if extent.symbol in reloads:
                    item = reload_range(extent, timeframe, sessions) or item
                if item:
                    ranges.append(item)
                if timeframe is Timeframe.DAY:
                    first = extent.first_key or (item.start if item else None)
                    if first:
                        since[extent.symbol] = first.isoformat()
    log.info(
        "Refresh as of %s (%s): %d active symbols", as_of, "session" if as_of_is_session else "no session", len(symbols)
    )
    log.info("Ranges needed: %s", refresh_summary(ranges))

    grouped: list[dict[str, Any]] = []
    to_batch: dict[tuple[Timeframe, date, date], list[str]] = {}
    for index, ((timeframe, start, end), group) in enumerate(sorted(group_ranges(ranges).items())):
        group_sessions = calendar.sessions(start, end)
        if use_grouped_daily(timeframe, symbol_count=len(group), session_count=len(group_sessions)):
            grouped.extend(
                grouped_requests(group, group_sessions, run_id=run_id, group=f"g{index}", adjusted=shape.adjusted)
            )
        else:
            to_batch[(timeframe, start, end)] = group
    hourly = None
    if as_of_is_session and symbols and shape.hourly_days:
        hourly = plan_windows(
            as_of=as_of,
            days=1,
            timeframes=(Timeframe.HOUR,),
            hourly_days=shape.hourly_days,
            extended_hours=shape.extended_hours,
            now=planned_at,
        ).get(Timeframe.HOUR)
        if hourly:
            to_batch[(Timeframe.HOUR, hourly.start, hourly.end)] = [s for s in symbols if s not in reloads]
    for extent in split_plan.hour_extents:
        item = reload_range(extent, Timeframe.HOUR, sessions)
        if item is None and as_of_is_session and shape.hourly_days and hourly:
            item = RefreshRange(extent.symbol, Timeframe.HOUR, hourly.start, hourly.end, "new")
        if item:
            ranges.append(item)
            to_batch.setdefault((Timeframe.HOUR, item.start, item.end), []).append(extent.symbol)
    to_batch = {key: group for key, group in to_batch.items() if group}
    max_batches = MAX_MAPPED_TASKS - len(grouped)
    batch_size = shape.batch_size or auto_batch_size(
        sum(len(group) for group in to_batch.values()), 1, floor=DEFAULT_REFRESH_BATCH_SIZE
    )
    batches = [
        {
            "symbols": list(batch.symbols),
            "timeframe": batch.timeframe.value,
            "start": batch.start.isoformat(),
            "end": batch.end.isoformat(),
            "staging_key": load_key(run_id, batch.timeframe, index),
            "adjusted": shape.adjusted,
            "extended_hours": shape.extended_hours,
            "sessions": None,
        }
        for index, batch in enumerate(
            batch_groups(to_batch, batch_size=batch_size, max_batches=max_batches, others=len(grouped))
        )
    ]
    log.info(
        "%d fetch batches, %d grouped-daily requests planned", len(batches), sum(len(g["sessions"]) for g in grouped)
    )
    job_status_store().start(
        job_id,
        total_symbols=len(symbols),
        batches_total=len(batches) + len(grouped),
        message=f"Nightly refresh of {len(symbols)} symbols as of {as_of}",
        fields={"run_id": run_id, "source": "nightly_refresh"},
    )
    check_days = int(params.get("check_days", DEFAULT_CHECK_DAYS))
    context["ti"].xcom_push(key=JOB_ID_KEY, value=job_id)
    context["ti"].xcom_push(
        key=PLAN_KEY,
        value={
            "job_id": job_id,
            "symbols": symbols,
            "batch_count": len(batches) + len(grouped),
            "daily_required": False,
            "splits": [split.to_json() for found in reloads.values() for split in found],
            "splits_through": split_plan.through.isoformat() if split_plan.through else None,
            "min_completeness": float(params.get("min_completeness", 1.0)),
            "check": {
                "as_of": as_of.isoformat(),
                "planned_at": planned_at.isoformat(),
                "days": check_days,
                "timeframes": [tf.value for tf in (Timeframe.HOUR, *DATED_TIMEFRAMES)]
                if as_of_is_session
                else [tf.value for tf in DATED_TIMEFRAMES],
                "hourly_days": shape.hourly_days,
                "extended_hours": shape.extended_hours,
                "since": since,
            },
        },
    )
    return mapped_batches(grouped, batches)
