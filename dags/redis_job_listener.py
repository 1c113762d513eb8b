"""
## redis_job_listener

Starts one `universe_load` run per TickStockAppV2 job message, losing none and running none twice.

TickStockAppV2 publishes jobs on the Redis channel `tickstock.jobs.data_load`. The intake bridge
(`python -m tickstock.intake bridge`) copies every message into the stream
`tickstock.jobs.data_load.stream`; this DAG consumes that stream with the consumer group `airflow`
(see `docs/redis-jobs.md`).

Each run (back to back, `@continuous`, one at a time):

1. `wait_for_jobs` defers to a trigger that blocks on the stream: no worker slot while idle.
2. `claim_jobs` claims every pending entry (a crashed run's) and new ones, validates them, marks
   invalid ones `failed` in the job status and moves them to `tickstock.jobs.data_load.dead`.
3. `trigger_universe_load` creates one run per job with run id `redis__<job_id>`; a redelivered
   job finds its run already there and creates nothing.
4. `acknowledge_jobs` checks that each run exists, reports the job `queued` with the run id, and
   only then acknowledges its entries. A crash before that means redelivery, not loss.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task
from airflow.task.trigger_rule import TriggerRule

from tickstock_airflow.operators.job_run import TriggerJobRunsOperator
from tickstock_airflow.sensors.redis_stream import RedisStreamSensor

REDIS_CONN_ID = "tickstock_redis"
TARGET_DAG_ID = "universe_load"
STREAM = "tickstock.jobs.data_load.stream"
GROUP = "airflow"
# Jobs claimed per listener run: bounds one task's work and its XCom.
MAX_JOBS_PER_RUN = 500


def _redis():
    from airflow.providers.redis.hooks.redis import RedisHook

    return RedisHook(redis_conn_id=REDIS_CONN_ID).get_conn()


@dag(
    schedule="@continuous",
    max_active_runs=1,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    default_args={"owner": "tickstock", "retries": 2, "retry_delay": pendulum.duration(seconds=5)},
    tags=["tickstock", "redis"],
)
def redis_job_listener() -> None:
    wait_for_jobs = RedisStreamSensor(
        task_id="wait_for_jobs",
        stream=STREAM,
        group=GROUP,
        redis_conn_id=REDIS_CONN_ID,
        # A quiet hour ends the run normally (nothing is claimed); @continuous starts the next.
        idle_seconds=pendulum.duration(hours=1).total_seconds(),
    )

    @task
    def claim_jobs() -> list[dict[str, Any]]:
        from tickstock.intake import JobStream
        from tickstock.job_status import JobStatusStore
        from tickstock.jobs import claim_jobs as claim

        client = _redis()
        plans = claim(JobStream(client, stream=STREAM, group=GROUP), JobStatusStore(client), limit=MAX_JOBS_PER_RUN)
        return plans

    # Also after a failed trigger task: jobs without a run stay pending (dead-lettered after
    # repeated failures) while those whose run exists are acknowledged.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def acknowledge_jobs(plans: list[dict[str, Any]], ti=None) -> dict[str, int]:
        from tickstock.intake import JobStream
        from tickstock.job_status import JobStatusStore
        from tickstock.jobs import settle_jobs

        def run_state(run_id: str) -> str | None:
            if not ti.get_dr_count(dag_id=TARGET_DAG_ID, run_ids=[run_id]):
                return None
            queued = ti.get_dr_count(dag_id=TARGET_DAG_ID, run_ids=[run_id], states=["queued"])
            return "queued" if queued else "started"

        client = _redis()
        return settle_jobs(JobStream(client, stream=STREAM, group=GROUP), JobStatusStore(client), plans, run_state)

    claimed = claim_jobs()
    # One task creates every run of the batch (one Execution API call per job); run ids are
    # derived from job ids, so a redelivered job finds its run and creates nothing.
    trigger_universe_load = TriggerJobRunsOperator(
        task_id="trigger_universe_load",
        trigger_dag_id=TARGET_DAG_ID,
        runs=claimed,
    )

    wait_for_jobs >> claimed >> trigger_universe_load >> acknowledge_jobs(claimed)


redis_job_listener()
