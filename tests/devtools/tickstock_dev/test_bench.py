"""Smoke tests of the ``make bench`` harness at tiny sizes: it runs, and writes a complete note.

No timing assertions: numbers on a shared test machine mean nothing. In ``make test``: the upsert
and simulator measurements and the cluster path at ``--quick`` sizes for targets 1, 2, 5 and 7
(one ``make cluster`` start, a 5-symbol load and a refresh: a few minutes). With ``-m cluster``
(``make test-cluster``): the cluster's other measurements (the Redis job, the speed-up and its
``dags test`` row) and the optional ``dags test`` refresh at 5 symbols (not part of ``make bench``;
the refresh's exact request and row counts are also asserted by the integration tests and by the
cluster refresh above), kept out of ``make test`` for its two minutes.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tickstock_dev import bench, bench_baseline, bench_report, services

pytestmark = pytest.mark.integration


def test_quick_bench_writes_the_note(tmp_path):
    out = tmp_path / "benchmarks.md"
    assert bench.main(["--quick", "--only", "upsert,sim", "--no-profile", "--output", str(out)]) == 0
    text = out.read_text()
    assert "## Machine" in text
    assert "## 6. Bulk upsert vs raw COPY" in text
    assert "## A5. Simulator throughput" in text
    assert "| 6 | upsert (fresh) vs COPY | >= 0.5 of COPY |" in text
    # the headline table always has issue 15's seven rows, measured or not
    for number in range(1, 8):
        assert f"\n| {number} | " in text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert (
        "| 1 | 5,000 symbols × 1 year at 100 req/s, 100 ms: DagRun ÷ (requests ÷ 100) | <= 1.2 | not measured" in text
    )
    assert "CPU probe (10,000,000 iterations of a pure-Python loop on one core, best of 1;" in text
    assert str(services.REPO_ROOT) not in text  # no machine paths in a committed note


@pytest.mark.cluster
def test_quick_refresh_measurement_makes_exactly_the_expected_requests(tmp_path):
    """Measurement 6 end to end at 5 symbols: a load, then two nightly_refresh runs through Airflow."""
    out = tmp_path / "benchmarks.md"
    assert bench.main(["--quick", "--only", "dagstest-refresh", "--no-profile", "--output", str(out)]) == 0
    text = out.read_text()
    assert "## A6. Nightly refresh of a 5-symbol universe, one new session" in text
    # 3 range requests per symbol (open week, open month, hourly window) + 2 grouped-daily sessions
    assert "| A6 | refresh requests, next session | = 17 (3 per symbol + 2 grouped) | 17.0 (1 run) | pass |" in text
    assert "| A6 | refresh requests, rerun, same session | = 17 (3 per symbol + 2 grouped) | 17.0 (1 run) |" in text
    assert "| A6 | rerun changes no row | = 0 rows | 0.00 (1 run) | pass |" in text
    assert "Rows added day 5, hour 35, month 0, week 0" in text  # the new session, 7 regular hours each


@pytest.mark.timeout(900)
def test_quick_cluster_bench_measures_the_load_and_the_refresh(tmp_path):
    """Targets 1, 2, 7 and 5 on make cluster at 5 symbols: the note has each row and its profile."""
    out = tmp_path / "benchmarks.md"
    assert bench.main(["--quick", "--only", "load,refresh", "--no-profile", "--output", str(out)]) == 0
    text = out.read_text()
    assert "FAILED" not in text, text
    assert "make cluster: CeleryExecutor, 2 workers × concurrency 6" in text
    assert "| 1 | 5 sym at 100/s, 100 ms: DagRun ÷ (requests ÷ 100) | <= 1.2 |" in text
    assert "| 2 | 5 sym: API requests per symbol, fresh database | <= 4.06 |" in text
    assert "| 7 | peak RSS of any task in the 5-symbol load | < 1 GiB |" in text
    assert "| 5 | nightly_refresh, 5 sym at 100/s: DagRun ÷ (requests ÷ 100) | <= 1.2 |" in text
    summary = text.split("## Targets", 1)[1].split("\n## ", 1)[0].splitlines()
    for number in (3, 4, 6):
        row = next(line for line in summary if line.startswith(f"| {number} | "))
        assert "| not measured in this run |" in row
    load = text.split("## 1. ", 1)[1].split("\n## ", 1)[0]
    assert "Peak RSS per task id (MiB): " in load
    assert "| fetch_bars | " in load  # the per-task profile
    assert "Requests/s in 10-s steps" in load
    refresh = text.split("## 5. ", 1)[1].split("\n## ", 1)[0]
    assert "| nightly_refresh DagRun | s | 1 |" in refresh
    assert str(services.REPO_ROOT) not in text


@pytest.mark.cluster
@pytest.mark.timeout(1200)
def test_quick_cluster_bench_measures_the_job_and_the_speedup(tmp_path):
    """Targets 3 and 4 (and the dags-test row) on make cluster at --quick sizes."""
    out = tmp_path / "benchmarks.md"
    assert bench.main(["--quick", "--only", "job,speedup,dagstest", "--no-profile", "--output", str(out)]) == 0
    text = out.read_text()
    assert "FAILED" not in text, text
    assert "| 3 | speed-up, 3 sym, 100 ms | >= 5× |" in text
    assert "| 4 | small job, PUBLISH → completed (p50) | <= 12 s |" in text
    assert "## 3b. Secondary: the same 3 symbols through `airflow dags test` (100 ms)" in text
    job = text.split("## 4. ", 1)[1].split("\n## ", 1)[0]
    assert "| PUBLISH → DagRun start, 100 ms | s | 1 |" in job


def test_design_document_loader_loads_every_timeframe(service_urls, schema, massive_sim, redis_client):
    import psycopg

    from tickstock_dev.bench_airflow import reset_load_tables, sim_symbols

    reset_load_tables(service_urls.postgres_url)
    massive_sim.reset()
    loader = bench_baseline.DesignDocLoader(
        massive_sim.url, massive_sim.api_key, service_urls.postgres_url, redis_client, datetime(2025, 12, 2, 16)
    )
    symbols = sim_symbols(2)
    try:
        result = loader.handle_csv_universe_load({"job_id": "smoke", "symbols": symbols})
        assert result["symbols_loaded"] == 2, result["errors"]
        # Per symbol: ticker details + 4 sequential Custom Bars calls, as the design document does.
        assert massive_sim.stats()["by_endpoint"]["aggs"] == 8
        assert massive_sim.stats()["by_endpoint"]["ticker_details"] == 2
        with psycopg.connect(service_urls.postgres_url) as conn:
            for table in ("ohlcv_hourly", "ohlcv_daily", "ohlcv_weekly", "ohlcv_monthly"):
                assert conn.execute(f"SELECT count(DISTINCT symbol) FROM {table}").fetchone()[0] == 2
    finally:
        reset_load_tables(service_urls.postgres_url)  # later tests expect empty tables


def test_figures_and_ratios_summarise_runs():
    fig = bench_report.Figure("x", "s", (3.0, 1.0, 2.0))
    assert (fig.min, fig.median, fig.max) == (1.0, 2.0, 3.0)
    assert bench_report.ratios([4.0, 9.0], [2.0, 3.0]) == [2.0, 3.0]
    assert bench_report.triple(fig) == "2.00 (1.00–3.00)"


def test_profile_summary_folds_collapsed_stacks():
    from tickstock_dev.bench_profile import parse_raw

    raw = (
        "main (/x/tickstock/a.py:1);stage (/x/tickstock/staging.py:5);copy (/x/psycopg/copy.py:9) 30\n"
        "main (/x/tickstock/a.py:1);merge (/x/tickstock/staging.py:9) 10\n"
    )
    profile = parse_raw(raw, rate=100)
    assert profile.total == 40
    assert profile.top_self(1) == [("psycopg/copy.copy", 30)]
    assert ("tickstock/staging.stage", 30) in profile.top_inclusive()
    assert "/x/" not in profile.markdown("t")
