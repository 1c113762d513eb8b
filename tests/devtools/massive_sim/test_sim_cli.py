"""``python -m massive_sim`` as a developer runs it: ready lines, flags, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import massive_sim
from massive_sim.testing import run_simulator

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONPATH": str(Path(massive_sim.__file__).resolve().parent.parent)}


def test_prints_the_base_url_then_the_ready_line_and_stops_on_sigint():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "massive_sim",
            "--port",
            "0",
            "--now",
            "2025-12-02T21:00:00Z",
            "--api-key",
            "a,b",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert second.startswith("massive_sim ready http://127.0.0.1:")
        url = second.split()[-1]
        assert url in first
        path = "/v2/aggs/ticker/SPY/range/1/day/2025-12-01/2025-12-02"
        for key in ("a", "b"):
            assert requests.get(url + path, params={"apiKey": key}, timeout=10).status_code == 200
        assert requests.get(url + path, params={"apiKey": "sim-key"}, timeout=10).status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_flag_values_exit_2_with_a_message():
    result = subprocess.run(
        [sys.executable, "-m", "massive_sim", "--port", "0", "--rate-limit", "lots"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "rate_limit" in result.stderr


def test_run_simulator_passes_cli_flags():
    with run_simulator(
        now="2025-11-28T18:00:00Z", rate_limit="2/min", retry_after=7, forbidden_timespans=["week"], seed=3
    ) as sim:
        config = sim.config()
        assert config["rate_limit"] == "2/min"
        assert config["forbidden_timespans"] == ["week"]
        assert sim.get("/v2/aggs/ticker/SPY/range/1/week/2025-11-24/2025-11-26").status_code == 403
        assert sim.get("/v2/aggs/ticker/SPY/range/1/day/2025-11-24/2025-11-28").json()["resultsCount"] == 4
        resp = sim.get("/v2/aggs/ticker/SPY/range/1/day/2025-11-24/2025-11-28")
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "7"
    assert sim.process is not None
    assert sim.process.poll() is not None  # stopped on exit
