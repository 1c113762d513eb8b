"""docker-compose.yaml: the deployment users run, checked without a docker engine.

No engine runs on development machines or CI, so the stack is never started here. What can be
checked statically is: the services are the official Airflow 3.3.2 compose shape plus
TickStock's, every image is pinned, healthchecks gate the start order, every variable the file
reads is documented in .env.example, and the connection ids / ``TICKSTOCK_*`` variables that the
code reads are exactly what the stack provides. When a compose CLI is installed it validates
the file as well (``docker compose config -q``; the engine is not needed for that).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CODE_DIRS = [ROOT / "dags", ROOT / "plugins", ROOT / "include"]

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
# Connection ids the code is known to use; the grep below must find at least these, so a
# broken pattern cannot make the consistency check pass vacuously.
KNOWN_CONN_IDS = {"massive_default", "tickstock_db", "tickstock_redis"}
# Settings the compose file reads from the environment but which are compose's own.
COMPOSE_LEVEL_VARS = {"COMPOSE_PROFILES"}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Apply compose's variable interpolation (``${X}``, ``${X:-d}``, ``${X:?err}``, ``$$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?") and not current:
            raise ValueError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(sub, value)


def variables_used(text: str) -> set[str]:
    """Return the names of the variables the compose file interpolates (``$$`` escapes skipped)."""
    return {m.group(1) or m.group(4) for m in _VAR.finditer(text) if m.group(0) != "$$"}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def documented_vars(path: Path) -> set[str]:
    """Variable names in .env.example, set or commented out (``# NAME=...``)."""
    return set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", path.read_text(), flags=re.MULTILINE))


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The .env a user gets from .env.example, with the one required value filled in."""
    return {**read_env_file(ENV_EXAMPLE), "MASSIVE_API_KEY": "sim-key"}


@pytest.fixture(scope="module")
def services(raw: dict[str, Any], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return interpolate(raw["services"], env)


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {k: str(v) for k, v in value.items()}


def code_files() -> list[Path]:
    return [p for d in CODE_DIRS if d.exists() for p in d.rglob("*.py")]


def test_services_follow_the_official_shape(services: dict[str, dict[str, Any]]) -> None:
    for name, command in AIRFLOW_SERVICES.items():
        assert name in services, f"missing {name}"
        assert services[name]["command"] == command
        assert "profiles" not in services[name], f"{name} must start by default"
    common = environment(services["airflow-scheduler"])
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    init = services["airflow-init"]
    assert environment(init)["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["flower"]["profiles"] == ["flower"]


def test_worker_scales(services: dict[str, dict[str, Any]]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "replicas would collide"
    assert "ports" not in worker, "replicas would collide"


def test_images_are_pinned(services: dict[str, dict[str, Any]], raw: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in services.items()}
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no repository"
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} floats"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    assert images["timescaledb"].startswith("timescale/timescaledb:")
    assert images["airflow-postgres"].startswith("postgres:")
    # The Airflow services run the image built from docker/Dockerfile, on the pinned Airflow.
    built = {name for name, svc in services.items() if "build" in svc}
    assert set(AIRFLOW_SERVICES) | {"airflow-init", "tickstock-intake", "massive-sim"} <= built
    assert len({images[name] for name in built}) == 1
    base = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert base, "docker/Dockerfile must name its base image"
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert pinned
    assert base.group(1) == f"apache/airflow:{pinned.group(1)}-python3.11"


def test_dockerfile_installs_the_lock_and_copies_existing_paths() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install .*-r /opt/airflow/requirements\.txt", text)
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) \S+$", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins$", text, flags=re.MULTILINE)


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    one_shot = {"airflow-init", "airflow-cli"}
    for name, svc in services.items():
        if name not in one_shot:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, spec in (svc.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{name} waits for {dependency}'s health"


def test_data_and_metadata_are_separate(services: dict[str, dict[str, Any]]) -> None:
    common = environment(services["airflow-scheduler"])
    metadata = urlsplit(common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    data = urlsplit(common["TICKSTOCK_POSTGRES_URL"])
    assert metadata.hostname == "airflow-postgres"
    assert data.hostname == "timescaledb"
    ts_env = environment(services["timescaledb"])
    assert data.username == ts_env["POSTGRES_USER"]
    assert data.password == ts_env["POSTGRES_PASSWORD"]
    assert data.path.lstrip("/") == ts_env["POSTGRES_DB"]
    # Celery's broker and TickStock's job Redis: different instances (or at least DB indexes).
    broker = urlsplit(common["AIRFLOW__CELERY__BROKER_URL"])
    jobs = urlsplit(common["TICKSTOCK_REDIS_URL"])
    assert (broker.hostname, broker.path) != (jobs.hostname, jobs.path)
    assert {broker.hostname, jobs.hostname} <= set(services)
    assert "--appendonly" in services["tickstock-redis"]["command"]


def test_intake_bridge_runs_the_real_cli(services: dict[str, dict[str, Any]]) -> None:
    intake = services["tickstock-intake"]
    assert "python -m tickstock.intake bridge" in " ".join(intake["command"])
    assert "profiles" not in intake
    assert "BRIDGE_KEY_PREFIX" in " ".join(intake["healthcheck"]["test"])
    module = ROOT / "include" / "tickstock" / "intake.py"
    if not module.exists():
        pytest.skip("tickstock.intake is not on this branch yet")
    text = module.read_text()
    assert '"bridge"' in text
    assert "BRIDGE_KEY_PREFIX =" in text


def test_simulator_is_an_optional_profile(services: dict[str, dict[str, Any]]) -> None:
    sim = services["massive-sim"]
    assert sim["profiles"] == ["offline"]
    assert "/opt/airflow/devtools" in environment(sim)["PYTHONPATH"]
    assert "python -m massive_sim" in " ".join(sim["command"])
    # It accepts the key that airflow-init writes into massive_default.
    assert environment(sim)["MASSIVE_API_KEY"] == environment(services["airflow-init"])["MASSIVE_API_KEY"]
    # Without the profile no service may depend on it, or `docker compose up` would fail online.
    for name, svc in services.items():
        assert "massive-sim" not in (svc.get("depends_on") or {}), name
    # The base URL .env.example suggests for offline use reaches it.
    offline_url = re.search(r"^#\s*MASSIVE_BASE_URL=(\S+)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert offline_url
    assert urlsplit(offline_url.group(1)).hostname == "massive-sim"
    assert str(urlsplit(offline_url.group(1)).port) in " ".join(sim["command"])


def test_every_variable_is_documented(raw: dict[str, Any]) -> None:
    used = variables_used(COMPOSE_FILE.read_text())
    documented = documented_vars(ENV_EXAMPLE)
    assert used - documented == set(), "add these to .env.example"
    assert documented - used - COMPOSE_LEVEL_VARS == set(), ".env.example lists variables nothing reads"
    assert "MASSIVE_API_KEY" in used


def test_the_key_comes_from_env_and_env_is_ignored(raw: dict[str, Any]) -> None:
    assert read_env_file(ENV_EXAMPLE)["MASSIVE_API_KEY"] == "", "never commit a key"
    with pytest.raises(ValueError, match="MASSIVE_API_KEY"):
        interpolate(raw["services"]["airflow-init"]["environment"], read_env_file(ENV_EXAMPLE))
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split(), "the key must not enter the image"


def test_mounted_folders_exist(services: dict[str, dict[str, Any]]) -> None:
    mounts = [v.split(":") for v in services["airflow-scheduler"]["volumes"]]
    binds = {target: source for source, target, *_ in mounts if source.startswith("./")}
    assert set(binds) == {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"}
    for source in binds.values():
        assert (ROOT / source).is_dir(), source
    python_path = environment(services["airflow-scheduler"])["PYTHONPATH"].split(":")
    assert {"/opt/airflow/include", "/opt/airflow/plugins"} <= set(python_path)


def test_connection_ids_in_code_are_created_by_init(
    services: dict[str, dict[str, Any]], init_module: ModuleType
) -> None:
    pattern = re.compile(
        r"""(?:_conn_id\s*[:=]\s*(?:str\s*=\s*)?|CONN_ID\s*=\s*|default_conn_name\s*=\s*)["']([a-z0-9_]+)["']"""
    )
    used = {m for path in code_files() for m in pattern.findall(path.read_text())}
    used |= {m.lower() for path in code_files() for m in re.findall(r"AIRFLOW_CONN_([A-Z0-9_]+)", path.read_text())}
    assert used >= KNOWN_CONN_IDS, f"the grep found only {sorted(used)}"
    created = init_module.connections_from_env(environment(services["airflow-init"]))
    assert used <= set(created), f"not created by airflow-init: {sorted(used - set(created))}"
    common = environment(services["airflow-scheduler"])
    assert created["tickstock_db"]["host"] == urlsplit(common["TICKSTOCK_POSTGRES_URL"]).hostname
    assert created["tickstock_redis"]["host"] == urlsplit(common["TICKSTOCK_REDIS_URL"]).hostname
    assert created["massive_default"]["password"] == "sim-key"


def test_tickstock_env_vars_in_code_are_provided(services: dict[str, dict[str, Any]]) -> None:
    read = {m for path in code_files() for m in re.findall(r"[\"'](TICKSTOCK_[A-Z0-9_]+)[\"']", path.read_text())}
    assert "TICKSTOCK_POSTGRES_URL" in read, "the grep found nothing: pattern or layout changed"
    for name in ["airflow-scheduler", "airflow-worker", "airflow-init", "tickstock-intake"]:
        missing = read - set(environment(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_init_creates_pool_variable_and_schema(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], init_module: ModuleType
) -> None:
    script = " ".join(raw["services"]["airflow-init"]["command"])
    assert "python /opt/airflow/docker/init_tickstock.py" in script
    source = (ROOT / "docker" / "init_tickstock.py").read_text()
    assert init_module.MASSIVE_POOL == "massive_api"
    assert '"-m", "tickstock.schema", "upgrade"' in source
    assert environment(services["airflow-init"])["TICKSTOCK_REQUIRE_HYPERTABLES"] == "true"
    # The pool the DAG tasks are assigned to is the one init creates.
    pools = {m for path in code_files() for m in re.findall(r'MASSIVE_POOL\s*=\s*"([^"]+)"', path.read_text())}
    assert pools == {init_module.MASSIVE_POOL}, f"the code's pool constant(s): {sorted(pools)}"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], check=False, capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI (`docker compose` plugin or docker-compose) installed: schema check not run")
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("MASSIVE_API_KEY=\n", "MASSIVE_API_KEY=sim-key\n"))
    for profiles in ("", "offline,debug,flower"):
        result = subprocess.run(
            [*cli, "--project-directory", str(ROOT), "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]
            + [arg for p in filter(None, profiles.split(",")) for arg in ("--profile", p)]
            + ["config", "-q"],
            check=False,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
        assert result.returncode == 0, result.stderr
