"""Celery settings for TickStock's workers: Airflow's defaults, and task processes that start warm.

Under the CeleryExecutor every task instance runs in a process forked from the worker (Celery's
prefork pool, then the task supervisor's fork). What the worker imported before forking is
inherited for nothing; what it did not, every task process imports again. TickStock's tasks need
the NYSE calendar, and ``exchange_calendars`` pulls in pandas and numpy: 6-9 s per task process on
two busy cores, paid by ``plan_load``, every hourly ``fetch_bars`` and the check, i.e. several times
on the critical path of the smallest job. So the worker imports the task modules and builds the
calendar once, when it starts. Two more things every task process otherwise redoes are done then
too (profiled on ``make cluster``, eight task processes starting at once on 2 cores): loading
Airflow's plugins folder, which the task runner's listener manager walks and imports afresh in
each process (0.2-0.75 s per task instance), and reading the migrations for the schema's head
revision (about 1 s of ``plan_load``). Like the imports, both are read once per worker start:
restart the workers after changing ``plugins/`` or the migrations, as after any deploy.

Point ``[celery] celery_config_options`` at :data:`CELERY_CONFIG` (``make cluster`` and the compose
file do). The preload runs on Celery's ``worker_init`` signal, which fires in the worker's main
process before the pool forks, and only in workers: the scheduler and the api-server also read
this configuration and stay as lean as before.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

#: What a TickStock task process imports: the task runner, the providers the hooks build on, the
#: task modules (which import the domain modules lazily, so those are listed too).
PRELOAD_MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.http.hooks.http",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.redis.hooks.redis",
    "psycopg",
    "tickstock_airflow.tasks",
    "tickstock_airflow.refresh_tasks",
    "tickstock_airflow.hooks.massive",
    "tickstock_airflow.operators.massive",
    "tickstock.bars",
    "tickstock.checks",
    "tickstock.grouped_daily",
    "tickstock.job_status",
    "tickstock.plan",
    "tickstock.refresh",
    "tickstock.results",
    "tickstock.schema",
    "tickstock.splits",
    "tickstock.staging",
    "tickstock.symbols",
    "tickstock.windows",
)

#: Airflow's Celery configuration, unchanged: this module only adds the worker's preload.
CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG}


def preload() -> float:
    """Import :data:`PRELOAD_MODULES`, load the plugins, build the NYSE calendar and read the
    schema's head revision; return the seconds it took."""
    started = time.perf_counter()
    for name in PRELOAD_MODULES:
        importlib.import_module(name)
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    from tickstock.calendar import nyse
    from tickstock.schema import head_revision

    integrate_macros_plugins()  # cached, and it loads (and caches) the plugins every task process needs
    nyse()
    head_revision()
    return time.perf_counter() - started


@worker_init.connect
def _warm_worker(**_: Any) -> None:
    try:
        seconds = preload()
    except Exception:
        # Only start-up time is lost: a task that needs the failing module fails with the same
        # error, in its own log, where it can be acted on.
        log.warning("TickStock task modules could not be preloaded; task processes import them", exc_info=True)
        return
    log.info("TickStock task modules and the NYSE calendar preloaded in %.1f s", seconds)
