"""Durable intake of TickStockAppV2 job messages: pub/sub channel → Redis Stream → consumers.

Redis pub/sub keeps nothing: a message PUBLISHed while nobody is subscribed is gone. So the only
thing that ever listens on the channel is :func:`run_bridge`, a tiny process that is subscribed
at all times and copies every message into a Redis Stream (``XADD``) before anything else
happens. From there on the message is durable: the Airflow listener reads the stream through a
consumer group, and an entry stays pending until the listener acknowledges it, so a crash
anywhere downstream means redelivery, never loss.

Several bridges may run at once (the way to keep a subscriber up while one restarts): each
message is written with one Lua script that sets a short-lived "seen" key for the payload and
XADDs only if the key was new, so redundant bridges never duplicate an entry.

Producers that can, should skip pub/sub and ``XADD`` to :data:`STREAM` directly
(:func:`submit_job`), or use :func:`publish_job`, which falls back to ``XADD`` when ``PUBLISH``
reports that no bridge received the message.

CLI::

    python -m tickstock.intake bridge [--redis-url URL] [--name NAME]
    python -m tickstock.intake status [--redis-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

CHANNEL = "tickstock.jobs.data_load"
STREAM = "tickstock.jobs.data_load.stream"
DEAD_LETTER_STREAM = "tickstock.jobs.data_load.dead"
GROUP = "airflow"
SEEN_KEY_PREFIX = "tickstock.jobs.data_load.seen:"
BRIDGE_KEY_PREFIX = "tickstock.jobs.data_load.bridge:"
REDIS_URL_ENV = "TICKSTOCK_REDIS_URL"
#: How long redundant bridges remember a payload; far longer than any delivery skew between them.
SEEN_TTL_SECONDS = 600
BRIDGE_HEARTBEAT_SECONDS = 5
DEAD_LETTER_MAXLEN = 10_000

# KEYS: seen key, stream. ARGV: payload, ttl, via, received_at.
_FORWARD_LUA = """
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', tonumber(ARGV[2])) then
  return redis.call('XADD', KEYS[2], '*', 'data', ARGV[1], 'received_at', ARGV[4], 'via', ARGV[3])
end
return false
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------
# Producers
# --------------------------------------------------------------------------------------------


def _payload(message: Mapping[str, Any] | str | bytes) -> str | bytes:
    return message if isinstance(message, str | bytes) else json.dumps(message)


def submit_job(client: redis.Redis, message: Mapping[str, Any] | str | bytes, *, via: str = "xadd") -> str:
    """Append a job message to the intake stream directly (the durable producer path)."""
    entry_id = client.xadd(STREAM, {"data": _payload(message), "received_at": _now(), "via": via})
    return _text(entry_id) or ""


def publish_job(client: redis.Redis, message: Mapping[str, Any] | str | bytes) -> int:
    """PUBLISH a job message; when no bridge is subscribed, XADD it instead of losing it.

    :returns: the number of subscribers that received it (0 means it went to the stream directly)
    """
    payload = _payload(message)
    receivers = int(client.publish(CHANNEL, payload))
    if receivers == 0:
        log.warning("no subscriber on %s; appended the message to %s directly", CHANNEL, STREAM)
        submit_job(client, payload, via="publish-fallback")
    return receivers


# --------------------------------------------------------------------------------------------
# The bridge
# --------------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential reconnect delay: quick after a blip, bounded during an outage.

    The cap is what bounds the loss window after Redis comes back: a bridge is resubscribed at
    most ``maximum`` seconds after the server accepts connections again.
    """

    initial: float = 0.1
    maximum: float = 2.0
    factor: float = 2.0
    _next: float = 0.0

    def reset(self) -> None:
        self._next = 0.0

    def next_delay(self) -> float:
        self._next = self.initial if self._next == 0 else min(self.maximum, self._next * self.factor)
        return self._next


class Bridge:
    """Copy every message on :data:`CHANNEL` into :data:`STREAM`, reconnecting forever.

    :param redis_url: the Redis holding both the channel and the stream
    :param name: identifies this bridge in stream entries and its heartbeat key
    :param backoff: reconnect delays
    """

    def __init__(self, redis_url: str, *, name: str | None = None, backoff: Backoff | None = None) -> None:
        self.redis_url = redis_url
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.backoff = backoff or Backoff()
        self.stop_event = threading.Event()
        self.forwarded = 0
        self._unsent: list[bytes] = []

    def stop(self) -> None:
        self.stop_event.set()

    def run(self, on_subscribed: Callable[[], None] | None = None) -> None:
        """Run until :meth:`stop`; every connection failure leads to a resubscribe."""
        while not self.stop_event.is_set():
            client = redis.Redis.from_url(
                self.redis_url, socket_keepalive=True, socket_connect_timeout=5, health_check_interval=10
            )
            try:
                self._serve(client, on_subscribed)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                delay = self.backoff.next_delay()
                log.warning("bridge %s lost Redis (%s); reconnecting in %.1fs", self.name, exc, delay)
                self.stop_event.wait(delay)
            finally:
                client.close()
        log.info("bridge %s stopped after forwarding %d message(s)", self.name, self.forwarded)

    def _serve(self, client: redis.Redis, on_subscribed: Callable[[], None] | None) -> None:
        forward = client.register_script(_FORWARD_LUA)
        # Anything received but not yet written when the last connection broke goes first; the
        # seen-key makes a retry of a write that did succeed a no-op.
        while self._unsent:
            self._forward(forward, self._unsent[0])
            self._unsent.pop(0)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(CHANNEL)
            next_heartbeat = 0.0
            while not self.stop_event.is_set():
                # A blocking wait of up to 1 s: idle costs one wake-up a second, not a busy loop.
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    pass
                elif message["type"] == "subscribe":
                    self.backoff.reset()
                    log.info("bridge %s subscribed to %s → %s", self.name, CHANNEL, STREAM)
                    if on_subscribed:
                        on_subscribed()
                elif message["type"] == "message":
                    self._unsent.append(message["data"])
                    self._forward(forward, message["data"])
                    self._unsent.pop()
                now = time.monotonic()
                if now >= next_heartbeat:
                    client.set(f"{BRIDGE_KEY_PREFIX}{self.name}", _now(), ex=BRIDGE_HEARTBEAT_SECONDS * 3)
                    next_heartbeat = now + BRIDGE_HEARTBEAT_SECONDS
        finally:
            pubsub.close()

    def _forward(self, script: Any, data: bytes) -> None:
        seen = f"{SEEN_KEY_PREFIX}{hashlib.sha256(data).hexdigest()}"
        entry_id = script(keys=[seen, STREAM], args=[data, SEEN_TTL_SECONDS, f"bridge:{self.name}", _now()])
        if entry_id:
            self.forwarded += 1
            log.debug("bridge %s forwarded a message as %s", self.name, _text(entry_id))


def run_bridge(redis_url: str, *, name: str | None = None) -> None:
    """Run a bridge in the foreground until SIGTERM/SIGINT."""
    bridge = Bridge(redis_url, name=name)

    def _stop(signum: int, _frame: object) -> None:
        log.info("bridge %s received signal %d", bridge.name, signum)
        bridge.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bridge.run()


# --------------------------------------------------------------------------------------------
# Consumers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEntry:
    """One intake entry handed to a consumer.

    :param entry_id: the stream id, used to acknowledge it
    :param data: the raw job message (``None`` when the entry was trimmed while pending)
    :param deliveries: how often the group has handed it out, this time included
    """

    entry_id: str
    data: str | None
    deliveries: int = 1


class JobStream:
    """The consumer side of the intake stream, shared by the Airflow sensor and listener tasks.

    :param client: a synchronous Redis client (``decode_responses`` on or off)
    :param consumer: this consumer's name inside the group
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = STREAM,
        group: str = GROUP,
        dead_letter_stream: str = DEAD_LETTER_STREAM,
        consumer: str = "listener",
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.dead_letter_stream = dead_letter_stream
        self.consumer = consumer

    def ensure_group(self) -> None:
        """Create the stream and group if missing; the group starts at the stream's beginning.

        Starting at ``0`` rather than ``$`` means entries XADDed before the group existed (a
        first deployment, a producer writing directly) are still delivered.
        """
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def pending_count(self) -> int:
        """Return the number of entries handed out but not acknowledged."""
        return int(self.client.xpending(self.stream, self.group)["pending"])

    def has_undelivered(self) -> bool:
        """Return whether the stream holds entries the group has not handed out yet."""
        groups = self.client.xinfo_groups(self.stream)
        last = next(_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == self.group)
        return bool(self.client.xread({self.stream: last}, count=1))

    def has_work(self) -> bool:
        """Return whether anything is pending or undelivered (the sensor's cheap first check)."""
        self.ensure_group()
        return self.pending_count() > 0 or self.has_undelivered()

    def claim(self, limit: int) -> list[StreamEntry]:
        """Take up to ``limit`` entries: first every pending one (a crashed run's), then new ones.

        Pending entries are claimed regardless of idle time: the listener runs one at a time, so
        a pending entry always belongs to a run that died before acknowledging it.
        """
        self.ensure_group()
        entries: list[tuple[Any, Any]] = []
        cursor: Any = "0-0"
        while len(entries) < limit:
            result = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=limit - len(entries),
            )
            cursor, claimed = result[0], result[1]
            entries.extend(claimed)
            if _text(cursor) == "0-0":
                break
        entries = entries[:limit]
        if len(entries) < limit:
            fresh = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=limit - len(entries))
            for _stream, items in fresh or []:
                entries.extend(items)
        deliveries = self._deliveries([_text(entry_id) or "" for entry_id, _ in entries])
        result_entries = []
        for entry_id, fields in entries:
            eid = _text(entry_id) or ""
            data = None
            if fields:
                data = _text(fields.get(b"data", fields.get("data")))
            result_entries.append(StreamEntry(eid, data, deliveries.get(eid, 1)))
        return result_entries

    def _deliveries(self, entry_ids: Sequence[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        counts: dict[str, int] = {}
        ordered = sorted(entry_ids, key=lambda e: tuple(int(p) for p in e.split("-")))
        rows = self.client.xpending_range(
            self.stream, self.group, min=ordered[0], max=ordered[-1], count=len(ordered) * 2 + 10
        )
        for row in rows:
            counts[_text(row["message_id"]) or ""] = int(row["times_delivered"])
        return counts

    def ack(self, entry_ids: Sequence[str]) -> None:
        """Acknowledge and delete entries: they are done (their run exists or was rejected).

        Deleting keeps the stream at "work not yet done"; the run and the job status are the
        record of what happened.
        """
        if not entry_ids:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *entry_ids)
            pipe.xdel(self.stream, *entry_ids)
            pipe.execute()

    def dead_letter(self, entry: StreamEntry, *, reason: str, job_id: str | None) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        fields = {
            "data": entry.data if entry.data is not None else "",
            "reason": reason,
            "job_id": job_id or "",
            "entry_id": entry.entry_id,
            "deliveries": entry.deliveries,
            "failed_at": _now(),
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.xack(self.stream, self.group, entry.entry_id)
            pipe.xdel(self.stream, entry.entry_id)
            pipe.execute()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def status(client: redis.Redis) -> dict[str, Any]:
    """Return what an operator wants to know: subscribers, backlog, dead letters, live bridges."""
    stream = JobStream(client)
    stream.ensure_group()
    numsub = client.pubsub_numsub(CHANNEL)
    bridges = sorted(
        (_text(key) or "").removeprefix(BRIDGE_KEY_PREFIX) for key in client.scan_iter(f"{BRIDGE_KEY_PREFIX}*")
    )
    return {
        "channel_subscribers": int(numsub[0][1]) if numsub else 0,
        "bridges": bridges,
        "stream_length": int(client.xlen(STREAM)),
        "pending": stream.pending_count(),
        "dead_letters": int(client.xlen(DEAD_LETTER_STREAM)) if client.exists(DEAD_LETTER_STREAM) else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickstock.intake", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["bridge", "status"])
    parser.add_argument("--redis-url", default=os.environ.get(REDIS_URL_ENV))
    parser.add_argument("--name", help="bridge name (default: host:pid)")
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error(f"--redis-url or ${REDIS_URL_ENV} is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bridge":
        run_bridge(args.redis_url, name=args.name)
    else:
        print(json.dumps(status(redis.Redis.from_url(args.redis_url)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
