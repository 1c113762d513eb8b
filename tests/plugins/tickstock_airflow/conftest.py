"""Connections for MassiveHook / operator tests: ``massive_default`` pointing at the simulator."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from massive_sim.testing import SimHandle

# Distinctive, so a leak into any log, XCom or message can be searched for.
CANARY_KEY = "sk-LEAK-CANARY-123"


@pytest.fixture
def api_key() -> str:
    return CANARY_KEY


@pytest.fixture
def set_massive_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Point ``massive_default`` at ``url`` with API key ``key`` (for this test only)."""

    def setter(url: str, key: str) -> None:
        conn = {"conn_type": "http", "host": url, "password": key}
        monkeypatch.setenv("AIRFLOW_CONN_MASSIVE_DEFAULT", json.dumps(conn))

    return setter


@pytest.fixture
def massive_conn(sim: SimHandle, set_massive_conn: Callable[[str, str], None]) -> SimHandle:
    """The (reset) simulator, accepting only the canary key, as ``massive_default``."""
    sim.configure(api_keys=[CANARY_KEY])
    set_massive_conn(sim.url, CANARY_KEY)
    return sim
