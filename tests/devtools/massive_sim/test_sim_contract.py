"""Contract tests: the simulator's responses against the real API's documented behaviour.

Everything goes over real HTTP to the simulator process started by the ``sim`` fixture (clock
2025-12-02T21:00:00Z). Expected session counts come from the NYSE calendar, written out here by
hand so the test does not share code with the simulator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.integration

ET = ZoneInfo("America/New_York")
AGGS = "/v2/aggs/ticker/{ticker}/range/1/{span}/{frm}/{to}"


def aggs(sim: Any, ticker: str, span: str, frm: str, to: str, **params: Any) -> dict[str, Any]:
    resp = sim.get(AGGS.format(ticker=ticker, span=span, frm=frm, to=to), params=params or None)
    assert resp.status_code == 200, resp.text
    return resp.json()


def et(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET)


def et_ms(y: int, m: int, d: int, hh: int = 0) -> int:
    return int(dt.datetime(y, m, d, hh, tzinfo=ET).timestamp() * 1000)


def all_pages(sim: Any, first: dict[str, Any]) -> list[dict[str, Any]]:
    pages = [first]
    while "next_url" in pages[-1]:
        assert len(pages) < 500, "runaway pagination"
        resp = sim.get(pages[-1]["next_url"])
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
    return pages


def assert_valid_bar(bar: dict[str, Any]) -> None:
    assert set(bar) == {"v", "vw", "o", "c", "h", "l", "t", "n"}
    assert all(isinstance(bar[k], float) for k in ("v", "vw", "o", "c", "h", "l"))
    assert isinstance(bar["t"], int)
    assert isinstance(bar["n"], int)
    assert bar["h"] >= max(bar["o"], bar["c"])
    assert bar["l"] <= min(bar["o"], bar["c"])
    assert bar["l"] <= bar["vw"] <= bar["h"]
    assert bar["v"] > 0
    assert bar["n"] > 0


# -- shapes ---------------------------------------------------------------------------------------


def test_custom_bars_shape_matches_the_real_response(sim):
    body = aggs(sim, "SPY", "day", "2025-11-24", "2025-11-26")
    assert list(body) == [
        "ticker",
        "queryCount",
        "resultsCount",
        "adjusted",
        "results",
        "status",
        "request_id",
        "count",
    ]
    assert body["ticker"] == "SPY"
    assert body["status"] == "OK"
    assert body["adjusted"] is True
    assert body["queryCount"] == body["resultsCount"] == body["count"] == 3
    assert len(body["request_id"]) == 32
    for bar in body["results"]:
        assert_valid_bar(bar)
    # Day bars start at midnight New York time.
    assert [et(b["t"]) for b in body["results"]] == [dt.datetime(2025, 11, d, tzinfo=ET) for d in (24, 25, 26)]


def test_empty_window_is_200_without_a_results_key(sim):
    for ticker, frm, to in [("SPY", "2025-11-27", "2025-11-27"), ("NOSUCH", "2025-11-24", "2025-11-26")]:
        body = aggs(sim, ticker, "day", frm, to)
        assert "results" not in body
        assert body["queryCount"] == 0
        assert body["resultsCount"] == 0
        assert body["status"] == "OK"


def test_adjusted_false_is_echoed(sim):
    assert aggs(sim, "SPY", "day", "2025-11-24", "2025-11-24", adjusted="false")["adjusted"] is False


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v2/aggs/ticker/SPY/range/1/day/2025-11-26/2025-11-24", "cannot be a time that occurs before"),
        ("/v2/aggs/ticker/SPY/range/1/fortnight/2025-11-24/2025-11-26", "timespan"),
        ("/v2/aggs/ticker/SPY/range/1/day/2025-11-24/2025-11-26?limit=abc", "limit"),
        ("/v2/aggs/ticker/SPY/range/1/day/yesterday/2025-11-26", "from"),
        ("/v2/aggs/ticker/SPY/range/1/day/2025-11-24/2025-11-26?sort=up", "sort"),
    ],
)
def test_bad_parameters_are_400_error_bodies(sim, path, fragment):
    resp = sim.get(path)
    assert resp.status_code == 400
    body = resp.json()
    assert body["status"] == "ERROR"
    assert fragment in body["error"]
    assert body["request_id"]


def test_ticker_details(sim):
    resp = sim.get("/v3/reference/tickers/SPY")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "OK"
    res = body["results"]
    assert res["ticker"] == "SPY"
    assert res["type"] == "ETF"
    assert res["market"] == "stocks"
    assert res["locale"] == "us"
    assert res["active"] is True
    assert res["currency_name"] == "usd"
    assert res["primary_exchange"] == "ARCX"
    for key in ("name", "cik", "composite_figi", "list_date"):
        assert res[key]
    aapl = sim.get("/v3/reference/tickers/AAPL").json()["results"]
    assert aapl["type"] == "CS"
    assert aapl["sic_description"]


def test_unknown_ticker_details_is_404_not_found(sim):
    resp = sim.get("/v3/reference/tickers/NOSUCH")
    assert resp.status_code == 404
    body = resp.json()
    assert body["status"] == "NOT_FOUND"
    assert body["message"] == "Ticker not found."


def test_grouped_daily_shape_and_the_16_00_quirk(sim):
    resp = sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-11-26")
    assert resp.status_code == 200
    body = resp.json()
    assert "ticker" not in body
    assert "next_url" not in body
    assert body["status"] == "OK"
    assert body["resultsCount"] == len(body["results"]) >= 5000
    rows = {r["T"]: r for r in body["results"]}
    assert len(rows) == len(body["results"])
    assert {"SPY", "SCHG", "VUG", "NEWCO", "QUIET"} <= set(rows)
    assert "GONE" not in rows  # delisted in March
    spy = rows["SPY"]
    assert et(spy["t"]) == dt.datetime(2025, 11, 26, 16, tzinfo=ET)
    # Same values as the day bar, only t differs (16:00 ET vs midnight).
    day = aggs(sim, "SPY", "day", "2025-11-26", "2025-11-26")["results"][0]
    assert {k: v for k, v in spy.items() if k not in ("T", "t")} == {k: v for k, v in day.items() if k != "t"}
    for row in body["results"][:200]:
        assert_valid_bar({k: v for k, v in row.items() if k != "T"})


@pytest.mark.parametrize("day", ["2025-11-27", "2025-11-29", "2025-11-30", "2025-12-25"])
def test_grouped_daily_is_empty_on_holidays_weekends_and_the_future(sim, day):
    body = sim.get(f"/v2/aggs/grouped/locale/us/market/stocks/{day}").json()
    assert body["resultsCount"] == 0
    assert "results" not in body


# -- the counts the loader's acceptance tests rely on ---------------------------------------------


@pytest.mark.parametrize("ticker", ["SCHG", "VUG"])
def test_two_day_load_numbers(sim, ticker):
    hours = aggs(sim, ticker, "hour", "2025-12-01", "2025-12-02")["results"]
    for day in (1, 2):
        regular = [et(b["t"]).hour for b in hours if et(b["t"]).day == day and 9 <= et(b["t"]).hour < 16]
        assert regular == list(range(9, 16))
    # The clock (16:00 ET on 12-02) hides the after-hours bars of 12-02.
    assert [et(b["t"]).hour for b in hours if et(b["t"]).day == 2] == list(range(4, 16))
    days = aggs(sim, ticker, "day", "2025-12-01", "2025-12-02")["results"]
    assert [et(b["t"]).date() for b in days] == [dt.date(2025, 12, 1), dt.date(2025, 12, 2)]
    weeks = aggs(sim, ticker, "week", "2025-12-01", "2025-12-02")["results"]
    assert [et(b["t"]).date() for b in weeks] == [dt.date(2025, 11, 30)]
    months = aggs(sim, ticker, "month", "2025-12-01", "2025-12-02")["results"]
    assert [et(b["t"]).date() for b in months] == [dt.date(2025, 12, 1)]


def test_ninety_day_spy_numbers(sim):
    days = aggs(sim, "SPY", "day", "2025-09-01", "2025-11-30")["results"]
    assert len(days) == 63
    assert dt.date(2025, 9, 1) not in {et(b["t"]).date() for b in days}  # Labor Day
    months = aggs(sim, "SPY", "month", "2025-09-01", "2025-11-30")["results"]
    assert [et(b["t"]).date() for b in months] == [dt.date(2025, m, 1) for m in (9, 10, 11)]
    # Weeks start Sunday; from snaps back to Sunday 08-31. The real API also snaps `to` (a
    # Sunday) to the end of its week, so the partial week of 11-30 (12-01, 12-02) is included.
    weeks = aggs(sim, "SPY", "week", "2025-09-01", "2025-11-30")["results"]
    starts = [et(b["t"]).date() for b in weeks]
    expected = [dt.date(2025, 8, 31) + dt.timedelta(weeks=i) for i in range(14)]
    assert starts == expected
    assert all(d.weekday() == 6 for d in starts)
    sim.configure(to_snap="day")
    weeks = aggs(sim, "SPY", "week", "2025-09-01", "2025-11-30")["results"]
    assert [et(b["t"]).date() for b in weeks] == expected[:13]


def test_early_close_and_thanksgiving_hours(sim):
    hours = aggs(sim, "SPY", "hour", "2025-11-26", "2025-11-28")["results"]
    by_day: dict[int, list[int]] = {}
    for b in hours:
        by_day.setdefault(et(b["t"]).day, []).append(et(b["t"]).hour)
    assert by_day[26] == list(range(4, 20))  # extended hours 04:00-20:00 ET
    assert 27 not in by_day
    assert by_day[28] == list(range(4, 17))  # 13:00 close, after-hours to 17:00
    assert [h for h in by_day[28] if 9 <= h < 13] == [9, 10, 11, 12]
    minutes = aggs(sim, "SPY", "minute", "2025-11-28", "2025-11-28", limit=50000)["results"]
    last = et(minutes[-1]["t"])
    assert (last.hour, last.minute) == (16, 59)
    assert len(minutes) == 13 * 60


def test_daily_session_counts_follow_the_nyse_calendar(sim):
    body = aggs(sim, "SPY", "day", "2025-01-01", "2025-12-31")
    # 2025 XNYS: 250 sessions; the clock stops at 12-02 (22 in December are not yet there).
    assert body["resultsCount"] == 250 - 20
    dates = {et(b["t"]).date() for b in body["results"]}
    for holiday in ("2025-01-01", "2025-01-09", "2025-04-18", "2025-07-04", "2025-11-27"):
        assert dt.date.fromisoformat(holiday) not in dates


def test_ms_timestamps_snap_to_window_bounds(sim):
    # 10:30 ET .. 12:15 ET on 11-26 snaps to the 10:00 and 12:00 hour windows.
    frm = et_ms(2025, 11, 26, 10) + 30 * 60_000
    to = et_ms(2025, 11, 26, 12) + 15 * 60_000
    hours = aggs(sim, "SPY", "hour", str(frm), str(to))["results"]
    assert [et(b["t"]).hour for b in hours] == [10, 11, 12]
    # A Wednesday ms timestamp snaps to the week starting the Sunday before.
    weeks = aggs(sim, "SPY", "week", str(frm), str(frm))["results"]
    assert [et(b["t"]).date() for b in weeks] == [dt.date(2025, 11, 23)]


def test_realistic_magnitudes(sim):
    expect = {"SPY": (450, 800), "SCHG": (20, 45), "VUG": (350, 650)}
    for ticker, (lo, hi) in expect.items():
        bars = aggs(sim, ticker, "day", "2025-11-01", "2025-12-02")["results"]
        assert all(lo < b["c"] < hi for b in bars), ticker
        assert all(b["v"] >= 100_000 for b in bars), ticker
        for bar in bars:
            assert_valid_bar(bar)


# -- special tickers ------------------------------------------------------------------------------


def test_illiquid_symbol_has_hours_without_bars(sim):
    hours = aggs(sim, "QUIET", "hour", "2025-11-03", "2025-11-26", limit=50000)["results"]
    per_day: dict[dt.date, int] = {}
    for b in hours:
        assert_valid_bar(b)
        per_day[et(b["t"]).date()] = per_day.get(et(b["t"]).date(), 0) + 1
    assert len(per_day) == 18  # it still trades every session
    assert min(per_day.values()) < 16  # but some hours have no trade, hence no bar
    liquid = aggs(sim, "SPY", "hour", "2025-11-03", "2025-11-26", limit=50000)["results"]
    assert len(liquid) == 18 * 16


def test_new_listing_has_no_bars_before_its_list_date(sim):
    details = sim.get("/v3/reference/tickers/NEWCO").json()["results"]
    list_date = dt.date.fromisoformat(details["list_date"])
    assert list_date.year == 2025
    days = aggs(sim, "NEWCO", "day", "2025-01-01", "2025-12-02")["results"]
    assert et(days[0]["t"]).date() == list_date
    assert "results" not in aggs(sim, "NEWCO", "day", "2024-01-01", "2025-06-17")


def test_delisted_symbol(sim):
    details = sim.get("/v3/reference/tickers/GONE").json()["results"]
    assert details["active"] is False
    delisted = dt.date.fromisoformat(details["delisted_utc"][:10])
    days = aggs(sim, "GONE", "day", "2025-01-01", "2025-12-02")["results"]
    assert et(days[-1]["t"]).date() < delisted
    assert "results" not in aggs(sim, "GONE", "day", "2025-04-01", "2025-12-02")


# -- pagination -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("minute", "2025-12-01", "2025-12-02", 777),
        ("hour", "2025-11-20", "2025-12-02", 100),  # 100 minutes: one whole hour per page
        ("hour", "2025-11-20", "2025-12-02", 1000),
        ("day", "2025-01-01", "2025-12-02", 7),
        ("week", "2025-01-01", "2025-12-02", 12),
        ("month", "2024-01-01", "2025-12-02", 45),
        ("month", "2025-01-01", "2025-12-02", 5),  # smaller than one month: one window per page
    ],
)
@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_all_pages_concatenated_equal_one_big_page(sim, case, sort):
    span, frm, to, limit = case
    big = aggs(sim, "SPY", span, frm, to, limit=50000, sort=sort)
    assert "next_url" not in big
    pages = all_pages(sim, aggs(sim, "SPY", span, frm, to, limit=limit, sort=sort))
    assert len(pages) > 1
    stitched = [bar for page in pages for bar in page["results"]]
    assert stitched == big["results"]
    assert sum(p["queryCount"] for p in pages) == big["queryCount"]
    for page in pages:
        assert page["resultsCount"] == len(page["results"])
        assert page["queryCount"] <= limit or page["resultsCount"] == 1
    for page in pages[:-1]:
        assert "apiKey" not in page["next_url"]
        assert "cursor=" in page["next_url"]
        assert sim.api_key not in page["next_url"]


def test_limit_counts_base_minute_bars_like_the_blog_example(sim):
    # 14:00-16:00 ET is 120 minute bars: limit=100 yields only the first full hour.
    frm = et_ms(2025, 11, 26, 14)
    to = et_ms(2025, 11, 26, 16) - 1
    body = aggs(sim, "SPY", "hour", str(frm), str(to), limit=100)
    assert [et(b["t"]).hour for b in body["results"]] == [14]
    assert body["queryCount"] == 60
    assert body["next_url"].split("?")[0].endswith(f"/hour/{et_ms(2025, 11, 26, 15)}/{to}")


def test_default_limit_is_5000_base_aggregates(sim):
    body = aggs(sim, "SPY", "minute", "2025-11-03", "2025-11-26")
    assert body["resultsCount"] == 5000
    assert body["queryCount"] == 5000
    assert "next_url" in body


# -- cross-timeframe consistency ------------------------------------------------------------------


def combine(bars: list[dict[str, Any]]) -> dict[str, Any]:
    v = sum(b["v"] for b in bars)
    return {
        "o": bars[0]["o"],
        "c": bars[-1]["c"],
        "h": max(b["h"] for b in bars),
        "l": min(b["l"] for b in bars),
        "v": v,
        "n": sum(b["n"] for b in bars),
        "vw": sum(b["vw"] * b["v"] for b in bars) / v,
    }


def assert_aggregate(parent: dict[str, Any], children: list[dict[str, Any]]) -> None:
    want = combine(children)
    for key in ("o", "c", "h", "l", "v", "n"):
        assert parent[key] == want[key], key
    assert parent["vw"] == pytest.approx(want["vw"], abs=1.5e-4)


def test_every_coarser_bar_is_the_exact_aggregate_of_finer_ones(sim):
    minutes = aggs(sim, "SPY", "minute", "2025-11-24", "2025-11-26", limit=50000)["results"]
    hours = aggs(sim, "SPY", "hour", "2025-11-24", "2025-11-26")["results"]
    days = aggs(sim, "SPY", "day", "2025-11-24", "2025-11-26")["results"]
    assert len(hours) == 3 * 16
    for hour in hours:
        assert_aggregate(hour, [m for m in minutes if hour["t"] <= m["t"] < hour["t"] + 3_600_000])
    for day in days:
        assert_aggregate(day, [m for m in minutes if day["t"] <= m["t"] < day["t"] + 86_400_000])
        assert_aggregate(day, [h for h in hours if day["t"] <= h["t"] < day["t"] + 86_400_000])
    all_days = aggs(sim, "SPY", "day", "2025-09-01", "2025-12-02")["results"]
    for week in aggs(sim, "SPY", "week", "2025-09-01", "2025-12-02")["results"]:
        assert_aggregate(week, [d for d in all_days if week["t"] <= d["t"] < week["t"] + 7 * 86_400_000])
    for month in aggs(sim, "SPY", "month", "2025-09-01", "2025-12-02")["results"]:
        start = et(month["t"]).date()
        members = [d for d in all_days if et(d["t"]).date().replace(day=1) == start]
        assert_aggregate(month, members)


# -- clock and data version -----------------------------------------------------------------------


def test_no_bars_after_the_clock_and_the_current_bars_are_partial(sim):
    before = aggs(sim, "SPY", "day", "2025-12-02", "2025-12-03")["results"]
    assert len(before) == 1
    assert aggs(sim, "SPY", "minute", "2025-12-02", "2025-12-02", limit=50000)["results"][-1]["t"] < et_ms(
        2025, 12, 2, 16
    )
    sim.configure(now="2025-12-03T15:00:00Z")  # 10:00 ET on 12-03
    after = aggs(sim, "SPY", "day", "2025-12-02", "2025-12-03")["results"]
    assert len(after) == 2
    assert after[0]["v"] > before[0]["v"]  # 12-02's after-hours are now in
    assert after[0]["o"] == before[0]["o"]
    hours = aggs(sim, "SPY", "hour", "2025-12-03", "2025-12-03")["results"]
    assert [et(b["t"]).hour for b in hours] == [4, 5, 6, 7, 8, 9]
    assert sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-12-03").json()["resultsCount"] > 5000


def test_data_version_changes_prices_but_not_the_bars_that_exist(sim):
    v0 = aggs(sim, "SPY", "hour", "2025-11-24", "2025-11-26")["results"]
    sim.configure(data_version=1)
    v1 = aggs(sim, "SPY", "hour", "2025-11-24", "2025-11-26")["results"]
    assert [b["t"] for b in v0] == [b["t"] for b in v1]
    assert sum(a["c"] != b["c"] for a, b in zip(v0, v1, strict=True)) > len(v0) // 2
    sim.configure(data_version=0)
    assert aggs(sim, "SPY", "hour", "2025-11-24", "2025-11-26")["results"] == v0


def test_every_symbol_of_the_shipped_universes_is_simulated():
    # make demo, the UI and Redis jobs name universes; offline they must all resolve.
    from massive_sim.universe import CURATED_TICKERS
    from tickstock.load_request import UNIVERSES_DIR, read_universe

    for path in UNIVERSES_DIR.glob("*.csv"):
        assert set(read_universe(path.stem)) <= set(CURATED_TICKERS), path.name
