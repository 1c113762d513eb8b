from __future__ import annotations

import pytest

from tickstock.intake import GROUP, STREAM, submit_job
from tickstock_airflow.sensors.redis_stream import RedisStreamSensor
from tickstock_airflow.triggers.redis_stream import RedisStreamTrigger

pytestmark = pytest.mark.integration


def make_sensor() -> RedisStreamSensor:
    return RedisStreamSensor(
        task_id="wait_for_jobs", stream=STREAM, group=GROUP, redis_conn_id="tickstock_redis", idle_seconds=60
    )


def test_defers_to_the_stream_trigger_when_idle(redis_client):
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as info:
        make_sensor().execute(context={})
    trigger = info.value.trigger
    assert isinstance(trigger, RedisStreamTrigger)
    assert (trigger.stream, trigger.group, trigger.idle_seconds) == (STREAM, GROUP, 60)
    assert info.value.method_name == "execute_complete"


def test_returns_at_once_when_work_is_waiting(redis_client):
    submit_job(redis_client, "job")
    assert make_sensor().execute(context={}) == {"status": "work"}


def test_execute_complete_passes_the_event_on():
    assert make_sensor().execute_complete({}, {"status": "idle", "pending": 0})["status"] == "idle"
