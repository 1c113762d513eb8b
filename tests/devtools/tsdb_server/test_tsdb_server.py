"""The TimescaleDB test server itself: what a real client needs from it, through psycopg 3.

Each test names the failure it guards against; most of them crashed or hung stock
pglite-socket (see devtools/tsdb_server/server.mjs).
"""

from __future__ import annotations

import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest

from tickstock_dev.processes import wait_for
from tickstock_dev.timescale import TimescaleServer, TimescaleServerError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
ROWS = 100_000
START = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def tsdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimescaleServer]:
    """One in-memory server for the module (start-up costs seconds)."""
    logs = tmp_path_factory.mktemp("tsdb")
    with TimescaleServer(None, log_path=logs / "server.log") as server:
        yield server


@pytest.fixture
def ticks(tsdb: TimescaleServer) -> str:
    """An empty hypertable ``ticks`` (symbol, ts, price)."""
    with tsdb.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ticks")
        conn.execute("CREATE TABLE ticks (symbol text NOT NULL, ts timestamptz NOT NULL, price numeric NOT NULL)")
        conn.execute("SELECT create_hypertable('ticks', by_range('ts', INTERVAL '1 day'))")
    return "ticks"


def _rows(n: int, symbols: int = 10) -> Iterator[tuple[str, datetime, int]]:
    for i in range(n):
        yield f"S{i % symbols}", START + timedelta(minutes=i // symbols), i


def _count(conn: psycopg.Connection, table: str = "ticks") -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _negotiate(port: int, code: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(struct.pack("!ii", 8, code))
        return sock.recv(16)


def test_it_is_timescaledb_with_the_community_licence(tsdb):
    with tsdb.connect() as conn:
        row = conn.execute(
            "SELECT extversion, current_setting('server_version'), current_setting('timescaledb.license')"
            "  FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert row == ("2.23.0-dev", "17.5", "timescale")
    assert (tsdb.info.timescaledb_version, tsdb.info.postgres_version) == ("2.23.0-dev", "17.5")


def test_ssl_and_gssenc_requests_are_declined_so_default_clients_connect(tsdb):
    # Stock pglite-socket misreads the 8-byte SSLRequest as a message and never answers:
    # libpq's default sslmode=prefer then hangs.
    assert _negotiate(tsdb.info.port, SSL_REQUEST) == b"N"
    assert _negotiate(tsdb.info.port, GSSENC_REQUEST) == b"N"
    prefer_url = tsdb.url.replace("sslmode=disable", "sslmode=prefer")
    with psycopg.connect(prefer_url, prepare_threshold=None, connect_timeout=30) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.pgconn.ssl_in_use is False
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        psycopg.connect(tsdb.url.replace("sslmode=disable", "sslmode=require"), connect_timeout=30)


def test_copy_of_100k_rows_then_more_work_on_this_and_the_next_connection(tsdb, ticks):
    # Stock pglite-socket kills the WASM backend on the first COPY FROM STDIN: every later
    # statement and connection fails.
    with tsdb.connect() as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY ticks (symbol, ts, price) FROM STDIN") as copy:
                for row in _rows(ROWS):
                    copy.write_row(row)
            assert cur.rowcount == ROWS  # the server's CommandComplete reached the client
        conn.commit()
        assert _count(conn) == ROWS
        assert conn.execute("SELECT sum(price) FROM ticks").fetchone() == (ROWS * (ROWS - 1) // 2,)
        chunks = conn.execute("SELECT count(*) FROM show_chunks('ticks')").fetchone()[0]
        assert chunks == 8  # 10,000 minutes from 2025-01-02 14:30 UTC: Jan 2 .. Jan 9, 1-day chunks
    with tsdb.connect() as conn:
        assert _count(conn) == ROWS
        assert conn.execute("SELECT min(ts), max(ts) FROM ticks").fetchone() == (
            START,
            START + timedelta(minutes=ROWS // 10 - 1),
        )


def test_binary_copy_is_answered_in_binary(tsdb, ticks):
    with tsdb.connect() as conn:
        with conn.cursor() as cur, cur.copy("COPY ticks (symbol, ts, price) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "timestamptz", "numeric"])
            for row in _rows(1_000):
                copy.write_row(row)
        conn.commit()
        assert _count(conn) == 1_000


def _copy(conn: psycopg.Connection, statement: str, data: str, *, fail_after_writing: bool = False) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(data)
        if fail_after_writing:  # the client fails mid-COPY: psycopg sends CopyFail
            raise RuntimeError("client-side failure")


def test_a_copy_the_client_aborts_writes_nothing_and_the_session_goes_on(tsdb, ticks):
    with tsdb.connect() as conn:
        with pytest.raises(RuntimeError, match="client-side failure"):
            _copy(conn, "COPY ticks FROM STDIN", f"A\t{START.isoformat()}\t1\n", fail_after_writing=True)
        conn.rollback()
        assert _count(conn) == 0
        conn.execute("INSERT INTO ticks VALUES ('A', %s, 1)", (START,))
        conn.commit()
        assert _count(conn) == 1


def test_copy_errors_are_reported_and_the_session_goes_on(tsdb, ticks):
    good, bad = f"A\t{START.isoformat()}\t1\n", f"B\t{START.isoformat()}\tnot-a-number\n"
    with tsdb.connect() as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="not-a-number"):
            _copy(conn, "COPY ticks FROM STDIN", good + bad)
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable, match="no_such_table"):
            _copy(conn, "COPY no_such_table FROM STDIN", good)
        conn.rollback()
        assert _count(conn) == 0
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_clients_are_served_in_turn_each_on_a_reset_session(tsdb, ticks):
    first = psycopg.connect(tsdb.url, prepare_threshold=None)
    try:
        first.execute("INSERT INTO ticks VALUES ('A', %s, 1)", (START,))
        first.commit()
        first.execute("CREATE TEMP TABLE scratch (x int)")
        first.execute("SET statement_timeout TO 1234")
        first.commit()
        logged = len(tsdb.log_path.read_text())
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(psycopg.connect, tsdb.url, prepare_threshold=None, connect_timeout=60)
            wait_for(
                lambda: "waits for the session" in tsdb.log_path.read_text()[logged:],
                timeout=60,
                what="the second client to queue",
            )
            assert not second.done()
            assert _count(first) == 1  # the waiting client does not disturb the one being served
            first.execute("INSERT INTO ticks VALUES ('A', %s, 2)", (START + timedelta(hours=1),))
            # Leaving inside a transaction: the server rolls it back for the next client.
            first.close()
            with second.result(timeout=60) as conn:
                assert _count(conn) == 1
                assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
                assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
                assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
                conn.execute("INSERT INTO ticks VALUES ('B', %s, 3)", (START,))  # no lock left behind
                conn.commit()
    finally:
        first.close()


def test_a_client_that_waits_too_long_gets_a_clear_error(tmp_path):
    with TimescaleServer(None, log_path=tmp_path / "server.log", wait_timeout=0) as server:
        with server.connect(), pytest.raises(psycopg.OperationalError, match="one backend session"):
            psycopg.connect(server.url, connect_timeout=30)
        with server.connect() as conn:  # the session is free again
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_wrapper_hands_out_one_connection_at_a_time(tsdb):
    with tsdb.connect(), pytest.raises(TimescaleServerError, match="close the open connection first"), tsdb.connect():
        pass
    with tsdb.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_reopened_data_dir_reads_its_compressed_hypertable(tmp_path: Path):
    # Without LOAD 'timescaledb' at start, a compressed chunk of a reopened data dir reads as empty.
    data_dir = tmp_path / "data"
    with TimescaleServer(data_dir, log_path=tmp_path / "server.log") as server, server.connect() as conn:
        conn.execute("CREATE TABLE ticks (symbol text NOT NULL, ts timestamptz NOT NULL, price numeric NOT NULL)")
        conn.execute("SELECT create_hypertable('ticks', by_range('ts', INTERVAL '1 day'))")
        with conn.cursor() as cur, cur.copy("COPY ticks FROM STDIN") as copy:
            for row in _rows(5_000):
                copy.write_row(row)
        conn.execute("ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol')")
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('ticks') c")
        conn.commit()
    with TimescaleServer(data_dir, log_path=tmp_path / "server.log") as server, server.connect() as conn:
        assert conn.execute("SELECT count(*), sum(price) FROM ticks").fetchone() == (5_000, 5_000 * 4_999 // 2)
        assert conn.execute(
            "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'ticks'"
        ).fetchone() == (1, 1)


def test_prepared_statements_of_one_client_do_not_reach_the_next(tsdb):
    # psycopg names prepared statements _pg3_0, _pg3_1, ... per connection; on a shared backend
    # the second client's PREPARE would collide without the reset between clients.
    for _ in range(2):
        with psycopg.connect(tsdb.url, prepare_threshold=0) as conn:
            assert conn.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (2,)


def test_copy_in_the_extended_protocol_is_refused_clearly(tsdb, ticks):
    conn = psycopg.connect(tsdb.url, prepare_threshold=None)
    try:
        conn.pgconn.send_query_params(b"COPY ticks FROM STDIN", None)  # Parse/Bind/Execute, not Query
        result = conn.pgconn.get_result()
        assert result.status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert b"simple query protocol only" in result.error_message
    finally:
        conn.close()
    with tsdb.connect() as conn:
        assert _count(conn) == 0
