"""Fixtures for running the DAGs through Airflow against the simulator, PostgreSQL and Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def massive_conn(sim, monkeypatch):
    """Point the ``massive_default`` connection at the simulator (API key as the password)."""
    from tickstock_dev.airflow_env import massive_connection

    monkeypatch.setenv("AIRFLOW_CONN_MASSIVE_DEFAULT", json.dumps(massive_connection(sim.url, sim.api_key)))
    return sim


@pytest.fixture
def run_dag():
    """Run a DAG with ``dag.test()`` (in-process, real tasks) and return its DagRun."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}

    def run(dag_id: str, conf: dict[str, Any]):
        return bag.get_dag(dag_id).test(run_conf=conf)

    return run
