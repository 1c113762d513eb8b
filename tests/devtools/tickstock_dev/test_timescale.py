from __future__ import annotations

import pytest

from tickstock_dev import timescale
from tickstock_dev.processes import StartupError
from tickstock_dev.timescale import TimescaleServer, TimescaleServerError


def test_a_missing_node_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TimescaleServerError, match=r"node \(Node.js 20\+\) is not on PATH"):
        TimescaleServer(None, log_path=tmp_path / "server.log").start()


def test_missing_npm_packages_say_make_install(tmp_path, monkeypatch):
    monkeypatch.setattr(timescale, "SERVER_DIR", tmp_path / "tsdb_server")
    with pytest.raises(TimescaleServerError, match="npm packages are not installed: run `make install`"):
        TimescaleServer(None, log_path=tmp_path / "server.log").start()


@pytest.mark.integration
def test_a_server_that_cannot_start_fails_at_once_with_its_log(tmp_path):
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("a file where the data directory should be")
    server = TimescaleServer(not_a_directory, log_path=tmp_path / "server.log")
    with pytest.raises(StartupError, match=r"(?s)tsdb_server exited with code 1.*cannot open the database in"):
        server.start()
    with pytest.raises(TimescaleServerError, match="not running"):
        server.url  # noqa: B018


def test_the_ready_line_gives_port_and_versions():
    info = timescale._parse_ready("READY 127.0.0.1 40123 timescaledb=2.23.0-dev postgres=17.5\n", 1.5)
    assert info == timescale.ServerInfo(40123, "2.23.0-dev", "17.5", 1.5)
