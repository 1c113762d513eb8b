"""
## universe_load

Load historical OHLCV bars (hour, day, week, month) for a universe of symbols from the Massive
Custom Bars API into PostgreSQL/TimescaleDB. Triggered from the UI (symbols, days), by
`redis_job_listener` for TickStockAppV2's job messages, and reusable by other DAGs.

**Flow:** `plan_load` (validate params, check the schema is at head, exact windows from the NYSE calendar, symbol
batches sized to the workers) → `register_symbols` (ticker details) ∥ `load_batch` (mapped task
group, one per timeframe x symbol batch: `fetch_bars` COPYs into a staging table, then
`upsert_bars` merges that batch in one transaction as soon as its fetch ends; day bars come from
grouped-daily batches, one request per session, when that needs fewer requests than one per
symbol) → `check_bar_counts` (every expected bar present, none on non-sessions, OHLC valid;
when it passes it writes the job status `tickstock.jobs.status:{job_id}` in Redis and the JOB
COMPLETE summary, and skips `finish_job`) → `finish_job` (the failure path: the `failed` status,
then the run fails). Ticker details get the first free slot, a finished batch's upsert the next, then the
next fetch, so the request budget stays full and merging keeps up.

**Windows:** daily = NYSE sessions in `[as_of - days, as_of]`; weekly/monthly = the periods
containing them (whole periods); hourly = the last `hourly_days` sessions, 09:00 ET to the close.

Connections: `massive_default` (API key in the password), `tickstock_db`, `tickstock_redis`.
Pool `massive_api` bounds concurrent API fetches; Variable `massive_rate_limit` (e.g. `100/s`,
`5/min`) sets the request budget shared by all workers.
"""

from __future__ import annotations

from airflow.sdk import Param, dag
from pendulum import datetime, duration

from tickstock.load_request import (
    AUTO_MIN_BATCH_SIZE,
    DEFAULT_DAYS,
    DEFAULT_HOURLY_DAYS,
    MAX_BATCH_SIZE,
    MAX_DAYS,
    MAX_HOURLY_DAYS,
    SYMBOL_PATTERN,
)
from tickstock.timeframes import ALL_TIMEFRAMES
from tickstock_airflow.tasks import (
    check_bar_counts,
    finish_job,
    load_batches,
    plan_load,
    plan_of,
    register_symbols,
)

TIMEFRAME_NAMES = [tf.value for tf in ALL_TIMEFRAMES]

PARAMS = {
    "symbols": Param(
        [],
        type="array",
        items={"type": "string", "pattern": SYMBOL_PATTERN},
        title="Symbols",
        description="Tickers to load, one per line (upper case, e.g. SCHG). May be combined with a universe.",
    ),
    "universe": Param(
        None,
        type=["null", "string"],
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(\.csv)?$",
        title="Universe",
        description="Name of a CSV in include/universes (e.g. core_etfs).",
    ),
    "days": Param(
        DEFAULT_DAYS,
        type="integer",
        minimum=1,
        maximum=MAX_DAYS,
        title="Days",
        description="Calendar-day lookback for daily, weekly and monthly bars.",
    ),
    "years": Param(
        None,
        type=["null", "number"],
        exclusiveMinimum=0,
        title="Years",
        description="Alternative to days, as in TickStockAppV2 messages (0.005479 = 2 days). Leave empty to use days.",
    ),
    "timeframes": Param(
        TIMEFRAME_NAMES,
        type="array",
        items={"type": "string", "enum": TIMEFRAME_NAMES},
        examples=TIMEFRAME_NAMES,
        title="Timeframes",
        description="Which bars to load.",
    ),
    "hourly_days": Param(
        DEFAULT_HOURLY_DAYS,
        type="integer",
        minimum=0,
        maximum=MAX_HOURLY_DAYS,
        title="Hourly sessions",
        description="How many of the latest sessions get hourly bars (the design cap is 2).",
    ),
    "hourly_session": Param(
        "regular",
        type="string",
        enum=["regular", "extended"],
        title="Hourly session",
        description="regular: bars from 09:00 ET to the close; extended: 04:00-20:00 ET.",
    ),
    "adjusted": Param(True, type="boolean", title="Split-adjusted", description="Massive's adjusted prices."),
    "as_of": Param(
        None,
        type=["null", "string"],
        format="date",
        title="As of",
        description="Reference date (America/New_York) the lookback ends on; empty = today.",
    ),
    "job_id": Param(None, type=["null", "string"], title="Job id", description="Default: the run id."),
    "source": Param(None, type=["null", "string"], title="Source", description="Who asked for this load."),
    "batch_size": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        maximum=MAX_BATCH_SIZE,
        title="Batch size",
        description=(
            f"Symbols per mapped fetch task; empty = sized to the workers (two rounds of the massive_api pool,"
            f" {AUTO_MIN_BATCH_SIZE} to {MAX_BATCH_SIZE}). Grown when needed to stay under Airflow's map limit."
        ),
    ),
    "min_completeness": Param(
        1.0,
        type="number",
        minimum=0,
        maximum=1,
        title="Minimum completeness",
        description="Share of the calendar's bars each symbol must have (1.0 = exact; lower for illiquid names).",
    ),
}


@dag(
    dag_id="universe_load",
    schedule=None,
    start_date=datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    default_args={"owner": "tickstock", "retries": 2, "retry_delay": duration(seconds=20)},
    tags=["tickstock", "massive", "ohlcv"],
    params=PARAMS,
    max_active_runs=4,
)
def universe_load() -> None:
    batches = plan_load()
    plan = plan_of(batches)
    registration = register_symbols(plan)
    upserted = load_batches(batches)
    checked = check_bar_counts(plan, upserted, registration)
    finished = finish_job(upserted, registration, planner=batches.operator.task_id)
    checked >> finished


universe_load()
