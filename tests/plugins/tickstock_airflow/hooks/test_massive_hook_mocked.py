"""MassiveHook behaviour the simulator cannot produce (foreign next_url hosts, resets, HTTP dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from tickstock_airflow.hooks.massive import (
    MassiveHook,
    MassiveRequestError,
    MassiveUnavailableError,
    split_request_range,
)

BASE = "https://api.massive.test"
AGGS = f"{BASE}/v2/aggs/ticker/SPY/range/1/day/2025-12-01/2025-12-02"
BAR = {"o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 100, "t": 1764565200000}  # 2025-12-01 00:00 ET


@pytest.fixture(autouse=True)
def _conn(set_massive_conn, api_key):
    set_massive_conn(BASE, api_key)


def _hook(**kwargs) -> MassiveHook:
    return MassiveHook(**{"max_attempts": 3, "retry_base_delay": 0.001, "rate_limited_base_delay": 0.001} | kwargs)


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


def test_retry_after_as_an_http_date_is_honoured(requests_mock):
    hook = _hook()
    response = requests.Response()
    response.headers["Retry-After"] = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    assert 35 <= hook._retry_after(response) <= 45
    response.headers["Retry-After"] = "7"
    assert 7 <= hook._retry_after(response) <= 7.7
    response.headers["Retry-After"] = "soon"
    assert hook._retry_after(response) is None


def test_backoff_is_exponential_in_seconds_with_jitter_and_capped():
    hook = MassiveHook(max_retry_delay=60)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (8, 60)]:
        delays = [hook._backoff(attempt, 2.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


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
