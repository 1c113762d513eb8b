"""
## nightly_refresh

Keep every active symbol in `symbols` current, cheaply. Runs after the US close on weekdays
(18:30 America/New_York); a run on a holiday finds no new session and makes no bar requests.
Trigger it manually with `as_of` to refresh a past day.

Per symbol and timeframe it fetches from the last stored bar, re-fetches a small revision window
(Massive revises recent bars) and the open week and month, and backfills gaps the NYSE calendar
exposes inside the history a symbol already has (bounded by its list date). Daily bars for many
symbols needing the same sessions come from the grouped-daily endpoint: one request per session
instead of one per symbol. Fetch, upsert, the exact bar-count check and the Redis job status are
the same building blocks as `universe_load`; requests per timeframe go into the job status.

Splits: one `/stocks/v1/splits` query per run for the execution dates since the stored
watermark (with a few days' overlap for late listings); every stored symbol that split has its
whole stored history reloaded in every table it has, listed in the job status as
`results.splits`. The watermark advances only when the run completed.
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, Param, dag
from pendulum import datetime, duration

from tickstock.load_request import MAX_BATCH_SIZE, MAX_HOURLY_DAYS
from tickstock_airflow.refresh_tasks import (
    DEFAULT_CHECK_DAYS,
    DEFAULT_REFRESH_BATCH_SIZE,
    plan_refresh,
)
from tickstock_airflow.tasks import (
    check_bar_counts,
    finish_job,
    load_batches,
    plan_of,
)

PARAMS = {
    "as_of": Param(
        None,
        type=["null", "string"],
        format="date",
        title="As of",
        description="Refresh up to this date (America/New_York); empty = today.",
    ),
    "check_days": Param(
        DEFAULT_CHECK_DAYS,
        type="integer",
        minimum=1,
        maximum=7300,
        title="Check window (days)",
        description="How many calendar days back the exact bar-count check looks.",
    ),
    "hourly_days": Param(2, type="integer", minimum=0, maximum=MAX_HOURLY_DAYS, title="Hourly sessions"),
    "hourly_session": Param("regular", type="string", enum=["regular", "extended"], title="Hourly session"),
    "batch_size": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        maximum=MAX_BATCH_SIZE,
        title="Batch size",
        description=(
            f"Symbols per mapped fetch task; empty = sized to the workers (two rounds of the massive_api pool,"
            f" {DEFAULT_REFRESH_BATCH_SIZE} to {MAX_BATCH_SIZE})."
        ),
    ),
    "min_completeness": Param(1.0, type="number", minimum=0, maximum=1, title="Minimum completeness"),
    "job_id": Param(None, type=["null", "string"], title="Job id", description="Default: the run id."),
}


@dag(
    dag_id="nightly_refresh",
    schedule=CronTriggerTimetable("30 18 * * 1-5", timezone="America/New_York"),
    start_date=datetime(2025, 1, 1, tz="America/New_York"),
    catchup=False,
    doc_md=__doc__,
    default_args={"owner": "tickstock", "retries": 2, "retry_delay": duration(minutes=1)},
    tags=["tickstock", "massive", "ohlcv", "refresh"],
    params=PARAMS,
    max_active_runs=1,
)
def nightly_refresh() -> None:
    batches = plan_refresh()
    plan = plan_of(batches)
    upserted = load_batches(batches)
    checked = check_bar_counts(plan, upserted)
    finished = finish_job(upserted, planner=batches.operator.task_id)
    checked >> finished


nightly_refresh()
