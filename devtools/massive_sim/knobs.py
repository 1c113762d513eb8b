"""Runtime knobs (clock, data version, faults), the rate limiter and the request statistics.

Knobs have the same names as the CLI flags with underscores, can be changed at runtime through
``POST /_sim/config`` and go back to their start-up values on ``POST /_sim/reset``. Every random
fault draws from its own generator seeded from ``--seed``, so a given request sequence always sees
the same faults, and turning one fault on does not shift another's sequence.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import re
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from massive_sim.calendar import TIMESPANS
from massive_sim.splits import parse_split, split_spec

ENDPOINT_KINDS = ("aggs", "ticker_details", "grouped", "splits", "other")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute)\s*$")


def parse_now(raw: str | None) -> int | None:
    """ISO 8601 (``Z`` or an offset; naive means UTC) as epoch ms; None/"real" means the wall clock."""
    if raw is None or str(raw).strip().lower() in ("", "real", "none", "null"):
        return None
    value = dt.datetime.fromisoformat(str(raw).strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def parse_rate(raw: str | None) -> tuple[float, float] | None:
    """``"100/s"`` or ``"5/min"`` as (requests, window seconds); None disables the limit."""
    if raw is None or str(raw).strip().lower() in ("", "none", "null", "off"):
        return None
    m = _RATE_RE.match(str(raw))
    if not m:
        raise ValueError(f"rate_limit must look like 100/s or 5/min, not {raw!r}")
    return float(m.group(1)), 1.0 if m.group(2).startswith("s") else 60.0


def parse_latency(raw: Any) -> tuple[float, float]:
    """``N``, ``"MIN:MAX"`` or ``[MIN, MAX]`` milliseconds as a (min, max) pair."""
    if raw is None or raw == "":
        return 0.0, 0.0
    if isinstance(raw, (list, tuple)):
        lo, hi = float(raw[0]), float(raw[1])
    elif isinstance(raw, str) and ":" in raw:
        a, b = raw.split(":", 1)
        lo, hi = float(a), float(b)
    else:
        lo = hi = float(raw)
    if lo < 0 or hi < lo:
        raise ValueError(f"latency_ms must be N or MIN:MAX with 0 <= MIN <= MAX, not {raw!r}")
    return lo, hi


def _as_list(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [p.strip() for p in raw.split(",") if p.strip()]
    return [str(p).strip() for p in raw if str(p).strip()]


def _rate(value: Any, name: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return rate


@dataclass
class Knobs:
    """Every runtime-changeable setting. See devtools/massive_sim/README.md for each one."""

    now: str | None = None
    data_version: int = 0
    api_keys: list[str] = field(default_factory=lambda: ["sim-key"])
    rate_limit: str | None = None
    retry_after: float | None = None
    latency_ms: Any = 0
    error_rate: float = 0.0
    error_status: int | None = None
    forbidden_timespans: list[str] = field(default_factory=list)
    slow_ms: float = 0.0
    slow_rate: float = 1.0
    invalid_json_rate: float = 0.0
    duplicate_bar: bool = False
    repeat_next_url: bool = False
    fail_next_n: int = 0
    fail_next_status: int = 503
    to_snap: str = "window"
    #: Settable splits, ``SYMBOL:YYYY-MM-DD:TO:FROM[:TYPE]`` strings or API-shaped dicts.
    splits: list[Any] = field(default_factory=list)

    def validated(self) -> Knobs:
        """Normalise and check every value; raises ValueError with a readable message."""
        parse_now(self.now)
        parse_rate(self.rate_limit)
        parse_latency(self.latency_ms)
        self.data_version = int(self.data_version)
        self.api_keys = _as_list(self.api_keys)
        self.forbidden_timespans = _as_list(self.forbidden_timespans)
        bad = [t for t in self.forbidden_timespans if t not in TIMESPANS]
        if bad:
            raise ValueError(f"forbidden_timespans: unknown timespan(s) {bad}")
        self.retry_after = None if self.retry_after in (None, "") else float(self.retry_after)
        self.error_rate = _rate(self.error_rate, "error_rate")
        self.slow_rate = _rate(self.slow_rate, "slow_rate")
        self.invalid_json_rate = _rate(self.invalid_json_rate, "invalid_json_rate")
        self.slow_ms = float(self.slow_ms or 0)
        self.error_status = None if self.error_status in (None, "") else int(self.error_status)
        self.fail_next_n = int(self.fail_next_n)
        self.fail_next_status = int(self.fail_next_status)
        self.duplicate_bar = bool(self.duplicate_bar)
        self.repeat_next_url = bool(self.repeat_next_url)
        raw_splits = self.splits.split(",") if isinstance(self.splits, str) else list(self.splits or [])
        self.splits = [split_spec(parse_split(item)) for item in raw_splits if str(item).strip()]
        if self.to_snap not in ("window", "day"):
            raise ValueError("to_snap must be 'window' (the real API) or 'day'")
        return self

    def updated(self, changes: dict[str, Any]) -> Knobs:
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {sorted(names)}")
        return Knobs(**{**asdict(self), **changes}).validated()

    def public(self) -> dict[str, Any]:
        return asdict(self)


class RateLimiter:
    """At most N accepted requests in any sliding window (1 s or 60 s): exact, single process."""

    def __init__(self, spec: tuple[float, float] | None) -> None:
        self.spec = spec
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        if self.spec is None:
            return True
        limit, window = self.spec
        while self._times and now - self._times[0] >= window:
            self._times.popleft()
        if len(self._times) < limit:
            self._times.append(now)
            return True
        return False


def busiest_window(times: list[float], window: float) -> tuple[int, float | None]:
    """The largest number of timestamps in any half-open interval [t, t + window), and its t."""
    ts = sorted(times)
    best, start = 0, None
    for i, t in enumerate(ts):
        j = bisect.bisect_left(ts, t + window, lo=i)
        if j - i > best:
            best, start = j - i, t
    return best, start


def max_in_window(times: list[float], window: float) -> int:
    """Largest number of timestamps in any half-open interval [t, t + window)."""
    return busiest_window(times, window)[0]


#: an event-loop wake-up this late is a stall: arrivals meanwhile are stamped together when it ends
STALL_S = 0.05


def _stalled_near(start: float | None, stalls: list[tuple[float, float]]) -> float:
    """Seconds of loop stalls ending in (or up to 1 s before) the 1-s window starting at ``start``."""
    if start is None:
        return 0.0
    return sum(lag for end, lag in stalls if start - 1.0 <= end < start + 1.0)


class Stats:
    """Counts of API requests (admin calls excluded) and their arrival times."""

    def __init__(self, log_cap: int = 200_000) -> None:
        self.log_cap = log_cap
        self.clear()

    def clear(self) -> None:
        self.total = 0
        self.by_endpoint: dict[str, int] = dict.fromkeys(ENDPOINT_KINDS, 0)
        self.by_status: dict[str, int] = {}
        self.by_endpoint_status: dict[str, dict[str, int]] = {k: {} for k in ENDPOINT_KINDS}
        self.in_flight = 0
        self.generation = getattr(self, "generation", 0) + 1
        # [arrival epoch s, kind, path, status or None, arrival monotonic s, generation]
        self.log: list[list[Any]] = []
        self.loop_lag_max = 0.0
        self.loop_stalls: list[tuple[float, float]] = []  # (monotonic s at the stall's end, lag s)

    def loop_lag(self, now: float, lag: float) -> None:
        """Record how late the event loop woke a timer: the time every arrival then waited to be stamped."""
        self.loop_lag_max = max(self.loop_lag_max, lag)
        if lag >= STALL_S and len(self.loop_stalls) < self.log_cap:
            self.loop_stalls.append((now, lag))

    def arrive(self, kind: str, path: str) -> list[Any]:
        self.total += 1
        self.by_endpoint[kind] += 1
        self.in_flight += 1
        entry: list[Any] = [time.time(), kind, path, None, time.monotonic(), self.generation]
        if len(self.log) < self.log_cap:
            self.log.append(entry)
        return entry

    def finish(self, entry: list[Any], status: int) -> None:
        if entry[5] != self.generation:
            return  # arrived before the last clear: not part of these statistics
        self.in_flight -= 1
        entry[3] = status
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1
        per = self.by_endpoint_status[entry[1]]
        per[key] = per.get(key, 0) + 1

    def snapshot(self, include_log: bool) -> dict[str, Any]:
        arrivals = [e[0] for e in self.log]
        # Windows are measured on the monotonic clock the rate limiter uses, so they agree with it.
        mono = [e[4] for e in self.log]
        busiest, busiest_start = busiest_window(mono, 1.0)
        accepted = [e[4] for e in self.log if e[3] is not None and e[3] != 429]
        out: dict[str, Any] = {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "by_endpoint_status": {k: dict(v) for k, v in self.by_endpoint_status.items()},
            "in_flight": self.in_flight,
            "arrivals": arrivals,
            "max_in_any_1s": busiest,
            "max_accepted_in_any_1s": max_in_window(accepted, 1.0),
            "max_in_any_60s": max_in_window(mono, 60.0),
            "loop_lag_max_s": round(self.loop_lag_max, 4),
            "loop_stalls": len(self.loop_stalls),
            "loop_stalled_s": round(sum(lag for _, lag in self.loop_stalls), 3),
            "busiest_1s_stalled_s": round(_stalled_near(busiest_start, self.loop_stalls), 3),
        }
        if include_log:
            out["requests"] = [{"arrival": e[0], "endpoint": e[1], "path": e[2], "status": e[3]} for e in self.log]
        return out


class FaultDice:
    """One seeded generator per fault so the sequences are reproducible and independent."""

    def __init__(self, seed: int) -> None:
        self.error = random.Random(f"{seed}:error")
        self.error_status = random.Random(f"{seed}:error-status")
        self.latency = random.Random(f"{seed}:latency")
        self.slow = random.Random(f"{seed}:slow")
        self.invalid = random.Random(f"{seed}:invalid-json")

    @staticmethod
    def hit(rng: random.Random, rate: float) -> bool:
        """Draw only when the fault is on, so an off fault leaves its sequence untouched."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return rng.random() < rate
