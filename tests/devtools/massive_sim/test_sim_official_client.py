"""The official ``massive`` client, which no one here wrote, against the simulator.

If the simulator's shapes, pagination (next_url without a key, Bearer re-attached by the client)
or error bodies drift from the real API's, this client is the first thing that notices.
"""

from __future__ import annotations

import datetime as dt

import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sim):
    return RESTClient(api_key=sim.api_key, base=sim.url, retries=0)


def raw_bars(sim, path):
    return sim.get(path, params={"limit": 50000}).json()["results"]


def test_list_aggs_follows_next_url_across_pages(sim, client):
    aggs = list(client.list_aggs("SPY", 1, "hour", "2025-11-20", "2025-12-02", limit=300))
    expected = raw_bars(sim, "/v2/aggs/ticker/SPY/range/1/hour/2025-11-20/2025-12-02")
    assert len(aggs) == len(expected) == 6 * 16 + 13 + 12  # 11-28 closes early; the clock cuts 12-02
    for agg, bar in zip(aggs, expected, strict=True):
        assert (agg.timestamp, agg.open, agg.high, agg.low, agg.close) == (
            bar["t"],
            bar["o"],
            bar["h"],
            bar["l"],
            bar["c"],
        )
        assert (agg.volume, agg.vwap, agg.transactions) == (bar["v"], bar["vw"], bar["n"])
        assert agg.otc is None
    pages = sim.stats()["by_endpoint_status"]["aggs"]["200"] - 1  # minus the raw big page
    assert pages == -(-len(expected) * 60 // 300)  # 300 minutes (5 whole hours) per page


def test_list_aggs_with_datetimes_and_descending_sort(sim, client):
    start = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)
    end = dt.datetime(2025, 11, 30, 23, tzinfo=dt.UTC)
    aggs = list(client.list_aggs("SPY", 1, "day", start, end, sort="desc", limit=10))
    assert len(aggs) == 63
    assert [a.timestamp for a in aggs] == sorted((a.timestamp for a in aggs), reverse=True)


def test_get_ticker_details(sim, client):
    details = client.get_ticker_details("VUG")
    raw = sim.get("/v3/reference/tickers/VUG").json()["results"]
    assert details.ticker == "VUG"
    assert details.name == raw["name"]
    assert details.type == "ETF"
    assert details.market == "stocks"
    assert details.locale == "us"
    assert details.active is True
    assert details.primary_exchange == raw["primary_exchange"]
    assert details.composite_figi == raw["composite_figi"]
    assert details.list_date == raw["list_date"]


def test_unknown_ticker_raises_bad_response(client):
    with pytest.raises(BadResponse, match="NOT_FOUND"):
        client.get_ticker_details("NOSUCH")


def test_get_grouped_daily_aggs(sim, client):
    grouped = client.get_grouped_daily_aggs("2025-11-26")
    assert len(grouped) >= 5000
    spy = next(g for g in grouped if g.ticker == "SPY")
    day = sim.get("/v2/aggs/ticker/SPY/range/1/day/2025-11-26/2025-11-26").json()["results"][0]
    assert (spy.open, spy.close, spy.high, spy.low, spy.volume) == (
        day["o"],
        day["c"],
        day["h"],
        day["l"],
        day["v"],
    )
    assert spy.timestamp == day["t"] + 16 * 3_600_000
    assert client.get_grouped_daily_aggs("2025-11-27") == []


def test_forbidden_timespan_reaches_the_client_as_bad_response(sim, client):
    sim.configure(forbidden_timespans="hour")
    with pytest.raises(BadResponse, match="NOT_AUTHORIZED"):
        list(client.list_aggs("SPY", 1, "hour", "2025-11-26", "2025-11-26"))


def test_list_stocks_splits_pages_through_next_url_into_stock_split_models(sim, client):
    sim.configure(splits=["SCHG:2025-12-01:4:1", "VUG:2025-12-02:1:10", "SPY:2025-11-28:21:20:stock_dividend"])
    splits = list(client.list_stocks_splits(execution_date_gte="2025-11-01", limit=1))
    assert [(s.ticker, s.execution_date, s.split_from, s.split_to, s.adjustment_type) for s in splits] == [
        ("VUG", "2025-12-02", 10, 1, "reverse_split"),
        ("SCHG", "2025-12-01", 1, 4, "forward_split"),
        ("SPY", "2025-11-28", 20, 21, "stock_dividend"),
    ]  # the default sort is execution_date.desc
    assert [s.historical_adjustment_factor for s in splits] == [10.0, 0.25, pytest.approx(20 / 21)]
    assert all(s.id for s in splits)
    assert sim.stats()["by_endpoint_status"]["splits"] == {"200": 3}  # one page per split at limit=1
    aapl = list(client.list_stocks_splits(ticker="AAPL", sort="execution_date.asc"))
    assert [(s.execution_date, s.split_to) for s in aapl] == [("2014-06-09", 7), ("2020-08-31", 4)]


def test_list_stocks_splits_bad_parameter_is_bad_response(client):
    with pytest.raises(BadResponse, match="Invalid limit"):
        list(client.list_stocks_splits(limit=6000))
