"""Deferrable sensor: succeed when a Redis Stream consumer group has entries to process."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from tickstock_airflow.triggers.redis_stream import RedisStreamTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class RedisStreamSensor(BaseSensorOperator):
    """Wait for pending or undelivered entries of ``group`` on ``stream``; never claims them.

    The sensor always defers to :class:`RedisStreamTrigger`, so no worker slot is held while
    the stream is idle. One synchronous check runs first: work that is already waiting (a crashed
    run's pending entries, a backlog) is picked up without a round trip through the triggerer.

    :param stream: the Redis Stream key (templated)
    :param group: the consumer group (templated)
    :param redis_conn_id: Airflow connection of the Redis server
    :param block_seconds: longest single blocking read inside the trigger
    :param idle_seconds: succeed with ``{"status": "idle"}`` after this long without work, so a
        continuously scheduled DAG run ends normally (its downstream tasks find nothing to do)
    """

    template_fields: Sequence[str] = ("stream", "group")

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        redis_conn_id: str = "tickstock_redis",
        block_seconds: float = 30.0,
        idle_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.group = group
        self.redis_conn_id = redis_conn_id
        self.block_seconds = block_seconds
        self.idle_seconds = idle_seconds

    def poke(self, context: Context) -> bool:
        from airflow.providers.redis.hooks.redis import RedisHook

        from tickstock.intake import JobStream

        client = RedisHook(redis_conn_id=self.redis_conn_id).get_conn()
        try:
            return JobStream(client, stream=self.stream, group=self.group).has_work()
        finally:
            client.close()

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.poke(context):
            self.log.info("%s already has work for group %s", self.stream, self.group)
            return {"status": "work"}
        self.defer(
            trigger=RedisStreamTrigger(
                stream=self.stream,
                group=self.group,
                redis_conn_id=self.redis_conn_id,
                block_seconds=self.block_seconds,
                idle_seconds=self.idle_seconds,
            ),
            method_name="execute_complete",
            timeout=self._deferral_timeout(),
        )
        return None

    def _deferral_timeout(self) -> timedelta | None:
        if self.timeout is None or isinstance(self.timeout, timedelta):
            return self.timeout
        return timedelta(seconds=self.timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: the group has work, or the idle time ran out."""
        self.log.info("Trigger reported work on %s: %s", self.stream, event)
        return event or {"status": "work"}
