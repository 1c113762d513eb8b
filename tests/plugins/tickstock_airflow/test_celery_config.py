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
    from airflow.sdk import plugins_manager
    from tickstock.schema import head_revision
    cached_before = [plugins_manager._get_plugins.cache_info().currsize, head_revision.cache_info().currsize]
    worker_init.send(sender=None)
    from tickstock.calendar import nyse
    plugins, _ = plugins_manager._get_plugins()
    print(json.dumps({
        "before": before,
        "cached_before": cached_before,
        "missing": sorted(m for m in PRELOAD_MODULES + ("exchange_calendars",) if m not in sys.modules),
        "calendars_built": nyse.cache_info().currsize,
        "plugins_loads": plugins_manager._get_plugins.cache_info().misses,
        "plugins": sorted(p.name for p in plugins),
        "head_revisions_read": head_revision.cache_info().misses,
    }))
    """
)


def test_worker_init_imports_the_task_modules_and_builds_the_calendar():
    done = subprocess.run([sys.executable, "-c", _WORKER_START], capture_output=True, text=True, check=True)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert "exchange_calendars" not in state["before"]
    assert state["cached_before"] == [0, 0]
    assert state["missing"] == []
    assert state["calendars_built"] == 1
    # Loaded once, by the signal (the test's own call after it was a cache hit): forked task
    # processes inherit Airflow's cached plugins instead of walking and importing the plugins
    # folder each (``_get_plugins`` is private to Airflow; this pins the behaviour we rely on).
    assert state["plugins_loads"] == 1
    assert state["plugins"] == []  # the folder holds hooks and operators, no AirflowPlugin; walking it imports them all
    assert state["head_revisions_read"] == 1


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
