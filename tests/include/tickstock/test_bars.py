from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tickstock import calendar
from tickstock.bars import Bar, decode_json, parse_aggregates, parse_grouped_daily
from tickstock.timeframes import Timeframe

# The official client's recorded AAPL fixture (2005-04-01 is a Friday in EST, 04-04 a Monday in
# EDT), with the volume in the exponent form the API has sent.
AAPL_FIXTURE = b"""{"ticker": "AAPL", "queryCount": 2, "resultsCount": 2, "adjusted": true,
 "results": [
  {"v": 6.42646396e+08, "vw": 1.469, "o": 1.5032, "c": 1.4604, "h": 1.5064, "l": 1.4489,
   "t": 1112331600000, "n": 82132},
  {"v": 578172308.0, "vw": 1.4589, "o": 1.4639, "c": 1.4675, "h": 1.4754, "l": 1.4343,
   "t": 1112587200000, "n": 65543}],
 "status": "OK", "request_id": "12afda77aab3b1936c5fb6ef4241ae42", "count": 2}"""


def _item(t: datetime, *, o="10", h="11", low="9", c="10.5", v="1000", **extra) -> dict:
    item = {"t": int(t.timestamp() * 1000), "o": Decimal(o), "h": Decimal(h), "l": Decimal(low)}
    return item | {"c": Decimal(c), "v": Decimal(v)} | extra


def _et(year, month, day, hour=0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=calendar.NEW_YORK)


def test_day_bars_are_exact_decimals_dated_in_new_york_across_a_dst_change():
    body = decode_json(AAPL_FIXTURE)
    parsed = parse_aggregates("AAPL", "day", body["results"])
    assert parsed.rejected == []
    first, second = parsed.bars
    assert first == Bar(
        "AAPL", Timeframe.DAY, datetime(2005, 4, 1, 5, tzinfo=UTC), date(2005, 4, 1),
        Decimal("1.5032"), Decimal("1.5064"), Decimal("1.4489"), Decimal("1.4604"),
        Decimal("642646396"), Decimal("1.469"), 82132,
    )  # fmt: skip
    assert isinstance(first.volume, Decimal)
    assert decode_json(b'{"v": 1.029145e+06}')["v"] == Decimal(1029145)
    assert second.start == datetime(2005, 4, 4, 4, tzinfo=UTC)  # midnight EDT
    assert second.period == date(2005, 4, 4) == second.key


def test_week_and_month_periods_are_their_et_start_dates():
    week = parse_aggregates("SPY", Timeframe.WEEK, [_item(_et(2025, 11, 30))]).bars[0]
    month = parse_aggregates("SPY", Timeframe.MONTH, [_item(_et(2025, 11, 1))]).bars[0]
    assert (week.period, week.start) == (date(2025, 11, 30), datetime(2025, 11, 30, 5, tzinfo=UTC))
    assert (month.period, month.start) == (date(2025, 11, 1), datetime(2025, 11, 1, 4, tzinfo=UTC))


def test_misaligned_period_starts_are_rejected_not_shifted():
    parsed = parse_aggregates(
        "SPY",
        "week",
        [_item(_et(2025, 12, 1)), _item(datetime(2025, 11, 30, 0, tzinfo=UTC))],
    )
    assert parsed.bars == []
    assert [r.reason.split(": ", 1)[1] for r in parsed.rejected] == [
        "weekly bar starts on Monday 2025-12-01 ET, not on a Sunday",
        "week bar does not start at 00:00 America/New_York",
    ]


def test_ohlc_volume_and_field_validation_reports_every_invalid_bar():
    days = [_et(2025, 12, d) for d in (1, 2, 3, 4, 5)]
    results = [
        _item(days[0], h="10.4"),  # high below close
        _item(days[1], low="10.2"),  # low above open
        _item(days[2], v="-1"),  # negative volume
        {"t": int(days[3].timestamp() * 1000), "o": Decimal(1), "h": 2, "l": Decimal(1)},  # no c, v
        _item(days[4]) | {"c": True},  # not a number
        "garbage",
        {"o": 1, "h": 1, "l": 1, "c": 1, "v": 1},  # no t
    ]
    parsed = parse_aggregates("SPY", "day", results)
    assert parsed.bars == []
    reasons = parsed.reasons_by_symbol()["SPY"]
    assert reasons == [
        "2025-12-01T05:00:00+00:00: high 10.4 is below max(open 10, close 10.5)",
        "2025-12-02T05:00:00+00:00: low 10.2 is above min(open 10, close 10.5)",
        "2025-12-03T05:00:00+00:00: volume -1 is negative",
        "2025-12-04T05:00:00+00:00: missing field(s) c, v",
        "2025-12-05T05:00:00+00:00: field 'c' is True, not a number",
        "bar without a valid 't': result item is str, not an object",
        "bar without a valid 't': field 't' is missing",
    ]
    assert [r.raw for r in parsed.rejected][-1] == {"o": 1, "h": 1, "l": 1, "c": 1, "v": 1}


def test_high_equal_to_open_and_low_equal_to_close_is_valid():
    parsed = parse_aggregates("SPY", "day", [_item(_et(2025, 12, 1), o="11", h="11", low="9", c="9")])
    assert len(parsed.bars) == 1
    assert parsed.rejected == []


def test_identical_duplicates_keep_one_copy_and_conflicting_ones_keep_none_both_reported():
    same = _item(_et(2025, 12, 1))
    conflict = [_item(_et(2025, 12, 2)), _item(_et(2025, 12, 2), c="10.75")]
    parsed = parse_aggregates("SPY", "day", [same, dict(same), *conflict, _item(_et(2025, 12, 3))])
    assert [b.period for b in parsed.bars] == [date(2025, 12, 1), date(2025, 12, 3)]
    reasons = [r.reason for r in parsed.rejected]
    assert reasons[0] == "2025-12-01T05:00:00+00:00: duplicate of an identical bar (one kept)"
    assert len(reasons) == 3
    assert all("different values (none kept" in r for r in reasons[1:])


def test_bars_come_out_oldest_first_whatever_the_response_order():
    items = [_item(_et(2025, 12, d)) for d in (3, 1, 2)]
    assert [b.period.day for b in parse_aggregates("SPY", "day", items).bars] == [1, 2, 3]


def _hours(day: date, first: int, last: int) -> list[dict]:
    return [_item(_et(day.year, day.month, day.day, h)) for h in range(first, last + 1)]


def test_hourly_regular_session_is_0900_to_the_close_and_early_closes_are_shorter():
    full, early = date(2025, 11, 26), date(2025, 11, 28)  # Wednesday; Black Friday (13:00 close)
    results = _hours(full, 4, 19) + _hours(early, 4, 16) + _hours(date(2025, 11, 27), 9, 12)  # + holiday
    regular = parse_aggregates("SPY", "hour", results)
    by_day: dict[date, list[int]] = {}
    for bar in regular.bars:
        local = bar.start.astimezone(calendar.NEW_YORK)
        by_day.setdefault(local.date(), []).append(local.hour)
    assert by_day == {full: list(range(9, 16)), early: [9, 10, 11, 12]}
    assert regular.outside_session == len(results) - 11
    assert all(b.period is None and b.key == b.start for b in regular.bars)
    assert [b.start for b in regular.bars] == calendar.hour_starts(full) + calendar.hour_starts(early)

    extended = parse_aggregates("SPY", "hour", results, extended_hours=True)
    assert len(extended.bars) == len(results)
    assert extended.outside_session == 0


def test_hourly_bar_not_on_the_hour_is_rejected():
    parsed = parse_aggregates("SPY", "hour", [_item(datetime(2025, 12, 1, 15, 30, tzinfo=UTC))])
    assert parsed.rejected[0].reason.endswith("hourly bar does not start on the hour")


def test_no_results_key_or_null_results_mean_no_bars():
    empty = decode_json(b'{"status":"OK","resultsCount":0}')
    assert parse_aggregates("AAMC", "day", empty.get("results")).bars == []
    assert parse_aggregates("AAMC", "day", None).rejected == []


def test_grouped_daily_16_et_stamp_keys_the_same_bar_as_the_range_endpoints_midnight():
    # polygon-io/issues #250: grouped t=1673298000000 (2023-01-09 16:00 EST), range t=1673240400000.
    values = {"o": 1, "h": 2, "l": Decimal("0.5"), "c": Decimal("1.5"), "v": 10}
    grouped = parse_grouped_daily([{"T": "TTMI", **values, "t": 1673298000000}], day=date(2023, 1, 9))
    ranged = parse_aggregates("TTMI", "day", [{**values, "t": 1673240400000}])
    assert grouped.bars == ranged.bars
    assert grouped.bars[0].key == date(2023, 1, 9)


def test_grouped_daily_rejects_rows_without_ticker_or_for_another_date():
    parsed = parse_grouped_daily(
        [
            {"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": 1673298000000},
            {"T": "X", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": 1673298000000 + 86_400_000},
            {"T": "Y", "o": 2, "h": 1, "l": 1, "c": 1, "v": 1, "t": 1673298000000},
        ],
        day=date(2023, 1, 9),
    )
    assert parsed.bars == []
    assert sorted(parsed.reasons_by_symbol()) == ["?", "X", "Y"]
    assert "dated 2023-01-10 ET, requested 2023-01-09" in parsed.reasons_by_symbol()["X"][0]


def test_decode_json_rejects_truncated_bodies_and_non_finite_numbers():
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        decode_json(AAPL_FIXTURE[:100])
    with pytest.raises(ValueError, match="non-finite"):
        decode_json(b'{"v": NaN}')


_TZ_SCRIPT = """
import json, sys, time
from tickstock.bars import decode_json, parse_aggregates, parse_grouped_daily
body = decode_json(sys.stdin.read())
out = {"local_zone": time.tzname[0]}
for tf, items in body.items():
    if tf == "grouped":
        bars = parse_grouped_daily(items).bars
    else:
        bars = parse_aggregates("SPY", tf, items).bars
    out[tf] = [b.period.isoformat() for b in bars]
print(json.dumps(out))
"""


@pytest.mark.parametrize(("tz", "zone_name"), [("America/Los_Angeles", "PST"), ("Asia/Tokyo", "JST")])
def test_periods_do_not_depend_on_the_process_time_zone(tz, zone_name):
    ms = lambda dt: int(dt.timestamp() * 1000)  # noqa: E731
    payload = {
        # Monday after the US DST change, Sunday week start, month start on a weekend.
        "day": [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": ms(_et(2025, 3, 10))}],
        "week": [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": ms(_et(2025, 11, 30))}],
        "month": [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": ms(_et(2025, 11, 1))}],
        "grouped": [{"T": "SPY", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": ms(_et(2025, 12, 1, 16))}],
    }
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "TZ": tz, "PYTHONPATH": str(root / "include")}
    proc = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT], input=json.dumps(payload), env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(proc.stdout) == {
        "local_zone": zone_name,
        "day": ["2025-03-10"],
        "week": ["2025-11-30"],
        "month": ["2025-11-01"],
        "grouped": ["2025-12-01"],
    }
