"""A person's path through the UI: log in, fill universe_load's trigger form, watch it succeed.

Real parts only: the stack ``make airflow`` runs (:class:`tickstock_dev.airflow_local.LocalAirflow`:
``airflow standalone``, the intake bridge, the Massive simulator) on the test session's
PostgreSQL and Redis, driven by a real headless Chromium through Playwright. Debian's chromium
is used (``/usr/bin/chromium``) because Playwright's own browser download is not reachable;
without it the test is skipped with the reason. Screenshots of every step go to
``test-artifacts/browser/`` (git-ignored), also when a step fails.

Expected bars for SCHG and VUG, ``days`` 2, ``as_of`` 2025-12-02 with the simulator's clock at
2025-12-02T21:00:00Z (after the close): 14 hourly (7 per full session), 2 daily, 1 weekly,
1 monthly per symbol.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tickstock_dev.airflow_local import AirflowApi
from tickstock_dev.processes import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tickstock_dev.airflow_local import AirflowInfo

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIM_NOW = "2025-12-02T21:00:00Z"
SYMBOLS = ("SCHG", "VUG")
# table -> (bars per symbol, SQL condition selecting exactly the bars of the requested window)
EXPECTED_PER_SYMBOL = {
    "ohlcv_hourly": (
        14,
        "\"timestamp\" >= TIMESTAMPTZ '2025-12-01 00:00 America/New_York'"
        " AND \"timestamp\" < TIMESTAMPTZ '2025-12-03 00:00 America/New_York'",
    ),
    "ohlcv_daily": (2, "\"date\" IN (DATE '2025-12-01', DATE '2025-12-02')"),
    "ohlcv_weekly": (1, "week_start = DATE '2025-11-30'"),
    "ohlcv_monthly": (1, "month_start = DATE '2025-12-01'"),
}
UI_TIMEOUT_MS = 90_000  # one UI step on a loaded 2-core machine
RUN_TIMEOUT_S = 240.0


def _skip_reason() -> str | None:
    """Why the browser test cannot run here, or None; CI sets TICKSTOCK_REQUIRE_BROWSER to fail instead."""
    if not CHROMIUM.exists():
        return (
            "Debian's chromium is not installed at /usr/bin/chromium (`apt-get install -y chromium`; "
            ".ci/run does it when root): Playwright's own browser download is not reachable here"
        )
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make install)"
    return None


REQUIRED = os.environ.get("TICKSTOCK_REQUIRE_BROWSER") == "1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not REQUIRED and _skip_reason() is not None, reason=_skip_reason() or ""),
]


def test_browser_prerequisites_when_required() -> None:
    """In CI (.ci/run) a missing browser is a failure, not a silent skip."""
    if not REQUIRED:
        pytest.skip("TICKSTOCK_REQUIRE_BROWSER is not set (only .ci/run requires the browser)")
    assert _skip_reason() is None, _skip_reason()


@pytest.fixture(scope="module")
def airflow_stack(service_urls, schema, tmp_path_factory) -> Iterator[AirflowInfo]:
    """The ``make airflow`` stack on the test database and Redis, on a free port.

    Its Airflow home starts from a copy of a pristine migrated metadata DB kept in the state
    folder (migrated once per Airflow version, never run on), so the test does not spend a minute
    migrating, and inherits no runs from other tests (the session's own metadata DB holds
    ``dag.test()`` runs a scheduler would pick up).
    """
    from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db
    from tickstock_dev.airflow_local import LocalAirflow, free_port
    from tickstock_dev.services import state_dir

    template = state_dir() / "airflow-browser-template"
    ensure_airflow_db(airflow_env(template, service_urls))
    home = tmp_path_factory.mktemp("airflow-browser")
    shutil.copy(template / "airflow.db", home / "airflow.db")
    for stamp in template.glob(".migrated-*"):
        shutil.copy(stamp, home / stamp.name)
    # nightly_refresh stays paused as in `make airflow` with a frozen clock: it would load bars
    # of its own into the tables this test counts.
    stack = LocalAirflow(home, urls=service_urls, port=free_port(), sim_now=SIM_NOW, keep_paused=["nightly_refresh"])
    with stack as info:
        yield info


def _find_run(api: AirflowApi, job_id: str) -> dict[str, Any] | None:
    runs = api.call("GET", "/api/v2/dags/universe_load/dagRuns?order_by=-run_after&limit=50")["dag_runs"]
    return next((r for r in runs if (r.get("conf") or {}).get("job_id") == job_id), None)


def _finished_run(api: AirflowApi, job_id: str) -> dict[str, Any] | None:
    run = _find_run(api, job_id)
    return run if run and run["state"] in {"success", "failed"} else None


def _task_states(api: AirflowApi, run_id: str) -> list[str]:
    path = f"/api/v2/dags/universe_load/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
    return sorted(f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in api.call("GET", path)["task_instances"])


@pytest.fixture
def tables(pg_conn):
    """The emptied TickStock tables, emptied again afterwards: later tests expect them empty."""
    from tickstock.staging import clear_all_staged
    from tickstock.timeframes import OHLCV_TABLES

    yield pg_conn
    pg_conn.execute(f"TRUNCATE symbols, {', '.join(t.table for t in OHLCV_TABLES.values())}")
    clear_all_staged(pg_conn)


def test_trigger_universe_load_from_the_ui(airflow_stack: AirflowInfo, tables) -> None:
    from playwright.sync_api import sync_playwright

    info = airflow_stack
    job_id = f"browser-{uuid.uuid4().hex[:10]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        step = "login"
        try:
            page.goto(f"{info.url}/")
            page.get_by_label("Username").fill(info.username)
            page.get_by_label("Password").fill(info.password)
            page.screenshot(path=ARTIFACTS / "01-login.png")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{info.url}/")

            step = "trigger form"
            page.goto(f"{info.url}/dags/universe_load")
            page.get_by_role("button", name="Trigger Dag").click()
            form = page.get_by_role("dialog")
            form.locator("#element_symbols").fill("\n".join(SYMBOLS))
            form.locator("input[name=element_days]").fill("2")
            form.locator("#element_as_of").fill("2025-12-02")
            form.locator("#element_job_id").fill(job_id)
            form.locator("#element_source").fill("browser test")
            page.screenshot(path=ARTIFACTS / "02-trigger-form.png", full_page=True)
            form.get_by_role("button", name="Trigger", exact=True).click()
            page.get_by_text("Dag Run Triggered").first.wait_for()  # the toast may render twice

            step = "run"
            api = AirflowApi(info.url, info.username, info.password)
            run = wait_for(lambda: _find_run(api, job_id), timeout=60, what=f"the run of job {job_id}")
            run_id = run["dag_run_id"]
            run = wait_for(lambda: _finished_run(api, job_id), timeout=RUN_TIMEOUT_S, what=f"run {run_id} to finish")
            page.goto(f"{info.url}/dags/universe_load/runs/{urllib.parse.quote(run_id, safe='')}")
            # The run header shows the run's state as a badge next to the run id.
            page.get_by_text(re.compile(rf"^{run['state']}$", re.IGNORECASE)).first.wait_for()
            page.get_by_text("Task Instances").first.wait_for()
            page.screenshot(path=ARTIFACTS / "03-run.png", full_page=True)
        except Exception:
            page.screenshot(path=ARTIFACTS / f"failed-at-{step.replace(' ', '-')}.png", full_page=True)
            raise
        finally:
            browser.close()
    assert run["state"] == "success", f"run {run_id} {run['state']}: {_task_states(api, run_id)}"
    assert (ARTIFACTS / "03-run.png").read_bytes().startswith(b"\x89PNG")

    # Every requested bar is there, and nothing else was written (pg_conn emptied the tables).
    counts = {
        (table, symbol): tables.execute(
            f"SELECT count(*) FILTER (WHERE {window}), count(*) FROM {table} WHERE symbol = %s", (symbol,)
        ).fetchone()
        for table, (_, window) in EXPECTED_PER_SYMBOL.items()
        for symbol in SYMBOLS
    }
    assert counts == {(t, s): (n, n) for t, (n, _) in EXPECTED_PER_SYMBOL.items() for s in SYMBOLS}
    # Not the redis_client fixture: it empties the database the running stack's listener uses.
    import redis

    status = redis.Redis.from_url(info.redis_url, decode_responses=True).hgetall(f"tickstock.jobs.status:{job_id}")
    assert status["status"] == "completed", status
    print(f"browser test: login to successful run in {time.monotonic() - started:.0f}s; screenshots in {ARTIFACTS}")
