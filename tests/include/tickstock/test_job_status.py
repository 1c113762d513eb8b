from __future__ import annotations

import json
import threading

import pytest

from tickstock.job_status import STATUS_CHANNEL, JobState, JobStatusStore, status_key

pytestmark = pytest.mark.integration


def test_status_hash_has_the_documented_fields_and_is_published(redis_client):
    store = JobStatusStore(redis_client)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(STATUS_CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"

    state = store.update("job-1", status=JobState.PROCESSING, progress=0, total_symbols=2, message="Starting")
    published = json.loads(pubsub.get_message(timeout=5)["data"])
    assert published == state
    assert state["job_id"] == "job-1"
    assert state["status"] == "processing"
    assert state["progress"] == 0
    assert state["total_symbols"] == 2
    assert state["results"] == {
        "symbols_loaded": 0,
        "symbols_failed": 0,
        "hourly_bars": 0,
        "daily_bars": 0,
        "weekly_bars": 0,
        "monthly_bars": 0,
        "errors": [],
    }
    assert "updated_at" in state
    assert store.get("job-1") == state
    ttl = redis_client.ttl(status_key("job-1"))
    assert 7 * 86400 - 5 < ttl <= 7 * 86400
    pubsub.close()


def test_concurrent_batches_never_lose_an_increment(redis_client):
    store = JobStatusStore(redis_client)
    store.update("job-2", status="processing", batches_total=40)

    def report(worker: int) -> None:
        own = JobStatusStore(redis_client)
        for i in range(5):
            own.update(
                "job-2",
                increments={"daily_bars": 3, "hourly_bars": 1},
                errors=[f"w{worker}-{i}"],
                batches_done=1,
            )

    threads = [threading.Thread(target=report, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = store.get("job-2")
    assert state["results"]["daily_bars"] == 120
    assert state["results"]["hourly_bars"] == 40
    assert len(state["results"]["errors"]) == 40
    assert state["progress"] == 99  # all batches done, but only the final update says 100

    final = store.update(
        "job-2",
        status=JobState.COMPLETED_WITH_ERRORS,
        progress=100,
        results={"symbols_loaded": 9, "symbols_failed": 1},
    )
    assert (final["status"], final["progress"]) == ("completed_with_errors", 100)
    assert final["results"]["symbols_loaded"] == 9
    assert final["results"]["daily_bars"] == 120


def test_bad_updates_are_rejected(redis_client):
    store = JobStatusStore(redis_client)
    with pytest.raises(ValueError, match="unknown result counter 'bars'"):
        store.update("job-3", increments={"bars": 1})
    with pytest.raises(ValueError, match="'done' is not a valid JobState"):
        store.update("job-3", status="done")
    with pytest.raises(ValueError, match="job_id is required"):
        store.update("", status="failed")
    assert store.get("job-3") is None


def test_final_summary_replaces_the_error_list(redis_client):
    store = JobStatusStore(redis_client)
    store.update("job-4", errors=["AAA: day bars: boom"])
    final = store.update(
        "job-4", status="completed_with_errors", errors=["AAA: boom", "BBB: unknown"], replace_errors=True
    )
    assert final["results"]["errors"] == ["AAA: boom", "BBB: unknown"]
