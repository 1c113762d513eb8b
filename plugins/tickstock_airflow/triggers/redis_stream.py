"""Wait, without polling, until a Redis Stream has work for a consumer group.

The trigger only *observes*: it fires when the group has pending (handed out, never
acknowledged) entries or entries it has not handed out yet, and leaves claiming to the task that
resumes. So a trigger that is cancelled, restarted on another triggerer or fired twice changes
nothing in Redis; every entry stays in the stream until a listener run acknowledges it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import redis.asyncio as aioredis

SSL_EXTRAS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


def redis_client_kwargs(conn: Any) -> dict[str, Any]:
    """Translate an Airflow ``redis`` connection into ``redis.Redis`` keyword arguments.

    Mirrors what ``RedisHook.get_conn`` reads (host, port, login, password, ``db`` and the ssl
    extras), because the provider hook only builds a synchronous client.
    """
    extra = conn.extra_dejson
    password = conn.password if str(conn.password).lower() not in ("none", "false", "") else None
    kwargs: dict[str, Any] = {
        "host": conn.host or "localhost",
        "port": int(conn.port or 6379),
        "username": conn.login or None,
        "password": password,
        "db": int(extra.get("db") or 0),
    }
    kwargs.update({name: extra[name] for name in SSL_EXTRAS if name in extra})
    return kwargs


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamTrigger(BaseTrigger):
    """Fire once the consumer group ``group`` of ``stream`` has something to process.

    Waiting is a blocking ``XREAD`` from the group's last-delivered id, so an idle trigger costs
    one server round trip per ``block_seconds``; lost connections are retried with backoff
    instead of failing the waiting task.

    :param stream: the Redis Stream key
    :param group: the consumer group (created at the stream's start if missing)
    :param redis_conn_id: Airflow connection of the Redis server
    :param block_seconds: longest single blocking read before the loop re-checks pending work
    :param max_backoff_seconds: cap of the reconnect delay
    :param idle_seconds: fire ``{"status": "idle"}`` after this long without work (``None``:
        wait forever); lets a waiting DAG run end normally now and then instead of timing out
    """

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        redis_conn_id: str = "tickstock_redis",
        block_seconds: float = 30.0,
        max_backoff_seconds: float = 10.0,
        idle_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.group = group
        self.redis_conn_id = redis_conn_id
        self.block_seconds = block_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.idle_seconds = idle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "stream": self.stream,
                "group": self.group,
                "redis_conn_id": self.redis_conn_id,
                "block_seconds": self.block_seconds,
                "max_backoff_seconds": self.max_backoff_seconds,
                "idle_seconds": self.idle_seconds,
            },
        )

    async def _client(self) -> aioredis.Redis:
        import redis.asyncio as aioredis
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(self.redis_conn_id)
        # redis-py's default 5 s socket timeout would cut every longer blocking XREAD short.
        return aioredis.Redis(
            **redis_client_kwargs(conn),
            socket_keepalive=True,
            socket_connect_timeout=10,
            socket_timeout=self.block_seconds + 10,
        )

    async def _ensure_group(self, client: aioredis.Redis) -> None:
        import redis

        try:
            await client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _wait_for_work(self, client: aioredis.Redis, deadline: float | None) -> dict[str, Any]:
        await self._ensure_group(client)
        loop = asyncio.get_running_loop()
        while True:
            pending = int((await client.xpending(self.stream, self.group))["pending"])
            if pending:
                return {"status": "work", "pending": pending}
            groups = await client.xinfo_groups(self.stream)
            last = next(_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == self.group)
            block = self.block_seconds
            if deadline is not None:
                block = min(block, deadline - loop.time())
                if block <= 0:
                    return {"status": "idle", "pending": 0}
            # Anything newer than what the group has handed out is new work; XREAD does not
            # create pending entries, so this wait has no side effect on the group.
            if await client.xread({self.stream: last}, count=1, block=max(1, int(block * 1000))):
                return {"status": "work", "pending": 0}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import redis

        delay = 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.idle_seconds if self.idle_seconds is not None else None
        while True:
            client = await self._client()
            try:
                event = await self._wait_for_work(client, deadline)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                delay = min(self.max_backoff_seconds, max(0.2, delay * 2))
                self.log.warning("Redis unavailable for %s (%s); retrying in %.1fs", self.stream, exc, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                await client.aclose()
            self.log.info("%s for group %s: %s", self.stream, self.group, event)
            yield TriggerEvent(event)
            return
