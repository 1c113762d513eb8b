"""``make airflow``: the whole loader on one machine, as a user sees it, until Ctrl-C.

Starts, in order, only what is missing: the embedded PostgreSQL and Redis (unless
``TICKSTOCK_POSTGRES_URL`` / ``TICKSTOCK_REDIS_URL`` point at servers), the Massive simulator
(unless ``MASSIVE_API_KEY`` is set, then the real API at ``MASSIVE_BASE_URL``), the Redis intake
bridge (``python -m tickstock.intake bridge``) and ``airflow standalone`` (scheduler, DAG
processor, api-server/UI, triggerer; LocalExecutor on SQLite in ``.state/airflow``) with the
``massive_api`` pool created and the DAGs unpaused once parsed. It then prints the UI's URL and the admin
password. Ctrl-C or SIGTERM stops everything it started, newest first, each as a whole process
group (:mod:`tickstock_dev.processes`); servers that were already running are left running.

The simulator's clock defaults to 2025-12-02T21:00:00Z (after that day's close), so the README
examples (``as_of`` 2025-12-02) load the same bars every time; ``TICKSTOCK_SIM_NOW=`` (empty)
runs it on real time. With the clock frozen, ``nightly_refresh`` stays paused: it refreshes
*today*, which a simulator living on 2025-12-02 does not have. The browser test drives the same
:class:`LocalAirflow`.

Settings (environment, or the matching options of ``python -m tickstock_dev.airflow_local``):
``TICKSTOCK_AIRFLOW_PORT`` (8080), ``TICKSTOCK_SIM_NOW``, ``MASSIVE_API_KEY``/``MASSIVE_BASE_URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db
from tickstock_dev.processes import ProcessGroup, StartupError, wait_for

if TYPE_CHECKING:
    from collections.abc import Collection
    from types import FrameType

log = logging.getLogger(__name__)

PORT_ENV = "TICKSTOCK_AIRFLOW_PORT"
SIM_NOW_ENV = "TICKSTOCK_SIM_NOW"
DEFAULT_PORT = 8080
DEFAULT_SIM_NOW = "2025-12-02T21:00:00Z"
DEFAULT_MASSIVE_URL = "https://api.massive.com"
# Refreshes "today": with the simulator's clock frozen in the past there is nothing to refresh,
# so its first scheduled run would only fail its bar-count check.
CLOCK_DEPENDENT_DAGS = ("nightly_refresh",)
MASSIVE_POOL = "massive_api"
MASSIVE_POOL_SLOTS = 8
ADMIN_USER = "admin"
# First start on a fresh SQLite home migrates the DB and parses every DAG: minutes on 2 cores.
READY_TIMEOUT_S = 300.0
# Keep the executor within what a laptop (or a 2-core CI box) can run at once.
PARALLELISM = 8


@dataclass(frozen=True)
class AirflowInfo:
    """What a person (or a test) needs to use the running stack."""

    url: str
    username: str
    password: str
    airflow_home: Path
    postgres_url: str
    redis_url: str
    massive_url: str
    logs: dict[str, Path]
    unpaused: tuple[str, ...]
    paused: tuple[str, ...]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/version", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def dag_ids_in(dags_folder: Path) -> set[str]:
    """Return the DAG ids of a folder: one DAG per file, named like the file (the style rule)."""
    return {p.stem for p in dags_folder.glob("*.py") if not p.name.startswith("_")}


class AirflowApi:
    """Just enough of Airflow's REST API, authenticated as the standalone admin."""

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


class LocalAirflow:
    """Embedded services + simulator + intake bridge + ``airflow standalone``, stopped as one.

    :param airflow_home: Airflow's home (SQLite DB, logs, generated admin password)
    :param urls: TickStock's PostgreSQL/Redis; default: :func:`tickstock_dev.services.ensure_services`
    :param port: UI/API port (default :data:`DEFAULT_PORT`)
    :param sim_now: the simulator's clock (``None``: real time); ignored with ``massive_url``
    :param massive_url: a real Massive base URL to use instead of the simulator
    :param massive_api_key: the key for ``massive_url``
    :param keep_paused: DAG ids left paused; every other DAG in the folder is unpaused once parsed
        (DAGs are created paused, so nothing is scheduled before this choice is applied)
    """

    def __init__(
        self,
        airflow_home: Path,
        *,
        urls: services.ServiceUrls | None = None,
        port: int = DEFAULT_PORT,
        sim_now: str | None = DEFAULT_SIM_NOW,
        massive_url: str | None = None,
        massive_api_key: str | None = None,
        keep_paused: Collection[str] = (),
    ) -> None:
        self.airflow_home = airflow_home
        self.keep_paused = tuple(keep_paused)
        self.urls = urls
        self.port = port
        self.sim_now = sim_now
        self.massive_url = massive_url
        self.massive_api_key = massive_api_key
        self.processes = ProcessGroup()
        self._exit_stack = contextlib.ExitStack()
        self._started_services: services.ServiceUrls | None = None
        self.info: AirflowInfo | None = None

    # ---------------------------------------------------------------------------------------

    def start(self) -> AirflowInfo:
        """Start every part and return once the UI answers; on any failure stop what started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> AirflowInfo:
        if port_in_use(self.port):
            raise StartupError(f"port {self.port} is in use; set {PORT_ENV} to another port")
        urls = self.urls
        if urls is None:
            urls = services.ensure_services()
            self._started_services = urls
        massive_url, api_key = self.massive_url, self.massive_api_key
        if massive_url is None:
            from massive_sim.testing import run_simulator

            sim = self._exit_stack.enter_context(run_simulator(now=self.sim_now or None))
            massive_url, api_key = sim.url, sim.api_key
        env = self.environment(urls, massive_url, api_key or "")
        logs = self.airflow_home / "logs"
        # Loads never change the schema (plan_load only checks it): upgrade before anything runs.
        from tickstock.schema import upgrade

        upgrade(urls.postgres_url)
        ensure_airflow_db(env)
        subprocess.run(
            [self._airflow(), "pools", "set", MASSIVE_POOL, str(MASSIVE_POOL_SLOTS), "Massive API fetches"],
            env=env,
            check=True,
            capture_output=True,
        )
        log_paths = {}
        if importlib.util.find_spec("tickstock.intake") is not None:
            bridge_log = logs / "intake-bridge.log"
            self.processes.start(
                "intake bridge",
                [sys.executable, "-m", "tickstock.intake", "bridge", "--redis-url", urls.redis_url],
                env=env,
                log_path=bridge_log,
            )
            log_paths["intake bridge"] = bridge_log
        else:
            log.warning("tickstock.intake is not installed: Redis job messages will not be bridged")
        standalone_log = logs / "standalone.log"
        # standalone stops its components only on SIGINT (KeyboardInterrupt); SIGTERM would
        # orphan them, which the group stop would then have to clean up.
        self.processes.start(
            "airflow standalone",
            [self._airflow(), "standalone"],
            env=env,
            log_path=standalone_log,
            stop_signal=signal.SIGINT,
        )
        log_paths["airflow standalone"] = standalone_log
        url = f"http://127.0.0.1:{self.port}"
        password_file = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        wait_for(
            lambda: password_file.exists() and _api_ready(url),
            timeout=READY_TIMEOUT_S,
            what=f"the Airflow API on {url}",
            alive=self.processes.check_alive,
        )
        password = json.loads(password_file.read_text())[ADMIN_USER]
        unpaused, paused = self._unpause_parsed_dags(
            AirflowApi(url, ADMIN_USER, password), Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
        )
        self.info = AirflowInfo(
            url=url,
            username=ADMIN_USER,
            password=password,
            airflow_home=self.airflow_home,
            postgres_url=urls.postgres_url,
            redis_url=urls.redis_url,
            massive_url=massive_url,
            logs=log_paths,
            unpaused=unpaused,
            paused=paused,
        )
        return self.info

    def _unpause_parsed_dags(self, api: AirflowApi, dags_folder: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
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
        # (an Airflow home reused from an earlier start may have a kept-paused DAG unpaused)
        for dag_id, state in [*((d, False) for d in unpaused), *((d, True) for d in paused)]:
            wait_for(
                lambda dag_id=dag_id, state=state: api.try_set_paused(dag_id, state),
                timeout=60,
                what=f"{dag_id} to be {'paused' if state else 'unpaused'}",
            )
        return unpaused, paused

    def environment(self, urls: services.ServiceUrls, massive_url: str, api_key: str) -> dict[str, str]:
        """Return the environment of every Airflow process of this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.pop("AIRFLOW_CONFIG", None)
        env.update(airflow_env(self.airflow_home, urls, massive_url=massive_url, massive_api_key=api_key))
        venv_bin = str(Path(sys.executable).parent)
        env.update(
            {
                # standalone runs its components as `airflow ...` from PATH.
                "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
                # Created paused; start() unpauses them (all but keep_paused) once they are parsed.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
                "AIRFLOW__API__PORT": str(self.port),
                # A development stack with a generated admin password: loopback only.
                "AIRFLOW__API__HOST": "127.0.0.1",
                # Task processes report to the Execution API of *this* api-server.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                # Internal log servers: free ports, so two stacks (or a stack and a test) coexist.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        return env

    @staticmethod
    def _airflow() -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def first_exited(self) -> str | None:
        """Return the name of a component that has exited on its own, if any."""
        child = self.processes.first_exited()
        return None if child is None else f"{child.name} (exit {child.process.returncode}, log {child.log_path})"

    def stop(self) -> list[str]:
        """Stop everything this object started, newest first; return what was stopped."""
        stopped = self.processes.stop()
        self._exit_stack.close()
        if self.massive_url is None and self.info is not None:
            stopped.append("massive simulator")
        started = self._started_services
        if started is not None and (started.started_postgres or started.started_redis):
            stopped += services.stop_services()
        self._started_services = None
        return stopped

    def __enter__(self) -> AirflowInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -------------------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _banner(info: AirflowInfo) -> str:
    redis = urlsplit(info.redis_url)
    return "\n".join(
        [
            "",
            "Airflow is ready (pool massive_api created)",
            f"  DAGs unpaused:     {', '.join(info.unpaused)}",
            *(
                [f"  kept paused:       {', '.join(info.paused)} (refreshes today; the simulator's clock is frozen)"]
                if info.paused
                else []
            ),
            f"  UI / API:          {info.url}",
            f"  user / password:   {info.username} / {info.password}",
            f"  Massive API:       {info.massive_url}",
            f"  TickStock DB:      {info.postgres_url}",
            f"  TickStock Redis:   {info.redis_url}",
            f"  publish a job:     redis-cli -h {redis.hostname} -p {redis.port} PUBLISH tickstock.jobs.data_load "
            """'{"job_id": "demo-1", "job_type": "csv_universe_load", "symbols": ["SCHG", "VUG"], """
            """"days": 2, "as_of": "2025-12-02", "source": "redis-cli"}'""",
            *(f"  log ({name}): {path}" for name, path in info.logs.items()),
            "Ctrl-C stops everything this command started.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock_dev.airflow_local", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV) or DEFAULT_PORT))
    parser.add_argument(
        "--sim-now",
        default=os.environ.get(SIM_NOW_ENV, DEFAULT_SIM_NOW),
        help="simulator clock, ISO 8601; empty = real time",
    )
    parser.add_argument("--massive-url", default=os.environ.get("MASSIVE_BASE_URL") or None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    home = services.state_dir() / "airflow"
    # Before anything imports Airflow in this process (ensure_airflow_db reads its version), or
    # it would create ~/airflow/airflow.cfg.
    os.environ["AIRFLOW_HOME"] = str(home)
    api_key = os.environ.get("MASSIVE_API_KEY") or None
    massive_url = (args.massive_url or DEFAULT_MASSIVE_URL) if api_key else None
    stack = LocalAirflow(
        home,
        port=args.port,
        sim_now=args.sim_now or None,
        massive_url=massive_url,
        massive_api_key=api_key,
        keep_paused=CLOCK_DEPENDENT_DAGS if (massive_url is None and args.sim_now) else (),
    )
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    exit_code = 0
    try:
        print("Starting PostgreSQL, Redis, the Massive simulator, the intake bridge and Airflow ...", flush=True)
        info = stack.start()
        print(_banner(info), flush=True)
        exited = wait_for(stack.first_exited, timeout=float("inf"), what="a component to exit")
        print(f"\n{exited} stopped on its own; shutting down the rest.", file=sys.stderr)
        exit_code = 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    except StartupError as exc:
        print(f"\nmake airflow failed: {exc}", file=sys.stderr)
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stopped = stack.stop()
        print(f"Stopped: {', '.join(stopped) or 'nothing'}.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
