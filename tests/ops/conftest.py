from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def init_module() -> ModuleType:
    """``docker/init_tickstock.py`` (the compose ``airflow-init`` script), imported fresh from its file."""
    spec = importlib.util.spec_from_file_location("init_tickstock", ROOT / "docker" / "init_tickstock.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
