"""Environment for running this repository's DAGs with a local Airflow.

Airflow reads its configuration from ``AIRFLOW__*`` variables and its connections from
``AIRFLOW_CONN_*`` variables, both before anything is imported; this module computes them so
that tests, ``make demo`` and ``make airflow`` run the same DAG folder against the same
connection ids as production. Airflow's own metadata database is SQLite in the state folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tickstock_dev.services import REPO_ROOT, ServiceUrls, airflow_connection_env

MASSIVE_CONN_ID = "massive_default"


def massive_connection(base_url: str, api_key: str) -> dict[str, object]:
    """Return the JSON connection for ``massive_default``: host = base URL, password = API key."""
    return {"conn_type": "http", "host": base_url, "password": api_key}


def airflow_env(
    airflow_home: Path,
    urls: ServiceUrls,
    massive_url: str | None = None,
    massive_api_key: str | None = None,
) -> dict[str, str]:
    """Return the environment variables that point Airflow at this repository and its services."""
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "TICKSTOCK_POSTGRES_URL": urls.postgres_url,
        "TICKSTOCK_REDIS_URL": urls.redis_url,
        **airflow_connection_env(urls),
    }
    if massive_url:
        conn = massive_connection(massive_url, massive_api_key or "")
        env[f"AIRFLOW_CONN_{MASSIVE_CONN_ID.upper()}"] = json.dumps(conn)
    return env


def ensure_airflow_db(env: dict[str, str]) -> None:
    """Run ``airflow db migrate`` once per Airflow home (and again after an Airflow upgrade)."""
    import airflow

    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / f".migrated-{airflow.__version__}"
    if stamp.exists():
        return
    airflow_bin = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(airflow_bin), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stamp.touch()
