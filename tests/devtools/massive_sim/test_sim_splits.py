"""Simulated splits: ``/stocks/v1/splits`` and the restatement of ``adjusted=true`` bars.

Over real HTTP to the ``sim`` fixture's process. The expected numbers are written out by hand
(ratios, dates, the docs' execution-date rule), not computed with the simulator's code.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from massive_sim.testing import run_simulator

pytestmark = pytest.mark.integration

ET = ZoneInfo("America/New_York")
SPLITS = "/stocks/v1/splits"


def bars(sim: Any, ticker: str, span: str, frm: str, to: str, **params: Any) -> list[dict[str, Any]]:
    resp = sim.get(f"/v2/aggs/ticker/{ticker}/range/1/{span}/{frm}/{to}", params={"limit": 50000, **params})
    assert resp.status_code == 200, resp.text
    body = json.loads(resp.text, parse_float=Decimal)
    assert "next_url" not in body
    return body.get("results", [])


def listing(sim: Any, **params: Any) -> list[dict[str, Any]]:
    """Every page of a splits query (next_url followed)."""
    resp = sim.get(SPLITS, params=params)
    assert resp.status_code == 200, resp.text
    pages = [resp.json()]
    while "next_url" in pages[-1]:
        assert "apiKey" not in pages[-1]["next_url"]
        assert len(pages) < 50, "runaway pagination"
        pages.append(sim.get(pages[-1]["next_url"]).json())
    return [row for page in pages for row in page["results"]]


def day_of(bar: dict[str, Any]) -> dt.date:
    return dt.datetime.fromtimestamp(bar["t"] / 1000, tz=ET).date()


def test_a_forward_split_restates_every_earlier_bar_in_every_timespan(sim):
    before = {span: bars(sim, "SCHG", span, "2025-10-01", "2025-12-02") for span in ("hour", "day", "week", "month")}
    sim.configure(splits=["SCHG:2025-12-03:4:1"], now="2025-12-03T23:00:00Z")
    after = {span: bars(sim, "SCHG", span, "2025-10-01", "2025-12-03") for span in ("hour", "day", "week", "month")}
    raw = {span: bars(sim, "SCHG", span, "2025-10-01", "2025-12-03", adjusted="false") for span in ("hour", "day")}
    still_trading = int(dt.datetime(2025, 12, 2, 16, tzinfo=ET).timestamp() * 1000)  # the first clock
    for span in ("hour", "day"):
        for old, new in zip(before[span], after[span], strict=False):
            assert old["t"] == new["t"]
            if day_of(old) == dt.date(2025, 12, 2) and (span == "day" or old["t"] >= still_trading):
                continue  # 12-02 was still trading at the first clock
            for field in ("o", "h", "l", "c"):
                assert new[field] == old[field] / 4, (span, field)
            assert Decimal(new["v"]) == Decimal(old["v"]) * 4
            assert abs(new["vw"] - old["vw"] / 4) <= Decimal("0.0001")
            assert new["n"] == old["n"]
        # adjusted=false: the history as it traded, then a post-split session at a quarter the price
        history = [b for b in raw[span] if day_of(b) < dt.date(2025, 12, 2)]
        assert history == before[span][: len(history)]
    # the prior day's post-market (19:00 ET on 12-02) is pre-split, the pre-market of 12-03 is not
    last_pre = next(
        b for b in after["hour"] if b["t"] == int(dt.datetime(2025, 12, 2, 19, tzinfo=ET).timestamp() * 1000)
    )
    raw_pre = next(b for b in raw["hour"] if b["t"] == last_pre["t"])
    assert last_pre["c"] == raw_pre["c"] / 4
    first_post = next(b for b in after["hour"] if day_of(b) == dt.date(2025, 12, 3))
    assert first_post == next(b for b in raw["hour"] if b["t"] == first_post["t"])
    assert dt.datetime.fromtimestamp(first_post["t"] / 1000, tz=ET).hour == 4
    # the week and month containing the split are the aggregates of restated days and unchanged days
    days = after["day"]
    week = [d for d in days if dt.date(2025, 11, 30) <= day_of(d) <= dt.date(2025, 12, 6)]
    month = [d for d in days if day_of(d) >= dt.date(2025, 12, 1)]
    for agg, members in ((after["week"][-1], week), (after["month"][-1], month)):
        assert agg["o"] == members[0]["o"]
        assert agg["c"] == members[-1]["c"]
        assert agg["h"] == max(d["h"] for d in members)
        assert agg["l"] == min(d["l"] for d in members)
        assert Decimal(agg["v"]) == sum(Decimal(d["v"]) for d in members)
    # the raw series drops by the ratio at the split (prices do not move 4x overnight otherwise)
    raw_days = {day_of(b): b for b in raw["day"]}
    assert raw_days[dt.date(2025, 12, 3)]["o"] < raw_days[dt.date(2025, 12, 2)]["c"] / 3


def test_a_reverse_split_and_grouped_daily(sim):
    old = bars(sim, "VUG", "day", "2025-11-24", "2025-11-26")
    grouped_old = next(
        g for g in sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-11-26").json()["results"] if g["T"] == "VUG"
    )
    sim.configure(splits=["VUG:2025-12-03:1:10"], now="2025-12-03T23:00:00Z")
    new = bars(sim, "VUG", "day", "2025-11-24", "2025-11-26")
    tiny = Decimal("1e-9")  # x 10 in binary floating point: the JSON text may end in ...9999
    for a, b in zip(old, new, strict=True):
        assert abs(b["c"] - a["c"] * 10) < tiny
        assert abs(Decimal(b["v"]) - Decimal(a["v"]) / 10) < tiny
    grouped = sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-11-26", params={"adjusted": "true"}).json()
    vug = next(g for g in grouped["results"] if g["T"] == "VUG")
    assert abs(Decimal(str(vug["c"])) - Decimal(str(grouped_old["c"])) * 10) < tiny
    raw = sim.get("/v2/aggs/grouped/locale/us/market/stocks/2025-11-26", params={"adjusted": "false"}).json()
    assert next(g for g in raw["results"] if g["T"] == "VUG") == grouped_old
    assert listing(sim, ticker="VUG") == [
        {
            "id": listing(sim, ticker="VUG")[0]["id"],
            "ticker": "VUG",
            "execution_date": "2025-12-03",
            "split_from": 10,
            "split_to": 1,
            "adjustment_type": "reverse_split",
            "historical_adjustment_factor": 10.0,
        }
    ]


def test_a_split_is_listed_and_applied_only_once_the_clock_reaches_its_execution_date(sim):
    sim.configure(splits=["SCHG:2025-12-03:4:1"])  # the clock is 2025-12-02 21:00Z
    assert listing(sim, ticker="SCHG") == []
    before = bars(sim, "SCHG", "day", "2025-11-03", "2025-11-28")
    sim.configure(splits=[])
    assert bars(sim, "SCHG", "day", "2025-11-03", "2025-11-28") == before


def test_listing_of_more_than_5000_splits_pages_completely_and_filters(sim):
    every = listing(sim, limit=5000)
    assert len(every) > 5000
    assert len({row["id"] for row in every}) == len(every)
    assert [r["execution_date"] for r in every] == sorted((r["execution_date"] for r in every), reverse=True)
    assert {r["adjustment_type"] for r in every} == {"forward_split", "reverse_split", "stock_dividend"}
    dividends = [r for r in every if r["adjustment_type"] == "stock_dividend"]
    assert all((r["split_from"], r["split_to"]) == (20, 21) for r in dividends)
    assert len(listing(sim, limit=1000)) == len(every)  # same set through smaller pages
    first = sim.get(SPLITS).json()
    assert len(first["results"]) == 100  # the default limit
    assert "cursor=" in first["next_url"]
    aapl = listing(sim, **{"ticker.any_of": "AAPL,GONE", "sort": "execution_date.asc"})
    assert [(r["ticker"], r["execution_date"], r["split_from"], r["split_to"]) for r in aapl] == [
        ("AAPL", "2014-06-09", 1, 7),
        ("GONE", "2019-03-18", 10, 1),
        ("AAPL", "2020-08-31", 1, 4),
    ]
    assert aapl[0]["historical_adjustment_factor"] == pytest.approx(1 / 28)
    ranged = listing(sim, **{"execution_date.gte": "2019-01-01", "execution_date.lt": "2019-02-01"})
    assert ranged
    assert all("2019-01-01" <= r["execution_date"] < "2019-02-01" for r in ranged)
    assert ranged == [r for r in every if "2019-01-01" <= r["execution_date"] < "2019-02-01"]
    only = listing(sim, adjustment_type="stock_dividend", limit=5000)
    assert sorted(r["id"] for r in only) == sorted(r["id"] for r in dividends)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"tickr": "AAPL"}, "Unknown query parameter(s): tickr."),
        ({"limit": "5001"}, "Invalid limit '5001'"),
        ({"limit": "0"}, "Invalid limit '0'"),
        ({"sort": "price.asc"}, "Invalid sort"),
        ({"execution_date.gte": "2025/01/01"}, "Could not parse execution_date.gte"),
        ({"adjustment_type": "cash_dividend"}, "Invalid adjustment_type"),
        ({"cursor": "not-a-cursor"}, "Invalid cursor."),
    ],
)
def test_bad_parameters_are_400_errors(sim, params, error):
    resp = sim.get(SPLITS, params=params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["status"] == "ERROR"
    assert error in body["error"]


def test_splits_knob_and_cli_flag_validate_and_show_in_the_config(sim):
    with pytest.raises(Exception, match="TO and FROM"):
        sim.configure(splits=["SCHG:2025-12-03:x:1"])
    config = sim.configure(splits=["SCHG:2025-12-03:21:20:stock_dividend", "VUG:2025-12-04:1:10"])
    assert config["splits"] == ["SCHG:2025-12-03:21:20:stock_dividend", "VUG:2025-12-04:1:10:reverse_split"]
    assert sim.reset()["splits"] == []
    with run_simulator(now="2025-12-05T00:00:00Z", split=["SCHG:2025-12-03:4:1", "VUG:2025-12-04:1:10"]) as other:
        rows = listing(other, **{"ticker.any_of": "SCHG,VUG"})
        assert [(r["ticker"], r["split_to"], r["split_from"]) for r in rows] == [("VUG", 1, 10), ("SCHG", 4, 1)]
        assert other.stats()["by_endpoint"]["splits"] == 1
