"""Every DAG file imports cleanly, follows the header contract and does no I/O at import."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
APPROVED_TAGS = {"tickstock", "massive", "ohlcv", "redis", "jobs", "refresh"}
EXPECTED_DAG_IDS = {"universe_load"}


class _NoNetwork(RuntimeError):
    pass


def _refuse(*args, **kwargs):
    raise _NoNetwork(f"network I/O at DAG import: {args!r}")


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    # DAG parsing must not touch the network (no API calls, no database, no Redis at import).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        return DagBag(dag_folder=str(DAGS_DIR))


def test_every_dag_file_imports_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert DAG_FILES, "no DAG files found"


def test_expected_dags_exist(dag_bag):
    assert set(dag_bag.dag_ids) >= EXPECTED_DAG_IDS


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_one_dag_per_file_named_like_the_file(dag_bag, path):
    dags = [d for d in dag_bag.dags.values() if Path(d.fileloc) == path]
    assert [d.dag_id for d in dags] == [path.stem]


def test_header_contract(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert set(dag.tags) <= APPROVED_TAGS, f"{dag_id} has unapproved tags {set(dag.tags) - APPROVED_TAGS}"
        assert dag.default_args.get("retries", 0) >= 2, f"{dag_id} must retry tasks at least twice"
        assert dag.catchup is False
        assert dag.doc_md, f"{dag_id} has no doc_md"
