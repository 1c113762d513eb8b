from __future__ import annotations

import json
import threading

import pytest
import redis

from tickstock.job_status import (
    BEFORE_PROCESSING,
    RESULT_COUNTERS,
    STATUS_CHANNEL,
    JobState,
    JobStatusStore,
    status_key,
)

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
        "hourly_requests": 0,
        "daily_requests": 0,
        "weekly_requests": 0,
        "monthly_requests": 0,
        "grouped_daily_requests": 0,
        "ticker_details_requests": 0,
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


class TestConditionalUpdate:
    """``if_status_in``: the check and the write are one script, so no writer can slip between."""

    @pytest.mark.parametrize("prior", ["absent", "no status field", "queued"])
    def test_queued_applies_before_processing(self, redis_client, status_feed, prior):
        store = JobStatusStore(redis_client)
        if prior == "no status field":
            store.update("job-5", errors=["an early error"])
        elif prior == "queued":
            store.update("job-5", status=JobState.QUEUED, message="Queued (redelivered)")
        status_feed.published()

        state = store.update("job-5", status=JobState.QUEUED, message="Queued as run r", if_status_in=BEFORE_PROCESSING)

        assert state.applied is True
        assert (state["status"], state["message"]) == ("queued", "Queued as run r")
        assert store.get("job-5") == state
        assert status_feed.published() == [state]

    @pytest.mark.parametrize(
        "prior",
        [JobState.PROCESSING, JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED],
    )
    def test_queued_is_refused_after_the_run_reported(self, redis_client, status_feed, report_run, prior):
        store = JobStatusStore(redis_client)
        report_run(store, "job-6")
        if prior is not JobState.PROCESSING:
            store.update("job-6", status=prior, progress=100, message="done", batches_done=8)
        redis_client.expire(status_key("job-6"), 60)
        raw_before = redis_client.hgetall(status_key("job-6"))
        before = store.get("job-6")
        status_feed.published()

        state = store.update(
            "job-6",
            status=JobState.QUEUED,
            progress=0,
            message="Queued as run r",
            errors=["must not be kept"],
            if_status_in=BEFORE_PROCESSING,
        )

        assert state.applied is False
        assert state == before  # the current state, untouched
        assert state["status"] == prior.value
        assert redis_client.hgetall(status_key("job-6")) == raw_before
        assert redis_client.ttl(status_key("job-6")) <= 60  # not even the TTL was renewed
        assert status_feed.published() == []  # subscribers never see it go backwards

    def test_any_set_of_states_can_be_required(self, redis_client):
        store = JobStatusStore(redis_client)
        only_new_or_failed = {None, JobState.FAILED}
        assert store.update("job-7", status="failed", message="bad", if_status_in=only_new_or_failed).applied
        assert store.update("job-7", status="failed", message="worse", if_status_in={None, "failed"}).applied
        store.update("job-7", status="processing")
        refused = store.update("job-7", status="failed", if_status_in=only_new_or_failed)
        assert not refused.applied
        assert store.get("job-7")["status"] == "processing"

    def test_refused_write_of_an_unknown_job_creates_nothing(self, redis_client, status_feed):
        store = JobStatusStore(redis_client)
        state = store.update("job-8", status="failed", if_status_in={JobState.FAILED})
        assert (state.applied, state) == (False, {})
        assert store.get("job-8") is None
        assert redis_client.exists(status_key("job-8"), f"{status_key('job-8')}:errors") == 0
        assert status_feed.published() == []

    def test_without_a_condition_the_run_may_move_its_job_back(self, redis_client):
        # Clearing a finished run re-runs plan_load, which reports processing again on purpose.
        store = JobStatusStore(redis_client)
        store.update("job-9", status=JobState.COMPLETED, progress=100)
        state = store.update("job-9", status=JobState.PROCESSING, progress=0)
        assert state.applied is True
        assert state["status"] == "processing"

    def test_works_on_a_client_returning_bytes(self, service_urls, redis_client, report_run):
        raw_client = redis.Redis.from_url(service_urls.redis_url)
        store = JobStatusStore(raw_client)
        assert store.update("job-10", status="queued", if_status_in=BEFORE_PROCESSING).applied
        report_run(store, "job-10")
        refused = store.update("job-10", status="queued", if_status_in=BEFORE_PROCESSING)
        assert (refused.applied, refused["status"]) == (False, "processing")
        raw_client.close()

    def test_bad_conditions_are_rejected(self, redis_client):
        store = JobStatusStore(redis_client)
        with pytest.raises(ValueError, match="if_status_in is empty"):
            store.update("job-11", status="queued", if_status_in=())
        with pytest.raises(ValueError, match="'started' is not a valid JobState"):
            store.update("job-11", status="queued", if_status_in={None, "started"})
        assert store.get("job-11") is None


def test_a_restarted_job_counts_from_zero(redis_client, status_feed):
    """A run cleared in Airflow starts its job again: progress and counters are this run's only."""
    store = JobStatusStore(redis_client)
    store.start("job-r", total_symbols=2, batches_total=4, message="first run")
    for _ in range(4):
        store.update("job-r", increments={"daily_bars": 2}, errors=["SCHG: day bars: 503"], batches_done=1)
    store.update("job-r", status=JobState.COMPLETED, progress=100, results={"daily_bars": 4})

    started = store.start("job-r", total_symbols=2, batches_total=4, message="second run", fields={"run_id": "r2"})
    assert (started["status"], started["progress"], started["run_id"]) == ("processing", 0, "r2")
    assert started["results"] == {**dict.fromkeys(RESULT_COUNTERS, 0), "errors": []}
    after_one = store.update("job-r", increments={"daily_bars": 2}, batches_done=1)
    assert after_one["progress"] == 25
    assert after_one["results"]["daily_bars"] == 2
    assert [s["status"] for s in status_feed.published()] == [
        *["processing"] * 5,
        "completed",
        "processing",
        "processing",
    ]
