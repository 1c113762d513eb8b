from __future__ import annotations

import asyncio

import pytest

from tickstock.intake import GROUP, STREAM, JobStream, submit_job
from tickstock_airflow.triggers.redis_stream import RedisStreamTrigger, redis_client_kwargs

pytestmark = pytest.mark.integration


def make_trigger(**kwargs: object) -> RedisStreamTrigger:
    return RedisStreamTrigger(stream=STREAM, group=GROUP, redis_conn_id="tickstock_redis", **kwargs)


async def first_event(trigger: RedisStreamTrigger):
    return await anext(trigger.run())


def test_serialize_round_trip_uses_an_importable_classpath():
    import importlib

    classpath, kwargs = make_trigger(block_seconds=5, idle_seconds=60).serialize()
    assert classpath == "tickstock_airflow.triggers.redis_stream.RedisStreamTrigger"
    module, _, name = classpath.rpartition(".")
    clone = getattr(importlib.import_module(module), name)(**kwargs)
    assert clone.serialize() == (classpath, kwargs)


def test_fires_when_an_entry_arrives_while_waiting(redis_client):
    async def scenario():
        waiting = asyncio.create_task(first_event(make_trigger(block_seconds=5)))
        await asyncio.sleep(0.3)  # load shaping: let the trigger block first (not a sync point)
        assert not waiting.done()
        await asyncio.to_thread(submit_job, redis_client, "job")
        return await asyncio.wait_for(waiting, 20)

    event = asyncio.run(scenario())
    assert event.payload["status"] == "work"
    # Observing only: the entry was not handed out, so nothing is pending.
    assert JobStream(redis_client).pending_count() == 0


def test_fires_at_once_for_pending_entries_of_a_crashed_run(redis_client):
    submit_job(redis_client, "job")
    JobStream(redis_client, consumer="crashed").claim(10)
    event = asyncio.run(asyncio.wait_for(first_event(make_trigger()), 20))
    assert event.payload == {"status": "work", "pending": 1}


def test_idle_timeout_fires_an_idle_event(redis_client):
    event = asyncio.run(asyncio.wait_for(first_event(make_trigger(block_seconds=5, idle_seconds=0.5)), 20))
    assert event.payload["status"] == "idle"


def test_waits_through_a_redis_outage(redis_client, monkeypatch):
    """Connection failures are retried with backoff instead of failing the waiting task."""
    import redis.asyncio as aioredis

    trigger = make_trigger(block_seconds=1, max_backoff_seconds=0.2)
    real_client = trigger._client
    failures = {"left": 2}

    async def flaky_client():
        if failures["left"]:
            failures["left"] -= 1
            return aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=None)
        return await real_client()

    monkeypatch.setattr(trigger, "_client", flaky_client)
    submit_job(redis_client, "job")
    event = asyncio.run(asyncio.wait_for(first_event(trigger), 20))
    assert failures["left"] == 0
    assert event.payload["status"] == "work"


def test_redis_client_kwargs_mirror_the_redis_hook():
    from airflow.models.connection import Connection

    conn = Connection(
        conn_id="x", conn_type="redis", host="h", port=6380, login="u", password="p",
        extra={"db": 3, "ssl": True, "ssl_cert_reqs": "none", "cluster": False},
    )  # fmt: skip
    assert redis_client_kwargs(conn) == {
        "host": "h", "port": 6380, "username": "u", "password": "p", "db": 3,
        "ssl": True, "ssl_cert_reqs": "none",
    }  # fmt: skip


def test_a_long_blocking_read_is_not_cut_short_by_the_socket_timeout(redis_client, caplog):
    """redis-py's default 5 s socket timeout must not turn a 6 s XREAD into a reconnect."""
    trigger = make_trigger(block_seconds=6, idle_seconds=6)
    event = asyncio.run(asyncio.wait_for(first_event(trigger), 30))
    assert event.payload["status"] == "idle"
    assert "Redis unavailable" not in caplog.text
