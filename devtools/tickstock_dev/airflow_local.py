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
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db
from tickstock_dev.processes import StartupError
from tickstock_dev.stack import (
    ADMIN_USER,
    MASSIVE_POOL,
    PASSWORD_FILE,
    AirflowApi,
    AirflowStack,
    airflow_bin,
    environment_without_airflow,
    free_port,
    port_in_use,
    run_foreground,
)

if TYPE_CHECKING:
    from collections.abc import Collection

log = logging.getLogger(__name__)

PORT_ENV = "TICKSTOCK_AIRFLOW_PORT"
SIM_NOW_ENV = "TICKSTOCK_SIM_NOW"
DEFAULT_PORT = 8080
DEFAULT_SIM_NOW = "2025-12-02T21:00:00Z"
DEFAULT_MASSIVE_URL = "https://api.massive.com"
# Refreshes "today": with the simulator's clock frozen in the past there is nothing to refresh,
# so its first scheduled run would only fail its bar-count check.
CLOCK_DEPENDENT_DAGS = ("nightly_refresh",)
MASSIVE_POOL_SLOTS = 8
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


class LocalAirflow(AirflowStack):
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
        super().__init__(
            sim_now=sim_now, massive_url=massive_url, massive_api_key=massive_api_key, keep_paused=keep_paused
        )
        self.airflow_home = airflow_home
        self.urls = urls
        self.port = port
        self._started_services: services.ServiceUrls | None = None
        self.info: AirflowInfo | None = None

    # ---------------------------------------------------------------------------------------

    def _start(self) -> AirflowInfo:
        if port_in_use(self.port):
            raise StartupError(f"port {self.port} is in use; set {PORT_ENV} to another port")
        urls = self.urls
        if urls is None:
            urls = services.ensure_services()
            self._started_services = urls
        massive_url, api_key = self.massive_endpoint()
        env = self.environment(urls, massive_url, api_key)
        logs = self.airflow_home / "logs"
        # Loads never change the schema (plan_load only checks it): upgrade before anything runs.
        from tickstock.schema import upgrade

        upgrade(urls.postgres_url)
        ensure_airflow_db(env)
        subprocess.run(
            [airflow_bin(), "pools", "set", MASSIVE_POOL, str(MASSIVE_POOL_SLOTS), "Massive API fetches"],
            env=env,
            check=True,
            capture_output=True,
        )
        log_paths = {}
        bridge_log = logs / "intake-bridge.log"
        if self.start_intake_bridge(urls.redis_url, env, bridge_log):
            log_paths["intake bridge"] = bridge_log
        standalone_log = logs / "standalone.log"
        # standalone stops its components only on SIGINT (KeyboardInterrupt); SIGTERM would
        # orphan them, which the group stop would then have to clean up.
        self.processes.start(
            "airflow standalone",
            [airflow_bin(), "standalone"],
            env=env,
            log_path=standalone_log,
            stop_signal=signal.SIGINT,
        )
        log_paths["airflow standalone"] = standalone_log
        url = f"http://127.0.0.1:{self.port}"
        password = self.wait_for_api(url, self.airflow_home / PASSWORD_FILE)
        unpaused, paused = self.unpause_parsed_dags(
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

    def environment(self, urls: services.ServiceUrls, massive_url: str, api_key: str) -> dict[str, str]:
        """Return the environment of every Airflow process of this stack."""
        env = environment_without_airflow()
        env.update(airflow_env(self.airflow_home, urls, massive_url=massive_url, massive_api_key=api_key))
        env.update(
            {
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

    def stop(self) -> list[str]:
        """Stop everything this object started, newest first; return what was stopped."""
        stopped = super().stop()
        started = self._started_services
        if started is not None and (started.started_postgres or started.started_redis):
            servers = services.stop_services()
            stopped += servers
            self.stopped += servers
        self._started_services = None
        return stopped


# -------------------------------------------------------------------------------------------


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
    return run_foreground(
        stack,
        command="make airflow",
        starting="Starting PostgreSQL, Redis, the Massive simulator, the intake bridge and Airflow ...",
        banner=_banner,
    )


if __name__ == "__main__":
    sys.exit(main())
