"""Run the simulator as a separate process from tests, the demo and benchmarks.

``run_simulator(**cli_options)`` starts ``python -m massive_sim --port 0 ...``, waits for its ready
line and yields a :class:`SimHandle`. As a pytest plugin (``pytest_plugins =
["massive_sim.testing"]``) this module also provides the session fixture ``massive_sim`` (one
process for the whole run, clock 2025-12-02T21:00:00Z) and the function fixture ``sim`` (the same
process, reset before each test). A real process, not an in-process app, so tests exercise the
same sockets, event loop and start-up path a developer's ``make sim`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from massive_sim import DEFAULT_API_KEY, READY_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator

TEST_NOW = "2025-12-02T21:00:00Z"
START_TIMEOUT_S = 60.0


class SimulatorError(RuntimeError):
    """The simulator process failed to start or an admin call failed."""


class SimHandle:
    """A running simulator: its URL and API key, and its admin endpoints as methods."""

    def __init__(self, url: str, api_key: str, process: subprocess.Popen[str] | None = None) -> None:
        self.url = url
        self.api_key = api_key
        self.process = process

    def __repr__(self) -> str:
        return f"SimHandle(url={self.url!r})"

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise SimulatorError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def get(self, path: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
        """GET an API path (or a full next_url) with the Bearer key; returns the requests.Response."""
        import requests

        url = path if path.startswith("http") else f"{self.url}{path}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return requests.get(url, params=params, headers=headers, timeout=timeout)

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime (names as the CLI flags with underscores); returns all knobs."""
        return self._admin("POST", "/_sim/config", knobs)

    def config(self) -> dict[str, Any]:
        return self._admin("GET", "/_sim/config")

    def reset(self) -> dict[str, Any]:
        """Knobs back to their start-up values, statistics and fault dice cleared."""
        return self._admin("POST", "/_sim/reset", {})

    def stats(self, requests: bool = False) -> dict[str, Any]:
        """Request counts by endpoint/status, arrival times, max requests in any 1 s window."""
        return self._admin("GET", "/_sim/stats" + ("?requests=1" if requests else ""))


def _argv(options: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


@contextlib.contextmanager
def run_simulator(**cli_options: Any) -> Iterator[SimHandle]:
    """Start a simulator process (``--port 0`` unless given) and stop it on exit.

    Keyword arguments are CLI flags with underscores: ``run_simulator(now="2025-12-02T21:00:00Z",
    rate_limit="100/s", duplicate_bar=True)``. ``api_key`` may be a string or a list.
    """
    options = {"port": 0, **cli_options}
    keys = options.pop("api_key", None)
    keys = [keys] if isinstance(keys, str) else list(keys or [DEFAULT_API_KEY])
    argv = [sys.executable, "-m", "massive_sim", *_argv(options), "--api-key", ",".join(keys)]
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            url = _wait_ready(proc, stderr)
            yield SimHandle(url, keys[0], proc)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[str], stderr: Any) -> str:
    """Read stdout until the ready line; keep draining it afterwards so the pipe never fills."""
    assert proc.stdout is not None
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not found and line.startswith(READY_PREFIX):
                found.append(line[len(READY_PREFIX) :].strip())
                ready.set()
        ready.set()  # EOF: the process ended

    threading.Thread(target=pump, name="massive_sim-stdout", daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or not found:
        _stop(proc)
        stderr.seek(0)
        raise SimulatorError(f"massive_sim did not become ready (exit {proc.poll()}):\n{stderr.read()[-4000:]}")
    return found[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def massive_sim() -> Iterator[SimHandle]:
    """One simulator process for the test session, clock fixed at 2025-12-02T21:00:00Z."""
    with run_simulator(now=TEST_NOW) as handle:
        yield handle


@pytest.fixture
def sim(massive_sim: SimHandle) -> SimHandle:
    """The session simulator with knobs and statistics reset before the test."""
    massive_sim.reset()
    return massive_sim


__all__ = ["TEST_NOW", "SimHandle", "SimulatorError", "run_simulator"]
