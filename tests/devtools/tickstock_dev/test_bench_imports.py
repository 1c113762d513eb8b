"""The DAG files parse without the libraries only their tasks need (no timing: the imports themselves)."""

from __future__ import annotations

from tickstock_dev import bench_imports


def test_parsing_the_dag_files_loads_no_http_stack_driver_or_calendar():
    # before the pool name moved out of hooks.massive: ['aiohttp', 'psycopg', 'requests']
    assert bench_imports.measure()["heavy"] == []
