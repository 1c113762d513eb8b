"""Auth, fault knobs, admin endpoints and statistics, over real HTTP."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from massive_sim.testing import SimulatorError

pytestmark = pytest.mark.integration

DAY = "/v2/aggs/ticker/SPY/range/1/day/2025-11-24/2025-11-26"
HOUR = "/v2/aggs/ticker/SPY/range/1/hour/2025-11-24/2025-11-26"


def statuses(sim, n, path=DAY):
    return [sim.get(path).status_code for _ in range(n)]


# -- auth -----------------------------------------------------------------------------------------


def test_missing_key_is_401_with_the_real_error_body(sim):
    resp = requests.get(sim.url + DAY, timeout=10)
    assert resp.status_code == 401
    body = resp.json()
    assert body["status"] == "ERROR"
    assert body["error"] == "API Key was not provided"
    assert body["request_id"]


@pytest.mark.parametrize("how", ["header", "query"])
def test_unknown_key_is_401_and_a_known_one_works_both_ways(sim, how):
    def call(key):
        if how == "header":
            return requests.get(sim.url + DAY, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        return requests.get(sim.url + DAY, params={"apiKey": key}, timeout=10)

    bad = call("wrong-key")
    assert bad.status_code == 401
    assert bad.json() == {
        "status": "ERROR",
        "request_id": bad.json()["request_id"],
        "error": "Unknown API Key",
    }
    assert call(sim.api_key).status_code == 200


def test_forbidden_timespans_answer_403_not_authorized(sim):
    sim.configure(forbidden_timespans=["hour", "minute"])
    resp = sim.get(HOUR)
    assert resp.status_code == 403
    body = resp.json()
    assert body["status"] == "NOT_AUTHORIZED"
    assert "not entitled" in body["message"]
    assert sim.get(DAY).status_code == 200


# -- rate limit -----------------------------------------------------------------------------------


def test_rate_limit_per_minute_is_exact(sim):
    sim.configure(rate_limit="5/min")
    got = statuses(sim, 12)
    assert got == [200] * 5 + [429] * 7
    resp = sim.get(DAY)
    assert resp.status_code == 429
    assert resp.json()["status"] == "ERROR"
    assert "exceeded the maximum requests" in resp.json()["error"]
    assert "Retry-After" not in resp.headers
    sim.configure(retry_after=2)
    assert sim.get(DAY).headers["Retry-After"] == "2"
    stats = sim.stats()
    assert stats["by_status"] == {"200": 5, "429": 9}
    assert stats["max_accepted_in_any_1s"] == 5


def test_rate_limit_per_second_holds_under_concurrency(sim):
    sim.configure(rate_limit="20/s")

    def burst(_):
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {sim.api_key}"
            return [s.get(sim.url + DAY, timeout=10).status_code for _ in range(40)]

    with ThreadPoolExecutor(4) as pool:
        codes = [c for batch in pool.map(burst, range(4)) for c in batch]
    assert set(codes) == {200, 429}
    stats = sim.stats()
    assert stats["total"] == 160
    assert stats["max_accepted_in_any_1s"] <= 20
    assert stats["max_in_any_1s"] > 20  # the client did exceed the budget; the limiter held
    assert len(stats["arrivals"]) == 160


# -- injected failures ----------------------------------------------------------------------------


def test_fail_next_n_fails_exactly_n_requests(sim):
    sim.configure(fail_next_n=3, fail_next_status=502)
    assert statuses(sim, 5) == [502, 502, 502, 200, 200]
    sim.configure(fail_next_n=1, fail_next_status=429)
    resp = sim.get(DAY)
    assert resp.status_code == 429
    assert "exceeded the maximum requests" in resp.json()["error"]


def test_error_rate_is_deterministic_per_seed(sim):
    sim.configure(error_rate=0.5)
    first = statuses(sim, 30)
    sim.reset()
    sim.configure(error_rate=0.5)
    assert statuses(sim, 30) == first
    assert 200 in first
    failed = [c for c in first if c != 200]
    assert failed
    assert set(failed) <= {500, 502, 503, 504}
    sim.configure(error_rate=1.0, error_status=503)
    resp = sim.get(DAY)
    assert resp.status_code == 503
    assert resp.json()["status"] == "ERROR"


def test_fixed_and_random_latency(sim):
    sim.configure(latency_ms=300)
    t0 = time.perf_counter()
    assert sim.get(DAY).status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    sim.configure(latency_ms="100:200")
    for _ in range(3):
        t0 = time.perf_counter()
        sim.get(DAY)
        assert time.perf_counter() - t0 >= 0.1


def test_slow_responses_exceed_a_client_timeout(sim):
    sim.configure(slow_ms=3000)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sim.get(DAY, timeout=0.5)
    sim.configure(slow_ms=0)
    assert sim.get(DAY, timeout=5).status_code == 200


def test_invalid_json_is_a_truncated_200(sim):
    sim.configure(invalid_json_rate=1.0)
    resp = sim.get(DAY)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_duplicate_bar(sim):
    sim.configure(duplicate_bar=True)
    body = sim.get(DAY).json()
    ts = [b["t"] for b in body["results"]]
    assert len(ts) == 4
    assert ts[0] == ts[1]
    assert len(set(ts)) == 3
    assert body["resultsCount"] == 4


def test_repeat_next_url_makes_a_pagination_loop(sim):
    sim.configure(repeat_next_url=True)
    first = sim.get(HOUR, params={"limit": 120}).json()
    second = sim.get(first["next_url"]).json()
    third = sim.get(second["next_url"]).json()
    assert second["next_url"] == first["next_url"]
    assert third["next_url"] == first["next_url"]
    assert second["results"] == third["results"]


# -- admin endpoints and statistics ---------------------------------------------------------------


def test_stats_count_exactly_by_endpoint_and_status(sim):
    sim.get(DAY)
    sim.get(HOUR)
    sim.get("/v3/reference/tickers/SPY")
    sim.get("/v3/reference/tickers/NOSUCH")
    sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-11-26")
    requests.get(sim.url + DAY, timeout=10)  # no key
    sim.get("/v1/marketstatus/now")  # not simulated
    sim.configure(data_version=0)  # admin calls are not counted
    stats = sim.stats(requests=True)
    assert stats["total"] == 7
    assert stats["by_endpoint"] == {"aggs": 3, "ticker_details": 2, "grouped": 1, "splits": 0, "other": 1}
    assert stats["by_status"] == {"200": 4, "404": 2, "401": 1}
    assert stats["by_endpoint_status"]["aggs"] == {"200": 2, "401": 1}
    assert stats["in_flight"] == 0
    assert [r["path"] for r in stats["requests"]][:2] == [DAY, HOUR]
    sim.reset()
    assert sim.stats()["total"] == 0


def test_api_key_is_not_recorded_in_the_request_log(sim):
    requests.get(sim.url + DAY, params={"apiKey": sim.api_key, "limit": 10}, timeout=10)
    paths = [r["path"] for r in sim.stats(requests=True)["requests"]]
    assert paths == [DAY + "?limit=10"]


def test_reset_restores_startup_knobs(sim):
    start = sim.config()
    sim.configure(rate_limit="1/min", error_rate=0.3, forbidden_timespans="week", now="2025-11-01T00:00:00Z")
    assert sim.config() != start
    assert sim.reset() == start
    assert start["now"] == "2025-12-02T21:00:00Z"
    assert start["api_keys"] == ["sim-key"]


@pytest.mark.parametrize(
    "knobs",
    [{"no_such_knob": 1}, {"rate_limit": "fast"}, {"error_rate": 2}, {"forbidden_timespans": ["decade"]}],
)
def test_bad_knobs_are_rejected(sim, knobs):
    before = sim.config()
    with pytest.raises(SimulatorError, match="400"):
        sim.configure(**knobs)
    assert sim.config() == before
