"""The Celery workers' preload: task processes fork from a worker that already imported their modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tickstock_airflow import celery_config

# A fresh interpreter, so "already imported" means imported by the signal, not by this test run.
_WORKER_START = textwrap.dedent(
    """
    import json, sys
    from celery.signals import worker_init
    from tickstock_airflow.celery_config import PRELOAD_MODULES
    before = sorted(m for m in PRELOAD_MODULES + ("exchange_calendars",) if m in sys.modules)
    worker_init.send(sender=None)
    from tickstock.calendar import nyse
    print(json.dumps({
        "before": before,
        "missing": sorted(m for m in PRELOAD_MODULES + ("exchange_calendars",) if m not in sys.modules),
        "calendars_built": nyse.cache_info().currsize,
    }))
    """
)


def test_worker_init_imports_the_task_modules_and_builds_the_calendar():
    done = subprocess.run([sys.executable, "-c", _WORKER_START], capture_output=True, text=True, check=True)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert "exchange_calendars" not in state["before"]
    assert state["missing"] == []
    assert state["calendars_built"] == 1


def test_the_configuration_is_airflows_default():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    assert celery_config.CELERY_CONFIG == DEFAULT_CELERY_CONFIG


def test_a_module_that_fails_to_import_is_reported_and_the_worker_still_starts(monkeypatch, caplog):
    monkeypatch.setattr(celery_config, "PRELOAD_MODULES", ("tickstock_airflow.no_such_module",))
    with caplog.at_level("WARNING", logger=celery_config.__name__):
        celery_config._warm_worker(sender=None)
    [record] = caplog.records
    assert "could not be preloaded" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ModuleNotFoundError
