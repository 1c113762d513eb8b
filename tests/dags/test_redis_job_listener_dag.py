from __future__ import annotations

from pathlib import Path

import pytest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "redis_job_listener.py"


@pytest.fixture(scope="module")
def listener():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors
    return bag.dags["redis_job_listener"]


def test_runs_continuously_one_at_a_time(listener):
    assert type(listener.timetable).__name__ == "ContinuousTimetable"
    assert listener.max_active_runs == 1
    assert listener.catchup is False
    assert listener.default_args["retries"] >= 2


def test_task_chain_acknowledges_only_after_the_runs(listener):
    tasks = listener.task_dict
    assert set(tasks) == {"wait_for_jobs", "claim_jobs", "trigger_universe_load", "acknowledge_jobs"}
    assert tasks["claim_jobs"].upstream_task_ids == {"wait_for_jobs"}
    assert tasks["trigger_universe_load"].upstream_task_ids == {"claim_jobs"}
    assert tasks["acknowledge_jobs"].upstream_task_ids == {"claim_jobs", "trigger_universe_load"}
    assert tasks["acknowledge_jobs"].trigger_rule == "all_done"


def test_trigger_task_creates_universe_load_runs_from_the_claimed_jobs(listener):
    trigger = listener.task_dict["trigger_universe_load"]
    assert trigger.trigger_dag_id == "universe_load"
    assert trigger.runs.operator.task_id == "claim_jobs"  # an XComArg, resolved at run time
