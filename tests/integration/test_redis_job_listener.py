"""redis_job_listener end to end: real Redis, real bridge processes, the DAG run by Airflow.

The listener runs in a subprocess (``tickstock_dev.listener_runner``: ``dag.test()`` back to back,
trigger inline), so it can be killed at any moment like a crashed scheduler/triggerer. Its
``TriggerDagRunOperator`` tasks only create ``universe_load`` runs (queued, never executed);
those rows in the Airflow metadata database are what is counted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tickstock.intake import CHANNEL, DEAD_LETTER_STREAM, STREAM, JobStream, publish_job, submit_job
from tickstock.job_status import JobStatusStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
POOL = ["SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "BRK.B", "SCHG", "VUG", "DIA"]

STAND_IN_UNIVERSE_LOAD = '''
"""Stand-in universe_load with the conf contract's Params; used until dags/universe_load.py exists."""
from __future__ import annotations
import pendulum
from airflow.sdk import Param, dag, task

@dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False, params={
    "symbols": Param([], type="array", items={"type": "string", "pattern": "^[A-Z][A-Z0-9.-]{0,9}$"}),
    "universe": Param(None, type=["null", "string"]),
    "days": Param(365, type="integer", minimum=1, maximum=7300),
})
def universe_load():
    @task
    def load(): ...
    load()

universe_load()
'''


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll an outcome with a deadline (never a sleep standing in for synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's dags/, or a copy with a stand-in universe_load while it does not exist."""
    if (REPO / "dags" / "universe_load.py").exists():
        return REPO / "dags"
    folder = tmp_path_factory.mktemp("dags")
    (folder / "redis_job_listener.py").symlink_to(REPO / "dags" / "redis_job_listener.py")
    (folder / "universe_load.py").write_text(STAND_IN_UNIVERSE_LOAD)
    return folder


class Processes:
    """Bridges and listener runners as real processes, killed with SIGKILL like a crash."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0

    def start(self, name: str, *args: str) -> None:
        self.starts += 1
        log = (self.logs / f"{name}-{self.starts}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )

    def start_bridge(self, name: str) -> None:
        self.start(name, "tickstock.intake", "bridge", "--name", name)

    def start_listener(self) -> Path:
        self.start("listener", "tickstock_dev.listener_runner")
        return self.logs / f"listener-{self.starts}.log"

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture
def processes(dags_folder: Path, tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), "PYTHONUNBUFFERED": "1"}
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()


def airflow_db() -> sqlite3.Connection:
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    return sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)


def universe_load_runs(prefix: str) -> list[tuple[str, dict, datetime]]:
    with airflow_db() as db:
        rows = db.execute(
            "SELECT run_id, conf, queued_at FROM dag_run WHERE dag_id = 'universe_load' AND run_id LIKE ?",
            (f"redis%{prefix}%",),
        ).fetchall()
    return [(run_id, json.loads(conf), datetime.fromisoformat(queued)) for run_id, conf, queued in rows]


def subscribers(client) -> int:
    return int(client.pubsub_numsub(CHANNEL)[0][1])


def drained(client) -> bool:
    stream = JobStream(client)
    stream.ensure_group()
    return stream.pending_count() == 0 and client.xlen(STREAM) == 0


def test_200_messages_survive_bridge_and_listener_restarts(redis_client, processes):
    prefix = uuid.uuid4().hex[:8]
    rng = random.Random(56)
    processes.start_bridge("bridge-a")
    processes.start_bridge("bridge-b")
    wait_until(lambda: subscribers(redis_client) == 2, 30, "two bridges subscribed")
    log = processes.start_listener()
    # Latency is measured from a running listener; restarts later in the stream are not waited for.
    wait_until(lambda: "running trigger in line" in log.read_text(), 120, "listener waiting on the stream")

    listener_ready_at = time.time()
    restarted_at: list[float] = []
    expected: dict[str, dict] = {}
    published_at: dict[str, float] = {}
    receivers: list[int] = []
    i = 0
    while i < 200:
        burst = rng.choice([1, 1, 1, 1, 1, 5, 25])  # single messages at random gaps, and bursts
        for _ in range(min(burst, 200 - i)):
            job_id = f"it-{prefix}-{i:03d}"
            symbols = rng.sample(POOL, rng.randint(1, 4))
            message: dict = {"job_id": job_id, "job_type": "csv_universe_load", "source": "integration"}
            if i % 10 == 0:
                message["csv_file"] = "core_etfs.csv"
                want = {"symbols": [], "universe": "core_etfs"}
            else:
                message["symbols"] = [s.lower() if i % 3 else s for s in symbols]
                want = {"symbols": symbols}
            if i % 2:
                message["years"] = 0.005479
                want["days"] = 2
            else:
                message["days"] = 1 + i
                want["days"] = 1 + i
            expected[job_id] = want
            published_at[job_id] = time.time()
            receivers.append(redis_client.publish(CHANNEL, json.dumps(message)))
            i += 1
        elapsed = time.time() - listener_ready_at
        if len(restarted_at) < 2 and elapsed >= (25, 50)[len(restarted_at)]:
            # Crash one bridge and the listener; the other bridge keeps the channel covered.
            victim = ("bridge-a", "bridge-b")[len(restarted_at)]
            wait_until(lambda: subscribers(redis_client) == 2, 30, "both bridges subscribed")
            processes.kill(victim)
            processes.kill("listener")
            processes.start_bridge(victim)
            processes.start_listener()
            restarted_at.append(time.time())
        time.sleep(rng.uniform(0, 5.0))  # load shaping between bursts, not synchronisation

    assert len(restarted_at) == 2, "the stream ended before both restarts"
    assert min(receivers) >= 1, "a message was published while no bridge was subscribed"
    wait_until(lambda: len(universe_load_runs(prefix)) >= 200 and drained(redis_client), 400, "200 runs")

    runs = universe_load_runs(prefix)
    by_job = {conf["job_id"]: (run_id, conf, queued) for run_id, conf, queued in runs}
    assert len(runs) == 200, "duplicates"
    assert set(by_job) == set(expected), "lost or foreign jobs"
    store = JobStatusStore(redis_client)
    for job_id, want in expected.items():
        run_id, conf, _queued = by_job[job_id]
        assert run_id == f"redis__{job_id}"
        assert {k: conf.get(k) for k in want} == want, job_id
        assert conf["source"] == "integration"
        status = store.get(job_id)
        assert status["status"] == "queued"
        assert status["run_id"] == run_id

    def stats(job_ids: list[str]) -> dict[str, float]:
        values = sorted(by_job[j][2].timestamp() - published_at[j] for j in job_ids)
        return {
            "n": len(values),
            "median_s": round(statistics.median(values), 2),
            "p95_s": round(values[max(0, int(0.95 * len(values)) - 1)], 2),
            "max_s": round(values[-1], 2),
        }

    # "Listener up": published while a listener had been running for 30 s (its start-up cost)
    # rather than into a backlog a restarting listener works off later.
    def listener_up(job_id: str) -> bool:
        t = published_at[job_id]
        starts = [listener_ready_at, *restarted_at]
        return t >= max(start for start in starts if start <= t) + (0 if t < starts[1] else 30)

    report = {
        "messages": 200,
        "runs": len(runs),
        "lost": len(set(expected) - set(by_job)),
        "duplicates": len(runs) - len(by_job),
        "latency_all": stats(list(expected)),
        "latency_listener_up": stats([j for j in expected if listener_up(j)]),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "redis_job_listener_latency.json").write_text(json.dumps(report, indent=2))
    print(f"\nredis_job_listener: {report}")


MALFORMED: list[tuple[str, str]] = [
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["AAPL"', "not valid JSON"),
    ('{"job_id": "{id}", job_type: csv_universe_load}', "not valid JSON"),
    ('{"job_id": "{id}", "symbols": ["AAPL"], "days": 2}', "job_type: missing"),
    ('{"job_id": "{id}", "job_type": "csv_universe_purge", "symbols": ["AAPL"]}', "unknown job type"),
    ('{"job_id": "{id}", "job_type": 7, "symbols": ["AAPL"]}', "unknown job type"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "days": 2}', "no symbols"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": []}', "no symbols"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["AA PL"]}', "invalid ticker"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["$SPY"]}', "invalid ticker"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["TOOLONGTICKER"]}', "invalid ticker"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": [42]}', "invalid ticker"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": {"a": 1}}', "expected a list"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "days": 0}', "out of range"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "days": 7301}', "out of range"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "days": "ten"}', "whole number"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "years": 0}', "positive"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "years": -1}', "positive"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "years": 25}', "7300 days"),
    (
        '{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "years": 1, "days": 3}',
        "not both",
    ),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "csv_file": "../secrets.csv"}', "csv_file"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "csv_file": "/etc/passwd"}', "no paths"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "csv_file": "x/core_etfs.csv"}', "no paths"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "csv_file": "core_etfs.txt"}', "not a .csv"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "csv_file": "nope.csv"}', "unknown universe"),
    (
        '{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "timeframes": ["2h"]}',
        "timeframe",
    ),
    (
        '{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "hourly_session": "x"}',
        "session",
    ),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "adjusted": "yes"}', "adjusted"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "as_of": "yesterday"}', "as_of"),
    ('{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "batch_size": 0}', "batch_size"),
    (
        '{"job_id": "{id}", "job_type": "csv_universe_load", "symbols": ["A"], "hourly_days": 9}',
        "hourly_days",
    ),
]


def test_duplicates_crashes_and_malformed_messages(redis_client, processes):
    prefix = uuid.uuid4().hex[:8]
    store = JobStatusStore(redis_client)

    def job(job_id: str) -> str:
        # The source looks like a template: it must reach the run verbatim, never rendered.
        return json.dumps(
            {
                "job_id": job_id,
                "job_type": "csv_universe_load",
                "symbols": ["SPY"],
                "days": 5,
                "source": "{{ 7 * 7 }}",
            }
        )

    # A listener that claimed an entry and died before acknowledging it.
    crashed_id = f"crash-{prefix}"
    submit_job(redis_client, job(crashed_id))
    assert [e.data for e in JobStream(redis_client, consumer="died").claim(10)] == [job(crashed_id)]

    processes.start_bridge("bridge-a")
    wait_until(lambda: subscribers(redis_client) == 1, 30, "bridge subscribed")
    processes.start_listener()

    dup_id = f"dup-{prefix}"
    assert redis_client.publish(CHANNEL, job(dup_id)) == 1
    submit_job(redis_client, job(dup_id))  # the same job also written to the stream directly
    submit_job(redis_client, job(dup_id))
    bad_ids = [f"bad-{prefix}-{n:02d}" for n in range(len(MALFORMED))]
    for bad_id, (template, _fragment) in zip(bad_ids, MALFORMED, strict=True):
        assert redis_client.publish(CHANNEL, template.replace("{id}", bad_id)) == 1

    # Every bridge down: plain PUBLISH would be dropped by Redis; publish_job falls back to XADD.
    # (Killed only once it has forwarded everything: a lone bridge killed with messages still in
    # its socket buffer loses them; that window is why two bridges run in production.)
    wait_until(lambda: redis_client.xlen(DEAD_LETTER_STREAM) >= len(MALFORMED), 120, "malformed forwarded")
    processes.kill("bridge-a")
    wait_until(lambda: subscribers(redis_client) == 0, 30, "bridge gone")
    fallback_id = f"fallback-{prefix}"
    assert publish_job(redis_client, job(fallback_id)) == 0

    wait_until(
        lambda: (
            len(universe_load_runs(prefix)) >= 3
            and redis_client.xlen(DEAD_LETTER_STREAM) >= len(MALFORMED)
            and drained(redis_client)
        ),
        300,
        "3 runs and 30 dead letters",
    )
    runs = sorted(run_id for run_id, _conf, _queued in universe_load_runs(prefix))
    assert runs == sorted(f"redis__{j}" for j in (crashed_id, dup_id, fallback_id))
    assert {conf["source"] for _run_id, conf, _queued in universe_load_runs(prefix)} == {"{{ 7 * 7 }}"}
    assert store.get(dup_id)["status"] == "queued"

    dead = {fields["job_id"]: fields for _id, fields in redis_client.xrange(DEAD_LETTER_STREAM)}
    assert set(dead) == set(bad_ids)
    for bad_id, (_template, fragment) in zip(bad_ids, MALFORMED, strict=True):
        status = store.get(bad_id)
        assert status["status"] == "failed", bad_id
        assert status["message"].startswith("Rejected job message: "), status
        assert fragment in status["message"], (fragment, status["message"])
        assert status["message"] == dead[bad_id]["reason"]

    # Redelivered long after its run exists: acknowledged, still one run; the listener is alive.
    submit_job(redis_client, job(dup_id))
    late_id = f"late-{prefix}"
    submit_job(redis_client, job(late_id))
    wait_until(lambda: len(universe_load_runs(prefix)) >= 4 and drained(redis_client), 120, "late run")
    runs = sorted(run_id for run_id, _conf, _queued in universe_load_runs(prefix))
    assert runs == sorted(f"redis__{j}" for j in (crashed_id, dup_id, fallback_id, late_id))
