"""MassiveHook behaviour the simulator cannot produce (foreign next_url hosts, resets, HTTP dates, waits)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from tenacity import RetryCallState, Retrying

from tickstock_airflow.hooks.massive import (
    MassiveAuthError,
    MassiveHook,
    MassiveRequestError,
    MassiveUnavailableError,
    _Retry,
    equal_jitter_backoff,
    retry_after_delay,
    split_request_range,
    wait_retry_after,
)

BASE = "https://api.massive.test"
AGGS = f"{BASE}/v2/aggs/ticker/SPY/range/1/day/2025-12-01/2025-12-02"
BAR = {"o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 100, "t": 1764565200000}  # 2025-12-01 00:00 ET


@pytest.fixture(autouse=True)
def _conn(set_massive_conn, api_key):
    set_massive_conn(BASE, api_key)


def _hook(**kwargs) -> MassiveHook:
    return MassiveHook(**{"max_attempts": 3, "retry_base_delay": 0.001, "rate_limited_base_delay": 0.001} | kwargs)


def _state(attempt: int, failure: BaseException | None = None) -> RetryCallState:
    """The retry state tenacity hands a wait strategy after attempt number ``attempt`` failed."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if failure is not None:
        state.set_exception((type(failure), failure, None))
    return state


def _rate_limited(retry_after: str | None = None) -> _Retry:
    return _Retry("rate limited (429)", rate_limited=True, retry_after=retry_after)


def test_the_key_travels_as_a_bearer_header_and_next_url_is_fetched_from_the_connection_host(requests_mock, api_key):
    # A next_url naming another host, with an apiKey in it: neither is followed as given.
    next_url = "https://elsewhere.example/v2/aggs/ticker/SPY/range/1/day/1764651600000/2025-12-02?cursor=abc&apiKey=x"
    first = requests_mock.get(AGGS, json={"status": "OK", "results": [BAR], "next_url": next_url})
    second_bar = BAR | {"t": 1764651600000}
    second = requests_mock.get(
        f"{BASE}/v2/aggs/ticker/SPY/range/1/day/1764651600000/2025-12-02",
        json={"status": "OK", "results": [second_bar]},
    )
    parsed = _hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
    assert [b.period for b in parsed.bars] == [date(2025, 12, 1), date(2025, 12, 2)]
    for request in requests_mock.request_history:
        assert request.headers["Authorization"] == f"Bearer {api_key}"
        assert api_key not in request.url
        assert "apikey" not in request.url.lower()
    assert first.last_request.qs == {"adjusted": ["true"], "sort": ["asc"], "limit": ["50000"]}
    assert second.last_request.qs == {"cursor": ["abc"]}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://api.polygon.io", "https://api.polygon.io/v3/x"),
        ("api.massive.com", "https://api.massive.com/v3/x"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v3/x"),
        ("", "https://api.massive.com/v3/x"),
    ],
)
def test_base_url_defaults_to_https_and_massive(set_massive_conn, host, expected):
    set_massive_conn(host, "k")
    assert MassiveHook().url_from_endpoint("v3/x") == expected


@pytest.mark.parametrize(
    "failure",
    [requests.exceptions.ConnectionError("reset by peer"), requests.exceptions.ChunkedEncodingError("cut")],
)
def test_connection_resets_are_retried(requests_mock, failure):
    requests_mock.get(AGGS, [{"exc": failure}, {"json": {"status": "OK", "results": [BAR]}}])
    assert len(_hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2)).bars) == 1
    assert requests_mock.call_count == 2


def test_resets_beyond_the_budget_raise_and_never_return_empty(requests_mock):
    requests_mock.get(AGGS, exc=requests.exceptions.ConnectionError("reset by peer"))
    with pytest.raises(MassiveUnavailableError, match=r"after 3 attempts; last: connection failed"):
        _hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
    assert requests_mock.call_count == 3


def test_retry_after_as_an_http_date_is_honoured():
    response = requests.Response()
    response.headers["Retry-After"] = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    assert 35 <= retry_after_delay(response.headers["Retry-After"]) <= 45
    response.headers["Retry-After"] = "7"
    assert 7 <= retry_after_delay(response.headers["Retry-After"]) <= 7.7
    response.headers["Retry-After"] = "soon"
    assert retry_after_delay(response.headers["Retry-After"]) is None


def test_backoff_is_exponential_in_seconds_with_jitter_and_capped():
    wait = equal_jitter_backoff(2.0, 60)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (8, 60)]:
        delays = [wait(_state(attempt)) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


class TestWaitStrategy:
    """The wait tenacity asks for between attempts, computed directly from a retry state."""

    # Distinct bases, so each test can tell which backoff applied.
    WAIT = wait_retry_after(rate_limited=equal_jitter_backoff(2.0, 60), fallback=equal_jitter_backoff(0.5, 3))

    @pytest.mark.parametrize(("header", "low", "high"), [("7", 7, 7.7), ("0.3", 0.3, 0.33), ("0", 0, 0)])
    def test_retry_after_seconds_on_a_429_replace_the_backoff(self, header, low, high):
        for attempt in (1, 2, 6):
            delays = [self.WAIT(_state(attempt, _rate_limited(header))) for _ in range(50)]
            assert all(low <= d <= high for d in delays)

    def test_retry_after_as_an_http_date_on_a_429(self):
        header = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
        # The date has whole seconds, so up to 1 s of the 40 is cut; jitter adds at most 1 s.
        assert 38 <= self.WAIT(_state(1, _rate_limited(header))) <= 41

    def test_retry_after_http_date_is_measured_from_now(self):
        header = "Wed, 03 Dec 2025 21:00:40 GMT"
        now = datetime(2025, 12, 3, 21, 0, tzinfo=UTC).timestamp()
        assert 40 <= retry_after_delay(header, now=now) <= 41
        assert retry_after_delay(header, now=now + 60) == 0  # a date in the past: retry at once
        assert 300 <= retry_after_delay(header, now=now - 3600) <= 301  # capped at 5 minutes

    @pytest.mark.parametrize(("header", "expected"), [("-5", 0), ("100000", 300), ("inf", 300)])
    def test_retry_after_seconds_are_clamped(self, header, expected):
        assert expected <= retry_after_delay(header) <= expected + 1

    @pytest.mark.parametrize("header", [None, "", "soon", "Wed, 99 Foo 2025"])
    def test_429_without_a_usable_retry_after_backs_off_from_the_rate_limited_base(self, header):
        for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (40, 60)]:
            delays = [self.WAIT(_state(attempt, _rate_limited(header))) for _ in range(50)]
            assert all(ceiling / 2 <= d <= ceiling for d in delays)

    @pytest.mark.parametrize(
        "failure", [_Retry("server error 503"), _Retry("timed out (ReadTimeout)"), _Retry("server error 500")]
    )
    def test_other_failures_back_off_from_the_base_delay_capped(self, failure):
        for attempt, ceiling in [(1, 0.5), (2, 1), (3, 2), (4, 3), (100, 3)]:
            delays = [self.WAIT(_state(attempt, failure)) for _ in range(50)]
            assert all(ceiling / 2 <= d <= ceiling for d in delays)

    def test_jitter_spans_exactly_the_upper_half_of_the_backoff(self, monkeypatch):
        # tenacity's random wait and the Retry-After jitter both draw from random.uniform.
        monkeypatch.setattr(random, "uniform", lambda low, high: low)
        assert [self.WAIT(_state(n, _Retry("server error 502"))) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1, 1.5]
        assert [self.WAIT(_state(n, _rate_limited())) for n in (1, 2, 6)] == [1, 2, 30]
        assert self.WAIT(_state(3, _rate_limited("7"))) == 7
        monkeypatch.setattr(random, "uniform", lambda low, high: high)
        assert [self.WAIT(_state(n, _Retry("server error 502"))) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 3]
        assert [self.WAIT(_state(n, _rate_limited())) for n in (1, 2, 6)] == [2, 4, 60]
        assert self.WAIT(_state(3, _rate_limited("7"))) == pytest.approx(7.7)
        assert self.WAIT(_state(3, _rate_limited("120"))) == 121  # jitter stops growing at 1 s

    def test_a_zero_cap_means_no_wait(self):
        wait = equal_jitter_backoff(1.0, 0)
        assert {wait(_state(n)) for n in (1, 2, 10)} == {0}


class TestRetriesWithInjectedSleep:
    """The hook's retry loop with its sleep recorded instead of slept (no real waiting)."""

    @pytest.fixture
    def slept(self) -> list[float]:
        return []

    @pytest.fixture
    def hook(self, slept) -> MassiveHook:
        hook = MassiveHook(max_attempts=4, retry_base_delay=1.0, rate_limited_base_delay=30.0, max_retry_delay=60)
        hook.sleep = slept.append
        return hook

    def test_waits_follow_retry_after_then_the_backoff(self, requests_mock, hook, slept, capfd):
        requests_mock.get(
            AGGS,
            [
                {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"status": "ERROR"}},
                {"status_code": 503, "json": {"status": "ERROR"}},
                {"status_code": 429, "json": {"status": "ERROR"}},
                {"json": {"status": "OK", "results": [BAR]}},
            ],
        )
        assert len(hook.get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2)).bars) == 1
        assert requests_mock.call_count == hook.requests_made == 4
        assert len(slept) == 3
        assert 7 <= slept[0] <= 7.7  # Retry-After, not the 15-30 s rate-limited backoff
        assert 1 <= slept[1] <= 2  # 503 on attempt 2: retry_base_delay * 2
        assert 30 <= slept[2] <= 60  # 429 without Retry-After on attempt 3: 30 * 4, capped at 60
        out = capfd.readouterr().out
        for attempt in (1, 2, 3, 4):
            assert f"Fetching SPY day bars (attempt {attempt}/4)" in out
        assert f"⚠ SPY day bars: rate limited (429), waiting {slept[0]:.1f} s before retrying" in out
        assert f"⚠ SPY day bars: server error 503, waiting {slept[1]:.1f} s before retrying" in out
        assert f"⚠ SPY day bars: rate limited (429), waiting {slept[2]:.1f} s before retrying" in out

    def test_no_wait_after_the_last_attempt_and_the_error_names_the_last_failure(self, requests_mock, hook, slept):
        requests_mock.get(AGGS, [{"status_code": 503}, {"status_code": 503}, {"status_code": 429}])
        with pytest.raises(MassiveUnavailableError) as caught:
            hook.get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
        assert str(caught.value) == "SPY day bars: giving up after 4 attempts; last: rate limited (429)"
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        assert requests_mock.call_count == 4
        assert len(slept) == 3

    @pytest.mark.parametrize("status", [401, 403])
    def test_auth_errors_are_not_retried(self, requests_mock, hook, slept, status):
        requests_mock.get(AGGS, status_code=status, json={"status": "ERROR", "message": "no"})
        with pytest.raises(MassiveAuthError, match=f"HTTP {status}"):
            hook.get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
        assert requests_mock.call_count == 1
        assert slept == []

    def test_404_is_none_without_a_retry(self, requests_mock, hook, slept):
        requests_mock.get(f"{BASE}/v3/reference/tickers/ZZZZQ", status_code=404, json={"status": "NOT_FOUND"})
        assert hook.get_ticker_details("ZZZZQ") is None
        assert requests_mock.call_count == 1
        assert slept == []

    def test_invalid_json_is_retried(self, requests_mock, hook, slept, capfd):
        requests_mock.get(AGGS, [{"text": '{"status": "OK", "results": [{"o"'}, {"json": {"status": "OK"}}])
        assert hook.get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2)).bars == []
        assert requests_mock.call_count == 2
        assert len(slept) == 1
        assert 0.5 <= slept[0] <= 1
        assert "⚠ SPY day bars: invalid JSON in a 200 response" in capfd.readouterr().out

    def test_the_key_is_redacted_from_the_warning_and_the_final_error(self, hook, slept, api_key, capfd, monkeypatch):
        # Should a problem text ever quote the key (an error body, a decoder message), it is redacted.
        hook.prepare()  # reads the key from the connection

        def fail(*args: object) -> None:
            raise _Retry(f"server error 500 for {api_key}")

        monkeypatch.setattr(hook, "_attempt", fail)
        with pytest.raises(MassiveUnavailableError) as caught:
            hook.get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
        assert str(caught.value) == "SPY day bars: giving up after 4 attempts; last: server error 500 for ***"
        out = capfd.readouterr().out
        assert out.count("⚠ SPY day bars: server error 500 for ***, waiting") == 3
        assert api_key not in out

    def test_test_connection_makes_one_attempt(self, requests_mock, hook, slept):
        requests_mock.get(f"{BASE}/v3/reference/tickers/SPY", status_code=503)
        ok, message = hook.test_connection()
        assert not ok
        assert message == "connection test (SPY ticker details): giving up after 1 attempts; last: server error 503"
        assert requests_mock.call_count == 1
        assert slept == []


def test_400_is_a_request_error_with_the_apis_message_and_no_retry(requests_mock):
    body = {
        "status": "ERROR",
        "request_id": "r",
        "error": "The parameter 'to' cannot be a time before 'from'",
    }
    requests_mock.get(AGGS, status_code=400, json=body)
    with pytest.raises(MassiveRequestError, match=r"SPY day bars: HTTP 400: The parameter 'to' cannot be"):
        _hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "ERROR", "error": "boom"}, "API status 'ERROR': boom"),
        ({"status": "OK", "results": {"o": 1}}, "'results' is a dict, not a list"),
        ([1, 2], "response is a JSON list, not an object"),
    ],
)
def test_200_bodies_that_are_not_results_raise(requests_mock, body, message):
    requests_mock.get(AGGS, json=body)
    with pytest.raises(MassiveRequestError, match=message):
        _hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2))


def test_null_results_are_no_bars(requests_mock):
    requests_mock.get(AGGS, json={"status": "OK", "results": None, "resultsCount": 0})
    assert _hook().get_bars("SPY", "day", date(2025, 12, 1), date(2025, 12, 2)).bars == []


def test_split_request_range():
    assert split_request_range(date(2000, 1, 1), date(2025, 12, 31), "day") == [(date(2000, 1, 1), date(2025, 12, 31))]
    windows = split_request_range(date(2025, 1, 1), date(2025, 3, 1), "hour")
    assert windows == [
        (date(2025, 1, 1), date(2025, 2, 3)),
        (date(2025, 2, 4), date(2025, 3, 1)),
    ]
    assert split_request_range(date(2025, 1, 1), date(2025, 1, 3), "minute", limit=100) == [
        (date(2025, 1, 1), date(2025, 1, 1)),
        (date(2025, 1, 2), date(2025, 1, 2)),
        (date(2025, 1, 3), date(2025, 1, 3)),
    ]
    with pytest.raises(ValueError, match="before start"):
        split_request_range(date(2025, 1, 2), date(2025, 1, 1), "day")


def test_dates_must_be_dates_not_datetimes():
    with pytest.raises(TypeError, match="must be a date"):
        _hook().get_bars("SPY", "day", datetime(2025, 12, 1, tzinfo=UTC), date(2025, 12, 2))
