"""``make cluster``: the deployment's shape on one machine, without docker and offline.

The same components as docker-compose.yaml, run natively as separate processes:

- Airflow's metadata database (also the Celery result backend): database ``airflow`` on an
  embedded PostgreSQL of its own (``<state>/airflow-pg``), like compose's ``airflow-postgres``;
- the Celery broker: an embedded Redis of its own (``<state>/broker-redis``), like ``airflow-redis``;
- TickStock's database ``tickstock`` and TickStock's Redis (jobs stream, job status, request
  budget) on a second embedded PostgreSQL and Redis (``<state>/tickstock``), like compose's
  ``timescaledb`` and ``tickstock-redis``. Separate *servers* rather than two databases on one
  server and two DB indexes on one Redis, so a fault test can restart TickStock's PostgreSQL or
  Redis (:meth:`LocalCluster.restart_tickstock_postgres`) without touching Airflow's metadata DB
  or the broker, exactly as in the compose deployment;
- ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and ``WORKERS``
  ``airflow celery worker`` processes (CeleryExecutor), each worker with its own Celery hostname
  (``worker-N@<host>``) and ``--concurrency``; the task instances a worker runs record
  ``worker-N`` as their hostname (``[core] hostname_callable`` = :func:`worker_hostname`), so
  the metadata DB says which worker ran what even though all share one machine;
- the Redis intake bridge and the Massive simulator (or the real API with ``MASSIVE_API_KEY``).

Set-up before the components start: ``airflow db migrate`` and then docker/init_tickstock.py,
the compose stack's own init step (connections into the metadata DB, pool ``massive_api``,
Variable ``massive_rate_limit``, TickStock's schema), so both deployments are configured by the
same code. The admin user is SimpleAuthManager's ``admin`` with a generated password (as
``make airflow``; the FAB auth manager of the compose image is not part of the pinned set).

:class:`LocalCluster` is a context manager for tests and the bench: REST API access, trigger and
wait for runs, task-instance rows from the metadata DB, and kill/restart of single components.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tickstock_dev import services
from tickstock_dev.airflow_env import airflow_env, ensure_airflow_db
from tickstock_dev.processes import StartupError, wait_for
from tickstock_dev.stack import (
    ADMIN_USER,
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
    import contextlib
    from collections.abc import Callable, Collection, Mapping

    from massive_sim.testing import SimHandle

log = logging.getLogger(__name__)

PORT_ENV = "TICKSTOCK_CLUSTER_PORT"
WORKERS_ENV = "WORKERS"
CONCURRENCY_ENV = "CONCURRENCY"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 2
# Task slots per worker: 2 workers x 6 = 12, 4 more than the massive_api pool's 8. The pool
# bounds the fetches; the other slots run upserts, ticker details and the plan/check tasks
# beside them. With 2 x 4 = 8 every upsert took a fetch's slot: in a 5,000-symbol refresh a
# finished round's 8 upserts held all 8 while the next fetches waited 5-15 s with the request
# budget idle.
DEFAULT_CONCURRENCY = 6
DEFAULT_RATE_LIMIT = "100/s"
DEFAULT_POOL_SLOTS = 8
DEFAULT_SIM_NOW = "2025-12-02T21:00:00Z"
DEFAULT_MASSIVE_URL = "https://api.massive.com"
CLOCK_DEPENDENT_DAGS = ("nightly_refresh",)
AIRFLOW_DATABASE = "airflow"
TICKSTOCK_DATABASE = services.DEFAULT_DATABASE
WORKER_HOSTNAME_ENV = "TICKSTOCK_WORKER_HOSTNAME"
# Sub-folders of the state folder: one embedded server each (TickStock's PostgreSQL and Redis share one).
METADATA_SERVER_DIR = "airflow-pg"
BROKER_SERVER_DIR = "broker-redis"
TICKSTOCK_SERVERS_DIR = "tickstock"
INIT_SCRIPT = services.REPO_ROOT / "docker" / "init_tickstock.py"
# api-server, scheduler, dag-processor and triggerer, each with its SQLAlchemy pool, plus every
# Celery worker's result-backend connections: keep each pool small on the embedded server.
SQL_POOL_SIZE = 3
WORKER_READY_TIMEOUT_S = 180.0
# How fast the cluster notices a dead component (Airflow's defaults are minutes). Every running
# task's supervisor heartbeats every [workers] min_heartbeat_interval (5 s); a task instance
# silent for 30 s (its worker was SIGKILLed) is failed and retried by the scheduler, checked
# every 5 s. A scheduler silent for 15 s is dead to the others, and the scheduler looks for the
# task instances a dead scheduler had queued (to adopt or reset them) every 15 s. A task
# instance queued for 120 s without starting (its Celery message died with a worker) is
# queued again. Sized for a loaded 2-core machine: a busy but live task still heartbeats
# several times within 30 s.
FAULT_DETECTION_CONFIG = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
}

# An idle scheduler loop sleeps this long (Airflow's default: 1 s) before it looks for finished
# task instances again: every level of a DAG waited up to that long for its downstream to be
# scheduled, ~5 s of a 9 s small job. 0.2 s costs a few more metadata queries per second.
SCHEDULING_CONFIG = {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2"}

# Task processes fork from a worker that has already imported the task modules and built the
# NYSE calendar (tickstock_airflow.celery_config); the compose file sets the same option.
CELERY_CONFIG_OPTIONS = "tickstock_airflow.celery_config.CELERY_CONFIG"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the cluster's workers: ``worker-N``, else the machine's FQDN.

    Every worker of a one-machine cluster would otherwise record the same FQDN as the
    hostname of the task instances it runs.
    """
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()


def worker_name(index: int) -> str:
    """The component name and task-instance hostname of worker ``index`` (1-based)."""
    return f"worker-{index}"


@dataclass(frozen=True)
class ClusterInfo:
    """What a person (or a test) needs to use the running cluster."""

    url: str
    username: str
    password: str
    airflow_home: Path
    metadata_url: str
    broker_url: str
    postgres_url: str
    redis_url: str
    massive_url: str
    workers: tuple[str, ...]
    concurrency: int
    logs: dict[str, Path]
    unpaused: tuple[str, ...]
    paused: tuple[str, ...]


@dataclass(frozen=True)
class TaskInstanceRow:
    """One task instance of a run, as the metadata DB has it."""

    task_id: str
    map_index: int
    state: str | None
    hostname: str | None
    try_number: int
    start_date: datetime | None = None
    end_date: datetime | None = None

    @property
    def seconds(self) -> float | None:
        if self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).total_seconds()


class LocalCluster(AirflowStack):
    """Airflow's components with CeleryExecutor workers on embedded servers; stopped as one.

    :param state: the cluster's folder: servers' data, Airflow home, logs (reused across starts)
    :param workers: how many ``airflow celery worker`` processes
    :param concurrency: task slots per worker (``--concurrency``)
    :param port: api-server port
    :param rate_limit: Variable ``massive_rate_limit`` (the request budget all workers share)
    :param pool_slots: slots of pool ``massive_api``
    :param airflow_config: extra ``AIRFLOW__*`` settings for every component (e.g. shorter
        heartbeat timeouts for fault tests)
    :param keep_paused: DAG ids left paused; the others are unpaused once parsed
    :param sim_now, massive_url, massive_api_key, simulator: see :class:`~tickstock_dev.stack.AirflowStack`
    """

    def __init__(
        self,
        state: Path,
        *,
        workers: int = DEFAULT_WORKERS,
        concurrency: int = DEFAULT_CONCURRENCY,
        port: int = DEFAULT_PORT,
        rate_limit: str = DEFAULT_RATE_LIMIT,
        pool_slots: int = DEFAULT_POOL_SLOTS,
        airflow_config: Mapping[str, str] | None = None,
        keep_paused: Collection[str] = CLOCK_DEPENDENT_DAGS,
        sim_now: str | None = DEFAULT_SIM_NOW,
        massive_url: str | None = None,
        massive_api_key: str | None = None,
        simulator: Callable[[], contextlib.AbstractContextManager[SimHandle]] | None = None,
    ) -> None:
        if workers < 1 or concurrency < 1:
            raise ValueError("workers and concurrency must be at least 1")
        super().__init__(
            sim_now=sim_now,
            massive_url=massive_url,
            massive_api_key=massive_api_key,
            keep_paused=keep_paused,
            simulator=simulator,
        )
        self.state = state.resolve()
        self.workers = workers
        self.concurrency = concurrency
        # The scheduler's parallelism is the workers' slots, never more: a task queued beyond
        # them waits in the broker's FIFO queue, where priority weights no longer apply (an
        # upsert queued behind every fetch of the map no longer overlaps them).
        self.parallelism = workers * concurrency
        self.port = port
        self.rate_limit = rate_limit
        self.pool_slots = pool_slots
        self.airflow_config = dict(airflow_config or {})
        self.airflow_home = self.state / "airflow"
        self.log_dir = self.state / "logs"
        self.env: dict[str, str] = {}
        self.info: ClusterInfo | None = None
        self._api: AirflowApi | None = None
        self._servers_started = False
        # Where each worker's log was when it was last started: its "ready" line comes after.
        self._worker_log_offsets: dict[int, int] = {}

    # --- where the servers live ----------------------------------------------------------------

    @property
    def _metadata_base(self) -> Path:
        return self.state / METADATA_SERVER_DIR

    @property
    def _broker_base(self) -> Path:
        return self.state / BROKER_SERVER_DIR

    @property
    def _tickstock_base(self) -> Path:
        return self.state / TICKSTOCK_SERVERS_DIR

    # --- start ---------------------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        if port_in_use(self.port):
            raise StartupError(f"port {self.port} is in use; set {PORT_ENV} to another port")
        self.state.mkdir(parents=True, exist_ok=True)
        self._servers_started = True
        metadata_pg, _ = services.ensure_postgres(self._metadata_base, AIRFLOW_DATABASE)
        broker, _ = services.ensure_redis(self._broker_base)
        tickstock_pg, _ = services.ensure_postgres(self._tickstock_base, TICKSTOCK_DATABASE)
        tickstock_redis, _ = services.ensure_redis(self._tickstock_base)
        urls = services.ServiceUrls(tickstock_pg, tickstock_redis)
        massive_url, api_key = self.massive_endpoint()
        self.env = env = self.environment(urls, metadata_pg, broker)
        ensure_airflow_db(env)
        self._init_tickstock(env, massive_url, api_key, urls)
        logs: dict[str, Path] = {}
        if self.start_intake_bridge(urls.redis_url, env, self.log_dir / "intake-bridge.log"):
            logs["intake bridge"] = self.log_dir / "intake-bridge.log"
        for component in ("api-server", "dag-processor", "scheduler", "triggerer"):
            logs[component] = self._start_component(component)
        for index in range(1, self.workers + 1):
            logs[worker_name(index)] = self.start_worker(index, wait=False)
        url = f"http://127.0.0.1:{self.port}"
        password = self.wait_for_api(url, self.airflow_home / PASSWORD_FILE)
        self._api = AirflowApi(url, ADMIN_USER, password)
        unpaused, paused = self.unpause_parsed_dags(self._api, Path(env["AIRFLOW__CORE__DAGS_FOLDER"]))
        for index in range(1, self.workers + 1):
            self.wait_for_worker(index)
        self.info = ClusterInfo(
            url=url,
            username=ADMIN_USER,
            password=password,
            airflow_home=self.airflow_home,
            metadata_url=metadata_pg,
            broker_url=broker,
            postgres_url=urls.postgres_url,
            redis_url=urls.redis_url,
            massive_url=massive_url,
            workers=tuple(worker_name(i) for i in range(1, self.workers + 1)),
            concurrency=self.concurrency,
            logs=logs,
            unpaused=unpaused,
            paused=paused,
        )
        return self.info

    def _secrets(self) -> dict[str, str]:
        """Keys every component must share (task tokens, Fernet-encrypted connections), kept per state."""
        path = self.state / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "jwt_secret": secrets.token_urlsafe(32),
            "fernet_key": Fernet.generate_key().decode(),
            "secret_key": secrets.token_urlsafe(32),
        }
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        return values

    def environment(self, urls: services.ServiceUrls, metadata_url: str, broker_url: str) -> dict[str, str]:
        """Return the environment of every Airflow component of this cluster."""
        keys = self._secrets()
        metadata = urlsplit(metadata_url)
        sqlalchemy_url = metadata._replace(scheme="postgresql+psycopg").geturl()
        env = environment_without_airflow()
        env.update(airflow_env(self.airflow_home, urls))
        # Connections come from the metadata DB, written by init_tickstock.py as in compose.
        for key in [k for k in env if k.startswith("AIRFLOW_CONN_")]:
            del env[key]
        env.update(
            {
                # Component logs are files (logs/<component>.log): written as they happen, not
                # when a block buffer fills, so a tail or a test reads what has been done.
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
                "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": str(SQL_POOL_SIZE),
                "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url,
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                **FAULT_DETECTION_CONFIG,
                **SCHEDULING_CONFIG,
                **self.airflow_config,
            }
        )
        return env

    def _init_tickstock(self, env: dict[str, str], massive_url: str, api_key: str, urls: services.ServiceUrls) -> None:
        """Run the compose stack's init step: connections, pool, Variable and the schema."""
        init_env = {
            **env,
            "MASSIVE_BASE_URL": massive_url,
            "MASSIVE_API_KEY": api_key,
            "MASSIVE_RATE_LIMIT": self.rate_limit,
            "MASSIVE_POOL_SLOTS": str(self.pool_slots),
            "TICKSTOCK_POSTGRES_URL": urls.postgres_url,
            "TICKSTOCK_REDIS_URL": urls.redis_url,
        }
        result = subprocess.run(
            [sys.executable, str(INIT_SCRIPT)], env=init_env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise StartupError(f"docker/init_tickstock.py failed:\n{result.stdout}{result.stderr}")

    def _start_component(self, component: str) -> Path:
        log_path = self.log_dir / f"{component}.log"
        argv = [airflow_bin(), component]
        if component == "api-server":
            argv += ["--port", str(self.port), "--host", "127.0.0.1"]
        self.processes.start(component, argv, env=self.env, log_path=log_path)
        return log_path

    def start_worker(self, index: int, *, wait: bool = True) -> Path:
        """Start worker ``index`` (1-based), or start it again after :meth:`kill`; return its log."""
        name = worker_name(index)
        log_path = self.log_dir / f"{name}.log"
        self._worker_log_offsets[index] = log_path.stat().st_size if log_path.exists() else 0
        if any(c.name == name for c in self.processes.children):
            self.processes.restart(name)
        else:
            env = {
                **self.env,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tickstock_dev.cluster.worker_hostname",
                WORKER_HOSTNAME_ENV: name,
            }
            argv = [
                airflow_bin(),
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(self.concurrency),
                # Task logs are files under the shared Airflow home, which the api-server reads
                # directly; a log server per worker would only compete for ports and CPU.
                "--skip-serve-logs",
            ]
            self.processes.start(name, argv, env=env, log_path=log_path)
        if wait:
            self.wait_for_worker(index)
        return log_path

    def wait_for_worker(self, index: int, timeout: float = WORKER_READY_TIMEOUT_S) -> None:
        """Wait until worker ``index`` logs Celery's ``... ready.`` line after its latest start."""
        name = worker_name(index)
        log_path = self.log_dir / f"{name}.log"
        offset = self._worker_log_offsets.get(index, 0)

        def ready() -> bool:
            try:
                with log_path.open("rb") as f:
                    f.seek(offset)
                    text = f.read()
            except OSError:
                return False
            return f"{name}@".encode() in text and b" ready." in text

        def alive() -> None:
            child = self.processes.get(name)
            if not child.running:
                raise StartupError(f"{name} exited with code {child.process.returncode}:\n{child.tail()}")

        wait_for(ready, timeout=timeout, what=f"{name} to be ready", alive=alive)

    # --- using it ------------------------------------------------------------------------------

    @property
    def api(self) -> AirflowApi:
        """The REST API as the admin (a fresh token on every start)."""
        if self._api is None:
            raise RuntimeError("the cluster is not started")
        return self._api

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        return self.api.trigger(dag_id, conf, run_id)

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 1800.0) -> dict[str, Any]:
        """Wait for the run's final state and return the run (``state``, ``start_date``, ``end_date``)."""
        return self.api.wait_for_run(dag_id, run_id, timeout=timeout)

    def metadata_query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on Airflow's metadata DB."""
        import psycopg

        if self.info is None:
            raise RuntimeError("the cluster is not started")
        with psycopg.connect(self.info.metadata_url) as conn:
            return conn.execute(sql, params).fetchall()

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceRow]:
        """The run's task instances with the hostname that ran each (metadata DB, not the API)."""
        rows = self.metadata_query(
            "SELECT task_id, map_index, state, hostname, try_number, start_date, end_date FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
        return [TaskInstanceRow(*row) for row in rows]

    # --- faults --------------------------------------------------------------------------------

    def kill(self, component: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal a component (``scheduler``, ``triggerer``, ``worker-2`` ...) and all it forked."""
        self.processes.kill(component, sig)

    def restart(self, component: str) -> None:
        """Start a killed/stopped component again (workers: waits until ready)."""
        if component.startswith("worker-"):
            self.start_worker(int(component.removeprefix("worker-")))
        else:
            self.processes.restart(component)

    def kill_worker(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        self.kill(worker_name(index), sig)

    def stop_tickstock_postgres(self) -> None:
        """Stop TickStock's PostgreSQL (fast shutdown); Airflow's metadata DB keeps running."""
        services.stop_postgres(self._tickstock_base)

    def start_tickstock_postgres(self) -> None:
        services.ensure_postgres(self._tickstock_base, TICKSTOCK_DATABASE)

    def restart_tickstock_postgres(self) -> None:
        self.stop_tickstock_postgres()
        self.start_tickstock_postgres()

    def stop_tickstock_redis(self) -> None:
        """Stop TickStock's Redis (it flushes its append-only file); the Celery broker keeps running."""
        services.stop_redis(self._tickstock_base)

    def start_tickstock_redis(self) -> None:
        """Start it again on the same port (recorded in the state folder), so URLs stay valid."""
        _restart_redis_on_its_port(self._tickstock_base)

    def restart_tickstock_redis(self) -> None:
        self.stop_tickstock_redis()
        self.start_tickstock_redis()

    def server_pids(self) -> dict[str, int | None]:
        return server_pids(self.state)

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop every component, the simulator, then the four servers; return what was stopped."""
        stopped = super().stop()
        if self._servers_started:
            servers = self.stop_servers()
            stopped += servers
            self.stopped += servers
            self._servers_started = False
        self._api = None
        return stopped

    def stop_servers(self) -> list[str]:
        """Stop the servers of this state folder that are running (also ones a crashed start left)."""
        stopped = []
        for name, stop in (
            ("tickstock redis", lambda: services.stop_redis(self._tickstock_base)),
            ("tickstock postgres", lambda: services.stop_postgres(self._tickstock_base)),
            ("broker redis", lambda: services.stop_redis(self._broker_base)),
            ("airflow postgres", lambda: services.stop_postgres(self._metadata_base)),
        ):
            if stop():
                stopped.append(name)
        return stopped

    def __enter__(self) -> LocalCluster:  # type: ignore[override]
        """Start, and hand the cluster itself to the ``with`` block (its :attr:`info` is set)."""
        self.start()
        return self


def server_pids(state: Path) -> dict[str, int | None]:
    """The pids of a cluster's four servers (None: not running), from the pid files in ``state``."""
    state = state.resolve()
    return {
        "airflow postgres": services.postgres_pid(state / METADATA_SERVER_DIR),
        "broker redis": services.redis_pid(state / BROKER_SERVER_DIR),
        "tickstock postgres": services.postgres_pid(state / TICKSTOCK_SERVERS_DIR),
        "tickstock redis": services.redis_pid(state / TICKSTOCK_SERVERS_DIR),
    }


def _restart_redis_on_its_port(base: Path) -> None:
    """Start the embedded Redis of ``base`` on the port it had (``ensure_redis`` would pick a new one)."""
    port_file = base / "redis" / "port"
    port = int(port_file.read_text())
    deadline = time.monotonic() + 30
    while port_in_use(port):  # the old server's socket may linger for a moment after exit
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} of TickStock's Redis stays in use")
        time.sleep(0.1)
    services.ensure_redis(base, port=port)


# -------------------------------------------------------------------------------------------


def _banner(info: ClusterInfo) -> str:
    redis = urlsplit(info.redis_url)
    return "\n".join(
        [
            "",
            f"Airflow cluster is ready: CeleryExecutor, {len(info.workers)} workers × concurrency {info.concurrency}",
            f"  DAGs unpaused:     {', '.join(info.unpaused)}",
            *([f"  kept paused:       {', '.join(info.paused)} (the sim's clock is frozen)"] if info.paused else []),
            f"  UI / API:          {info.url}",
            f"  user / password:   {info.username} / {info.password}",
            f"  Massive API:       {info.massive_url}",
            f"  metadata DB:       {info.metadata_url} (also the Celery result backend)",
            f"  Celery broker:     {info.broker_url}",
            f"  TickStock DB:      {info.postgres_url}",
            f"  TickStock Redis:   {info.redis_url}",
            f"  publish a job:     redis-cli -h {redis.hostname} -p {redis.port} PUBLISH tickstock.jobs.data_load "
            """'{"job_id": "demo-1", "job_type": "csv_universe_load", "symbols": ["SCHG", "VUG"], """
            """"days": 2, "as_of": "2025-12-02", "source": "redis-cli"}'""",
            f"  component logs:    {info.logs['scheduler'].parent}/<component>.log",
            f"  task logs:         {info.airflow_home / 'logs'}",
            "Ctrl-C (or SIGTERM) stops everything this command started.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock_dev.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=int(os.environ.get(WORKERS_ENV) or DEFAULT_WORKERS))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get(CONCURRENCY_ENV) or DEFAULT_CONCURRENCY))
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV) or DEFAULT_PORT))
    parser.add_argument("--state", type=Path, default=None, help="state folder (default: <state>/cluster)")
    parser.add_argument("--rate-limit", default=os.environ.get("MASSIVE_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
    parser.add_argument("--sim-now", default=os.environ.get("TICKSTOCK_SIM_NOW", DEFAULT_SIM_NOW))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    state = (args.state or services.state_dir() / "cluster").resolve()
    # Before anything imports Airflow in this process (ensure_airflow_db reads its version).
    os.environ["AIRFLOW_HOME"] = str(state / "airflow")
    api_key = os.environ.get("MASSIVE_API_KEY") or None
    massive_url = (os.environ.get("MASSIVE_BASE_URL") or DEFAULT_MASSIVE_URL) if api_key else None
    cluster = LocalCluster(
        state,
        workers=args.workers,
        concurrency=args.concurrency,
        port=args.port,
        rate_limit=args.rate_limit,
        sim_now=args.sim_now or None,
        massive_url=massive_url,
        massive_api_key=api_key,
        keep_paused=CLOCK_DEPENDENT_DAGS if (massive_url is None and args.sim_now) else (),
    )
    return run_foreground(
        cluster,
        command="make cluster",
        starting=f"Starting the servers, the simulator and Airflow with {args.workers} Celery workers ...",
        banner=_banner,
    )


if __name__ == "__main__":
    sys.exit(main())
