"""The Redis-shared request budget, against the real (embedded) Redis.

Waits are asserted as the inequalities GCRA guarantees (a slot is never earlier than its place in
the schedule, nor later than the schedule plus the time the calls took), never as wall-clock sleeps.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import threading
import time

import pytest
import redis

from tickstock.rate_budget import KEY_PREFIX, Rate, RateBudget, parse_rate

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("text", "requests", "seconds"),
    [
        ("100/s", 100, 1.0),
        ("5/min", 5, 60.0),
        ("5/m", 5, 60.0),
        (" 300 / h ", 300, 3600.0),
        ("10/2s", 10, 2.0),
    ],
)
def test_parse_rate(text, requests, seconds):
    assert parse_rate(text) == Rate(requests, seconds)


@pytest.mark.parametrize("text", ["100", "5/fortnight", "0/s", "-1/s", "fast"])
def test_parse_rate_rejects_nonsense(text):
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def _reserve_many(budget: RateBudget, n: int) -> tuple[list[float], float]:
    started = time.monotonic()
    waits = [budget.reserve() for _ in range(n)]
    return waits, time.monotonic() - started


def test_reservations_follow_the_schedule_of_one_request_per_interval(redis_client):
    budget = RateBudget(redis_client, "schedule", "10/s", headroom=0)
    waits, took = _reserve_many(budget, 20)
    assert waits[0] == 0
    for k, wait in enumerate(waits):
        assert k * 0.1 - took - 1e-6 <= wait <= k * 0.1 + 1e-6


def test_burst_requests_may_start_together_then_the_rate_applies(redis_client):
    budget = RateBudget(redis_client, "burst", "2/s", burst=3, headroom=0)
    waits, took = _reserve_many(budget, 5)
    assert waits[:3] == [0, 0, 0]
    assert 0.5 - took <= waits[3] <= 0.5
    assert 1.0 - took <= waits[4] <= 1.0


def test_every_client_with_the_same_name_shares_one_budget_and_other_names_do_not(service_urls, redis_client):
    other_client = redis.Redis.from_url(service_urls.redis_url)  # another connection, bytes replies
    first = RateBudget(redis_client, "shared", "1/min", headroom=0)
    second = RateBudget(other_client, "shared", "1/min", headroom=0)
    unrelated = RateBudget(other_client, "unrelated", "1/min", headroom=0)
    assert first.reserve() == 0
    assert 59 <= second.reserve() <= 60
    assert 119 <= first.reserve() <= 120
    assert unrelated.reserve() == 0
    other_client.close()


def test_headroom_spaces_requests_wider_than_the_nominal_rate(redis_client):
    budget = RateBudget(redis_client, "headroom", "20/s")  # default 10% headroom
    assert budget.interval == pytest.approx(0.05 / 0.9)
    waits, took = _reserve_many(budget, 3)
    assert 2 * budget.interval - took <= waits[2] <= 2 * budget.interval + 1e-6


def test_the_key_expires_once_the_schedule_is_idle(redis_client):
    budget = RateBudget(redis_client, "ttl", "5/s")
    budget.reserve()
    ttl_ms = redis_client.pttl(f"{KEY_PREFIX}ttl")
    assert 0 < ttl_ms <= budget.interval * 1000 + 1001


def test_acquire_sleeps_exactly_the_reserved_wait(redis_client):
    slept: list[float] = []
    budget = RateBudget(redis_client, "acquire", "4/s", headroom=0, sleep=slept.append)
    assert budget.acquire() == 0
    second = budget.acquire()
    assert slept == [second]
    assert 0 < second <= 0.25


def test_burst_and_headroom_are_checked(redis_client):
    with pytest.raises(ValueError, match="burst"):
        RateBudget(redis_client, "x", "1/s", burst=0)
    with pytest.raises(ValueError, match="headroom"):
        RateBudget(redis_client, "x", "1/s", headroom=1)


def test_the_send_log_admits_at_most_the_rate_in_any_window(redis_client):
    budget = RateBudget(redis_client, "admit", "3/s", headroom=0)
    started = time.monotonic()
    assert [budget.admit() for _ in range(3)] == [0, 0, 0]
    fourth = budget.admit()
    took = time.monotonic() - started
    # The fourth send must wait until the first one leaves the 1-second window (and is not logged).
    assert 1.0 - took <= fourth <= 1.0 + 1e-5
    assert redis_client.zcard(budget.sent_key) == 3
    assert budget.admit() > 0


def test_the_send_window_is_widened_by_the_headroom(redis_client):
    budget = RateBudget(redis_client, "window", "100/s")  # default 10% headroom
    assert budget.window == pytest.approx(1 / 0.9)
    assert all(budget.admit() == 0 for _ in range(100))
    assert 1 / 0.9 - 1.0 < budget.admit() <= 1 / 0.9 + 1e-5


def test_senders_that_wake_late_do_not_leave_together(redis_client):
    """GCRA bounds reservations; the send log bounds departures.

    The owners of the slots between 0.45 s and 0.95 s oversleep by 300 ms, as threads do on a
    saturated machine, and then leave together with the on-time owners of the next slots: on
    reservations alone some second would see 13 departures at 10/s.
    """
    rate, sends, threads = 10, 30, 12
    lock = threading.Lock()
    departures: list[float] = []
    started = time.monotonic()

    def late_sleep(seconds: float) -> None:
        slot = time.monotonic() + seconds - started
        time.sleep(seconds + (0.3 if 0.45 <= slot < 0.95 else 0.0))

    budget = RateBudget(redis_client, "late", f"{rate}/s", headroom=0, sleep=late_sleep)

    def send(_: int) -> None:
        budget.acquire()
        with lock:
            departures.append(time.monotonic())

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(sends)))
    departures.sort()
    # 20 ms of slack for the gap between Redis's clock at the gate and this process's clock.
    busiest = max(bisect.bisect_left(departures, t + 0.98) - i for i, t in enumerate(departures))
    assert len(departures) == sends
    assert busiest <= rate
