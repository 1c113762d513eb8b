"""Run the ``redis_job_listener`` DAG back to back in one process, with its trigger inline.

This is what a scheduler does with an ``@continuous`` DAG plus a triggerer, without their
start-up cost: each iteration is one ``dag.test()`` run, whose deferrable sensor runs its trigger
in-process and whose ``TriggerDagRunOperator`` tasks only *create* ``universe_load`` runs (they
stay queued; nothing is loaded). Integration tests start it as a subprocess and kill it at
arbitrary moments to prove that a listener dying mid-run loses nothing.

``python -m tickstock_dev.listener_runner [--runs N]`` (Airflow environment from
``tickstock_dev.airflow_env``; the DAG folder from ``AIRFLOW__CORE__DAGS_FOLDER``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LISTENER_DAG_ID = "redis_job_listener"


def load_listener_dag(dags_folder: Path) -> object:
    """Parse the listener's DAG file the way the DAG processor would."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder / f"{LISTENER_DAG_ID}.py"))
    if bag.import_errors:
        raise RuntimeError(f"cannot import {LISTENER_DAG_ID}: {bag.import_errors}")
    return bag.dags[LISTENER_DAG_ID]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock_dev.listener_runner")
    parser.add_argument("--runs", type=int, default=0, help="stop after N listener runs (0: never)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dag = load_listener_dag(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]))
    done = 0
    while not args.runs or done < args.runs:
        run = dag.test()  # type: ignore[attr-defined]
        done += 1
        log.info("listener run %d finished: %s %s", done, run.run_id, run.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
