"""A request budget shared by every worker process, kept in Redis.

Massive limits requests per API key (5/min on the free plan; "stay under 100/s" on paid plans),
while Airflow runs a load as many mapped tasks in separate processes, each with a thread pool.
A per-process limiter would multiply the budget by the number of processes, so the budget lives
in Redis and is spent atomically by one Lua script.

The algorithm is GCRA (a token bucket expressed as a "theoretical arrival time"): each call
reserves the next free slot and returns how long the caller must wait for it. Reserving instead of
polling means one round trip per request, callers are served in arrival order, and nobody spins.
Time comes from the Redis server's clock (``TIME``), so workers on different hosts with skewed
clocks still share one schedule. ``burst`` requests may go at once after an idle period; after
that requests are spaced ``1/rate`` apart, so any window of ``w`` seconds holds at most
``burst + rate * w`` request starts.

The server counts *arrivals*, and arrivals jitter. The larger part of it is on the client: under
CPU saturation (eight task processes on two cores) a thread that slept until its slot wakes tens
of milliseconds late, while the next slot's owner wakes on time, so two requests meant ``1/rate``
apart leave together; GCRA alone bounds reservations, not departures. So every request passes a
second gate right before it is sent: a sliding-window log of the actual *send* times (a Redis
sorted set, trimmed and counted by the same script that adds to it) admits at most ``requests``
sends in any window of ``seconds / (1 - headroom)``. That bound holds however late a sleeper
wakes; what remains is the delay between the gate and the server's clock (the sending thread
waiting for the GIL or a core, the server's own scheduling), and ``headroom`` absorbs up to
``headroom * seconds`` of its variation. The default, 10% (100/s becomes 100 per 1.11 s, paced at
90/s), is what a 500-symbol load on two saturated cores needed: with 5% (53 ms) the simulator's
busiest second was 100-101 against 100/s in loaded runs, with the gate; 105-112 without it.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "tickstock:rate_budget:"
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0}
#: the share of a rate left unused by default (see the module docstring)
DEFAULT_HEADROOM = 0.10
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")

# KEYS[1]: the budget's key. ARGV: interval (µs per request), tolerance (µs of allowed burst).
# Returns the µs the caller must wait before sending. Numbers are formatted with %.0f because
# Lua's tostring() would write large doubles in exponent form and lose precision.
_RESERVE_LUA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return string.format('%.0f', wait)
"""

# KEYS[1]: the send log (a sorted set of send times in µs). ARGV: window (µs), cap (sends allowed
# in any window), member (unique per send). Returns 0 after logging the send, or the µs until the
# oldest logged send leaves the window (the caller waits that long and asks again).
_ADMIT_LUA = """
local window = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) < cap then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return '0'
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
local wait = oldest + window - now + 1
if wait < 1 then wait = 1 end
return string.format('%.0f', wait)
"""


@dataclass(frozen=True)
class Rate:
    """A request rate such as 100 per second or 5 per minute.

    :param requests: requests allowed per ``seconds``
    :param seconds: the period length
    """

    requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.seconds <= 0:
            raise ValueError(f"a rate needs positive numbers, got {self.requests}/{self.seconds}s")

    @property
    def interval(self) -> float:
        """Seconds between two requests at this rate."""
        return self.seconds / self.requests

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}s"


def parse_rate(text: str | Rate) -> Rate:
    """Parse ``"100/s"``, ``"5/min"``, ``"5/m"``, ``"300/h"`` or ``"10/2s"`` into a :class:`Rate`."""
    if isinstance(text, Rate):
        return text
    match = _RATE_RE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValueError(f"rate {text!r} is not like '100/s', '5/min' or '300/h'")
    count, multiple, unit = match.groups()
    return Rate(int(count), float(multiple or 1) * _UNITS[unit])


class RateBudget:
    """A request budget shared through Redis by every process that uses the same ``name``.

    :param client: a Redis client (``decode_responses`` either way)
    :param name: what the budget limits, e.g. the Airflow connection id of the API; processes
        sharing a name share the budget
    :param rate: the budget, e.g. ``"100/s"`` or ``"5/min"``
    :param burst: requests that may start together after an idle period (at least 1; the send log
        still admits no more than ``rate.requests`` per window). One is the
        safe default for a server that counts requests in sliding windows.
    :param headroom: fraction kept unused to absorb arrival jitter (0.1 = pace at 90% of ``rate``
        and admit at most ``rate.requests`` sends per ``rate.seconds / 0.9``)
    :param sleep: how to wait (injected by unit tests that check the computed waits)
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        rate: str | Rate,
        *,
        burst: int = 1,
        headroom: float = DEFAULT_HEADROOM,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if not 0 <= headroom < 1:
            raise ValueError("headroom must be in [0, 1)")
        self.rate = parse_rate(rate)
        self.burst = burst
        self.key = f"{KEY_PREFIX}{name}"
        self.sent_key = f"{self.key}:sent"
        self._sleep = sleep
        self._script = client.register_script(_RESERVE_LUA)
        self._admit_script = client.register_script(_ADMIT_LUA)
        self.interval = self.rate.interval / (1 - headroom)
        self._interval_us = round(self.interval * 1_000_000)
        self._tolerance_us = (burst - 1) * self._interval_us
        #: any window this long holds at most ``rate.requests`` sends
        self.window = self.rate.seconds / (1 - headroom)
        self._window_us = round(self.window * 1_000_000)
        self._sender = uuid.uuid4().hex  # send-log members must be unique across processes
        self._sends = itertools.count()

    def reserve(self) -> float:
        """Reserve the next request slot; return the seconds to wait until it (0 = go now)."""
        waited = self._script(keys=[self.key], args=[self._interval_us, self._tolerance_us])
        return int(waited) / 1_000_000

    def admit(self) -> float:
        """Log one send now if the window has room (return 0), else the seconds until it has."""
        member = f"{self._sender}:{next(self._sends)}"
        waited = self._admit_script(keys=[self.sent_key], args=[self._window_us, self.rate.requests, member])
        return int(waited) / 1_000_000

    def acquire(self) -> float:
        """Wait until this process may send one request; return the seconds waited.

        Call it immediately before sending: the send is logged when this returns.
        """
        wait = self.reserve()
        if wait >= 1:
            log.info("Rate budget %s (%s): waiting %.1f s for a request slot", self.key, self.rate, wait)
        total = 0.0
        if wait > 0:
            self._sleep(wait)
            total += wait
        # The send-time gate: a sleeper that woke late must not leave together with the next slot.
        while (wait := self.admit()) > 0:
            self._sleep(wait)
            total += wait
        return total
