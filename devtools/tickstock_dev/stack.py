"""What ``make airflow`` and ``make cluster`` share: start the parts, wait for them, stop them all.

:class:`AirflowStack` is the common base of :class:`tickstock_dev.airflow_local.LocalAirflow`
(``airflow standalone`` on SQLite) and :class:`tickstock_dev.cluster.LocalCluster` (the separate
Airflow components with CeleryExecutor workers on PostgreSQL): the Massive simulator, the Redis
intake bridge, the wait for the API and the DAG parse, the unpausing, and the stop of everything
that was started, newest first. :func:`run_foreground` is both commands' main loop: it runs a stack
until Ctrl-C, SIGTERM or a component's own exit, and then shuts down with further SIGINT/SIGTERM
ignored, so a second signal (a group kill reaches ``make`` *and* Python; an impatient second
Ctrl-C) cannot cut the clean-up short and leave components running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tickstock_dev.processes import ProcessGroup, StartupError, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator
    from types import FrameType

    from massive_sim.testing import SimHandle

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
MASSIVE_POOL = "massive_api"
# First start on a fresh home migrates the DB and parses every DAG: minutes on 2 cores.
READY_TIMEOUT_S = 300.0
FINAL_RUN_STATES = frozenset({"success", "failed"})
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/version", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def dag_ids_in(dags_folder: Path) -> set[str]:
    """Return the DAG ids of a folder: one DAG per file, named like the file (the style rule)."""
    return {p.stem for p in dags_folder.glob("*.py") if not p.name.startswith("_")}


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


class AirflowApi:
    """Just enough of Airflow's REST API, authenticated as the admin (``POST /auth/token``)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        token = self.call("POST", "/auth/token", {"username": username, "password": password}, auth=False)
        self.token = token["access_token"]

    def call(self, method: str, path: str, body: dict[str, object] | None = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.call("GET", "/api/v2/dags?limit=1000")["dags"]}

    def import_errors(self) -> list[str]:
        errors = self.call("GET", "/api/v2/importErrors?limit=100")["import_errors"]
        return [f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in errors]

    def try_set_paused(self, dag_id: str, paused: bool) -> bool:
        """Pause or unpause ``dag_id``; return False on a server error, for the caller to retry.

        SQLite under a busy scheduler answers "database is locked" now and then (a 500 here).
        """
        try:
            self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            log.warning("pausing/unpausing %s: HTTP %d, trying again", dag_id, exc.code)
            return False
        return True

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        """Create a manual run of ``dag_id`` with ``conf``; return its run id."""
        body: dict[str, object] = {"logical_date": None, "conf": conf}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float) -> dict[str, Any]:
        """Wait until the run is ``success`` or ``failed``; return the run (the caller judges the state).

        Polls once a second: a run is a scheduler loop or more away from its next state anyway.
        """
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in FINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(1.0)


class Stoppable(Protocol):
    """What :func:`run_foreground` drives."""

    stopped: list[str]

    def start(self) -> Any: ...
    def stop(self) -> list[str]: ...
    def first_exited(self) -> str | None: ...


class AirflowStack:
    """Base of the local stacks: simulator, intake bridge, readiness, unpausing, stop of it all.

    Subclasses implement :meth:`_start`, starting their processes in :attr:`processes` (each a
    process group of its own) and entering other resources into :attr:`exit_stack`.

    :param sim_now: the simulator's clock (``None``: real time); ignored with ``massive_url``
    :param massive_url: a real Massive base URL to use instead of the simulator
    :param massive_api_key: the key for ``massive_url``
    :param keep_paused: DAG ids left paused; every other DAG in the folder is unpaused once parsed
    :param simulator: makes the simulator context (default :func:`massive_sim.testing.run_simulator`
        with ``sim_now``); the bench passes one with a warm day-bar cache
    """

    def __init__(
        self,
        *,
        sim_now: str | None,
        massive_url: str | None = None,
        massive_api_key: str | None = None,
        keep_paused: Collection[str] = (),
        simulator: Callable[[], contextlib.AbstractContextManager[SimHandle]] | None = None,
    ) -> None:
        self.sim_now = sim_now
        self.massive_url = massive_url
        self.massive_api_key = massive_api_key
        self.keep_paused = tuple(keep_paused)
        self._simulator = simulator
        self.sim: SimHandle | None = None
        self.processes = ProcessGroup()
        self.exit_stack = contextlib.ExitStack()
        # Everything stopped so far, also by a failed start() that cleaned up after itself.
        self.stopped: list[str] = []

    def start(self) -> Any:
        """Start every part and return once the API answers; on any failure stop what started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Any:
        raise NotImplementedError

    def massive_endpoint(self) -> tuple[str, str]:
        """Start the simulator unless a real Massive URL was given; return (base URL, API key)."""
        if self.massive_url is not None:
            return self.massive_url, self.massive_api_key or ""
        if self._simulator is not None:
            sim = self.exit_stack.enter_context(self._simulator())
        else:
            from massive_sim.testing import run_simulator

            sim = self.exit_stack.enter_context(run_simulator(now=self.sim_now or None))
        self.sim = sim
        return sim.url, sim.api_key

    def start_intake_bridge(self, redis_url: str, env: dict[str, str], log_path: Path) -> bool:
        """Start ``python -m tickstock.intake bridge`` on TickStock's Redis; False when not installed."""
        if importlib.util.find_spec("tickstock.intake") is None:
            log.warning("tickstock.intake is not installed: Redis job messages will not be bridged")
            return False
        self.processes.start(
            "intake bridge",
            [sys.executable, "-m", "tickstock.intake", "bridge", "--redis-url", redis_url],
            env=env,
            log_path=log_path,
        )
        return True

    def wait_for_api(self, url: str, password_file: Path) -> str:
        """Wait for the api-server and its generated admin password; return the password."""
        wait_for(
            lambda: password_file.exists() and api_ready(url),
            timeout=READY_TIMEOUT_S,
            what=f"the Airflow API on {url}",
            alive=self.processes.check_alive,
        )
        return json.loads(password_file.read_text())[ADMIN_USER]

    def unpause_parsed_dags(self, api: AirflowApi, dags_folder: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Wait until every DAG file is parsed, then unpause all but ``keep_paused``.

        Waiting for the parse also makes "ready" mean the DAGs can be triggered; a DAG that does
        not appear fails the start, naming the import errors, instead of leaving an empty UI.
        """
        expected = dag_ids_in(dags_folder)

        def parsed() -> bool:
            try:
                missing = expected - api.dag_ids()
            except urllib.error.HTTPError as exc:  # SQLite busy: ask again on the next poll
                if exc.code < 500:
                    raise
                return False
            return not missing

        try:
            wait_for(
                parsed,
                timeout=READY_TIMEOUT_S,
                what=f"DAGs {sorted(expected)} to be parsed",
                alive=self.processes.check_alive,
            )
        except StartupError as exc:
            # Import errors are only conclusive now: a reused home keeps those of earlier parses.
            errors = api.import_errors()
            raise StartupError("\n".join([str(exc), *(f"import error: {e}" for e in errors)])) from None
        unpaused = tuple(sorted(expected - set(self.keep_paused)))
        paused = tuple(sorted(expected & set(self.keep_paused)))
        # (a home reused from an earlier start may have a kept-paused DAG unpaused)
        for dag_id, state in [*((d, False) for d in unpaused), *((d, True) for d in paused)]:
            wait_for(
                lambda dag_id=dag_id, state=state: api.try_set_paused(dag_id, state),
                timeout=60,
                what=f"{dag_id} to be {'paused' if state else 'unpaused'}",
            )
        return unpaused, paused

    def first_exited(self) -> str | None:
        """Return the name of a component that has exited on its own, if any."""
        child = self.processes.first_exited()
        return None if child is None else f"{child.name} (exit {child.process.returncode}, log {child.log_path})"

    def stop(self) -> list[str]:
        """Stop every process this object started (newest first), then the simulator; return names."""
        stopped = self.processes.stop()
        simulated = self.sim is not None
        self.exit_stack.close()
        self.sim = None
        if simulated:
            stopped.append("massive simulator")
        self.stopped += stopped
        return stopped

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -------------------------------------------------------------------------------------------


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    """First SIGINT/SIGTERM: ignore every further one, then unwind into the clean-up.

    Ignoring is done *here*, before the exception propagates, so no second signal can land
    between this one and the ``finally`` that stops the stack (also when it arrives while
    :meth:`AirflowStack.start` is still starting things and stops them itself).
    """
    ignore_stop_signals()
    raise KeyboardInterrupt


def ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into KeyboardInterrupt and ignore the rest until the block ends."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _stop_requested)
    try:
        yield
    finally:
        ignore_stop_signals()  # also on a normal exit: the clean-up after this block runs to its end


def run_foreground(
    stack: Stoppable,
    *,
    command: str,
    starting: str,
    banner: Callable[[Any], str],
) -> int:
    """Start ``stack``, print its banner, run until a signal or a component's exit, stop it all.

    :param command: the make target, for messages (``make airflow``)
    :param starting: the line printed before starting
    :param banner: the text printed once the stack is ready, from what ``start()`` returned
    :return: the exit code: 0 after a signal, 1 when starting failed or a component exited
    """
    exit_code = 0
    try:
        with stop_on_signals():
            try:
                print(starting, flush=True)
                info = stack.start()
                print(banner(info), flush=True)
                exited = wait_for(stack.first_exited, timeout=float("inf"), what="a component to exit")
                print(f"\n{exited} stopped on its own; shutting down the rest.", file=sys.stderr)
                exit_code = 1
            except KeyboardInterrupt:
                print("\nStopping ...", flush=True)
            except StartupError as exc:
                print(f"\n{command} failed: {exc}", file=sys.stderr)
                exit_code = 1
    finally:
        stack.stop()
        print(f"Stopped: {', '.join(stack.stopped) or 'nothing'}.", flush=True)
    return exit_code


def environment_without_airflow() -> dict[str, str]:
    """This process's environment minus any Airflow configuration, plus the venv on PATH.

    Every component gets exactly the stack's ``AIRFLOW__*`` settings, never a developer's shell
    leftovers; ``airflow standalone`` runs its components as ``airflow ...`` from PATH.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.pop("AIRFLOW_CONFIG", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
