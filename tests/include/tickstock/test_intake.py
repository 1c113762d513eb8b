from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tickstock.intake import (
    CHANNEL,
    STREAM,
    Backoff,
    Bridge,
    JobStream,
    main,
    publish_job,
    status,
    submit_job,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration


def wait_until(condition: Callable[[], object], timeout: float = 20) -> None:
    """Poll a condition with a deadline (a wait for an outcome, not a sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.02)


def subscribers(client) -> int:
    return int(client.pubsub_numsub(CHANNEL)[0][1])


@pytest.fixture
def start_bridge(service_urls) -> Iterator[Callable[[str], Bridge]]:
    started: list[tuple[Bridge, threading.Thread]] = []

    def start(name: str) -> Bridge:
        bridge = Bridge(service_urls.redis_url, name=name, backoff=Backoff(initial=0.05, maximum=0.5))
        subscribed = threading.Event()
        thread = threading.Thread(target=bridge.run, kwargs={"on_subscribed": subscribed.set}, daemon=True)
        thread.start()
        assert subscribed.wait(10)
        started.append((bridge, thread))
        return bridge

    yield start
    for bridge, thread in started:
        bridge.stop()
        thread.join(10)


def data_of(client) -> list[str]:
    return [fields["data"] for _id, fields in client.xrange(STREAM)]


def test_bridge_copies_every_message_into_the_stream_in_order(redis_client, start_bridge):
    bridge = start_bridge("b1")
    payloads = [json.dumps({"job_id": f"j{i}"}) for i in range(50)]
    for payload in payloads:
        assert redis_client.publish(CHANNEL, payload) == 1
    wait_until(lambda: redis_client.xlen(STREAM) == 50)
    assert data_of(redis_client) == payloads
    entry = redis_client.xrange(STREAM, count=1)[0][1]
    assert entry["via"] == "bridge:b1"
    assert bridge.forwarded == 50


def test_redundant_bridges_never_duplicate_an_entry(redis_client, start_bridge):
    b1, b2 = start_bridge("b1"), start_bridge("b2")
    for i in range(40):
        assert redis_client.publish(CHANNEL, json.dumps({"job_id": f"j{i}"})) == 2
    wait_until(lambda: b1.forwarded + b2.forwarded == 40)
    assert sorted(data_of(redis_client)) == sorted(json.dumps({"job_id": f"j{i}"}) for i in range(40))


def test_bridge_resubscribes_after_losing_its_connection(redis_client, start_bridge):
    start_bridge("b1")
    redis_client.publish(CHANNEL, "before")
    wait_until(lambda: redis_client.xlen(STREAM) == 1)
    assert redis_client.client_kill_filter(_type="pubsub") >= 1
    wait_until(lambda: subscribers(redis_client) == 1)
    assert redis_client.publish(CHANNEL, "after") == 1
    wait_until(lambda: redis_client.xlen(STREAM) == 2)
    assert data_of(redis_client) == ["before", "after"]
    assert status(redis_client)["bridges"] == ["b1"]


def test_publish_falls_back_to_the_stream_when_nobody_listens(redis_client):
    # Plain PUBLISH with no subscriber: Redis drops it. This is the loss publish_job avoids.
    assert redis_client.publish(CHANNEL, "lost") == 0
    assert publish_job(redis_client, {"job_id": "kept"}) == 0
    assert data_of(redis_client) == [json.dumps({"job_id": "kept"})]
    assert redis_client.xrange(STREAM)[0][1]["via"] == "publish-fallback"


def test_consumer_claims_pending_first_then_new_and_acks(redis_client):
    stream = JobStream(redis_client)
    assert not stream.has_work()
    ids = [submit_job(redis_client, f"m{i}") for i in range(5)]
    assert stream.has_work()

    crashed = JobStream(redis_client, consumer="crashed-run")
    assert [e.data for e in crashed.claim(2)] == ["m0", "m1"]  # then the run died
    assert stream.pending_count() == 2

    entries = stream.claim(10)
    assert [e.entry_id for e in entries] == ids
    assert [e.deliveries for e in entries] == [2, 2, 1, 1, 1]
    stream.ack([e.entry_id for e in entries[:4]])
    assert stream.pending_count() == 1
    assert redis_client.xlen(STREAM) == 1
    assert stream.has_work()  # m4 is still pending
    stream.ack([entries[4].entry_id])
    assert not stream.has_work()


def test_entries_written_before_the_group_existed_are_delivered(redis_client):
    submit_job(redis_client, "early")
    assert [e.data for e in JobStream(redis_client).claim(5)] == ["early"]


def test_status_cli(redis_client, service_urls, capsys):
    submit_job(redis_client, "x")
    assert main(["status", "--redis-url", service_urls.redis_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stream_length"] == 1
    assert report["pending"] == 0
    assert report["channel_subscribers"] == 0


def test_backoff_is_bounded_and_resets():
    backoff = Backoff(initial=0.1, maximum=0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next_delay() == 0.1
