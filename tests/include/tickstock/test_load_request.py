from __future__ import annotations

from datetime import date

import pytest

from tickstock.load_request import (
    InvalidRequest,
    LoadRequest,
    parse_load_request,
    read_universe,
    universe_path,
)
from tickstock.timeframes import ALL_TIMEFRAMES, Timeframe


def test_defaults_follow_the_design_document():
    req = parse_load_request({"symbols": ["SCHG", "VUG"]})
    assert req == LoadRequest(symbols=("SCHG", "VUG"))
    assert (req.days, req.timeframes, req.hourly_days, req.hourly_session) == (
        365,
        ALL_TIMEFRAMES,
        2,
        "regular",
    )
    assert req.adjusted is True
    assert req.as_of is None


def test_years_from_a_redis_message_become_days():
    assert parse_load_request({"symbols": ["SPY"], "years": 0.005479}).days == 2
    assert parse_load_request({"symbols": ["SPY"], "years": 1}).days == 365


def test_symbols_and_universe_combine_without_duplicates_and_lower_case_is_normalised():
    req = parse_load_request({"symbols": ["vug", "AAPL", "VUG"], "universe": "core_etfs"})
    assert req.symbols[:2] == ("VUG", "AAPL")
    assert req.symbols.count("VUG") == 1
    assert set(read_universe("core_etfs")) <= set(req.symbols)
    assert {"SCHG", "VUG", "SPY"} <= set(read_universe("core_etfs.csv"))


def test_timeframes_and_as_of_are_parsed():
    req = parse_load_request({"symbols": "SPY, QQQ", "timeframes": ["month", "day"], "as_of": "2025-11-30"})
    assert req.symbols == ("SPY", "QQQ")
    assert req.timeframes == (Timeframe.DAY, Timeframe.MONTH)
    assert req.as_of == date(2025, 11, 30)
    assert parse_load_request({"symbols": ["SPY"], "as_of": "2025-11-30T00:00:00+00:00"}).as_of == date(2025, 11, 30)


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({}, "symbols", "no symbols"),
        ({"symbols": ["AAPL", "bad symbol!"]}, "symbols", "invalid ticker(s) 'bad symbol!'"),
        ({"symbols": [42]}, "symbols", "invalid ticker(s) 42"),
        ({"symbols": {"a": 1}}, "symbols", "expected a list"),
        ({"symbols": ["SPY"], "days": 0}, "days", "out of range 1..7300"),
        ({"symbols": ["SPY"], "days": 7301}, "days", "out of range"),
        ({"symbols": ["SPY"], "days": "ten"}, "days", "whole number"),
        ({"symbols": ["SPY"], "days": 2, "years": 1}, "days", "not both"),
        ({"symbols": ["SPY"], "years": -1}, "years", "positive"),
        ({"symbols": ["SPY"], "years": 30}, "years", "more than 7300 days"),
        ({"symbols": ["SPY"], "timeframes": ["2h"]}, "timeframes", "unknown timeframe '2h'"),
        ({"symbols": ["SPY"], "timeframes": []}, "timeframes", "non-empty"),
        ({"symbols": ["SPY"], "hourly_days": 3}, "hourly_days", "out of range 0..2"),
        ({"symbols": ["SPY"], "hourly_session": "overnight"}, "hourly_session", "not one of"),
        ({"symbols": ["SPY"], "adjusted": "yes"}, "adjusted", "true or false"),
        ({"symbols": ["SPY"], "as_of": "30/11/2025"}, "as_of", "not a date"),
        ({"symbols": ["SPY"], "batch_size": 0}, "batch_size", "out of range"),
        ({"universe": "../../etc/passwd"}, "universe", "not a universe name"),
        (
            {"universe": "no_such_universe"},
            "universe",
            "unknown universe 'no_such_universe'; known: core_etfs",
        ),
    ],
)
def test_bad_input_is_rejected_naming_the_field(params, field, fragment):
    with pytest.raises(InvalidRequest) as info:
        parse_load_request(params)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_universe_names_cannot_escape_the_universes_folder():
    for name in ("../core_etfs", "/etc/passwd", "core_etfs/../../x", ".hidden"):
        with pytest.raises(InvalidRequest, match="not a universe name"):
            universe_path(name)
