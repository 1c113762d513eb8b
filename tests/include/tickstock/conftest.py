from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tickstock.job_status import STATUS_CHANNEL, JobState, JobStatusStore
from tickstock.jobs import run_id_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis


class StatusFeed:
    """A real subscription to the job status channel, read without sleeping.

    Redis runs commands one at a time and delivers a channel's messages in that order, so a
    marker published after the code under test has returned arrives after everything that code
    published: reading up to the marker proves what was (and was not) published.
    """

    def __init__(self, client: redis.Redis, *, timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(STATUS_CHANNEL)
        assert self._next()["type"] == "subscribe"

    def _next(self) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message is not None:
                return message
        raise AssertionError(f"nothing arrived on {STATUS_CHANNEL} within {self._timeout} s")

    def published(self) -> list[dict[str, Any]]:
        """Return every status published since the last call, oldest first."""
        marker = f"marker-{uuid.uuid4()}"
        self._client.publish(STATUS_CHANNEL, marker)
        states = []
        while (data := self._next()["data"]) != marker:
            states.append(json.loads(data))
        return states

    def close(self) -> None:
        self._pubsub.close()


@pytest.fixture
def status_feed(redis_client: redis.Redis) -> Iterator[StatusFeed]:
    """Job statuses published on the test Redis, subscribed before the test acts."""
    feed = StatusFeed(redis_client)
    yield feed
    feed.close()


def _report_run(store: JobStatusStore, job_id: str, status: JobState = JobState.PROCESSING) -> None:
    """Write what the run's tasks write: ``plan_load``'s processing, then the end that closes the job."""
    store.update(
        job_id,
        status=JobState.PROCESSING,
        progress=0,
        total_symbols=2,
        batches_total=8,
        message="Starting load of 2 symbols",
        fields={"run_id": run_id_for(job_id), "source": ""},
    )
    if status is not JobState.PROCESSING:
        store.update(job_id, status=status, progress=100, message=f"run ended {status.value}")


@pytest.fixture
def report_run() -> Callable[..., None]:
    """``report_run(store, job_id, status=processing)``: the status writes of a universe_load run."""
    return _report_run
