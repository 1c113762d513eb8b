from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from tickstock import calendar
from tickstock.timeframes import ALL_TIMEFRAMES, Timeframe
from tickstock.windows import plan_windows

AFTER_CLOSE_DEC_2 = datetime(2025, 12, 2, 21, 0, tzinfo=UTC)


def _et_hours(window) -> list[int]:
    return [k.astimezone(calendar.NEW_YORK).hour for k in window.expected]


def test_two_day_load_matches_the_design_documents_first_acceptance_case():
    w = plan_windows(as_of=date(2025, 12, 2), days=2, timeframes=ALL_TIMEFRAMES, now=AFTER_CLOSE_DEC_2)
    assert w[Timeframe.DAY].expected == (date(2025, 12, 1), date(2025, 12, 2))
    assert w[Timeframe.WEEK].expected == (date(2025, 11, 30),)  # a Sunday
    assert w[Timeframe.MONTH].expected == (date(2025, 12, 1),)
    assert w[Timeframe.HOUR].expected_count == 14
    assert _et_hours(w[Timeframe.HOUR]) == [9, 10, 11, 12, 13, 14, 15] * 2
    assert (w[Timeframe.WEEK].start, w[Timeframe.WEEK].end) == (date(2025, 12, 1), date(2025, 12, 2))


def test_ninety_day_spy_load_has_the_exact_calendar_counts():
    w = plan_windows(as_of=date(2025, 11, 30), days=90, timeframes=ALL_TIMEFRAMES, now=AFTER_CLOSE_DEC_2)
    assert w[Timeframe.DAY].expected_count == 63  # Labor Day 2025-09-01 is closed
    assert w[Timeframe.WEEK].expected_count == 13
    assert w[Timeframe.WEEK].expected[0] == date(2025, 8, 31)
    assert w[Timeframe.MONTH].expected == (date(2025, 9, 1), date(2025, 10, 1), date(2025, 11, 1))
    hourly = w[Timeframe.HOUR]
    assert hourly.expected_count == 11  # 7 on 11-26, 4 on the 11-28 early close (13:00)
    assert (hourly.start, hourly.end) == (date(2025, 11, 26), date(2025, 11, 28))
    assert _et_hours(hourly)[-4:] == [9, 10, 11, 12]


def test_weekend_run_still_loads_the_last_two_sessions_hourly():
    w = plan_windows(
        as_of=date(2025, 12, 7),
        days=1,
        timeframes=(Timeframe.HOUR, Timeframe.DAY),
        now=AFTER_CLOSE_DEC_2.replace(day=8),
    )
    assert Timeframe.DAY not in w  # Saturday-Sunday: no session in [12-06, 12-07]
    assert w[Timeframe.HOUR].start == date(2025, 12, 4)
    assert w[Timeframe.HOUR].expected_count == 14


def test_in_progress_session_expects_only_bars_that_can_exist():
    mid_session = datetime(2025, 12, 2, 16, 30, tzinfo=UTC)  # 11:30 ET
    w = plan_windows(as_of=date(2025, 12, 2), days=2, timeframes=ALL_TIMEFRAMES, now=mid_session)
    assert w[Timeframe.DAY].expected_count == 2  # today's partial day bar
    assert _et_hours(w[Timeframe.HOUR])[-3:] == [9, 10, 11]
    before_open = datetime(2025, 12, 2, 13, 0, tzinfo=UTC)  # 08:00 ET
    w = plan_windows(as_of=date(2025, 12, 2), days=2, timeframes=(Timeframe.DAY,), now=before_open)
    assert w[Timeframe.DAY].expected == (date(2025, 12, 1),)


def test_extended_hours_and_disabled_hourly():
    w = plan_windows(
        as_of=date(2025, 11, 28),
        days=1,
        timeframes=(Timeframe.HOUR,),
        hourly_days=1,
        extended_hours=True,
        now=AFTER_CLOSE_DEC_2,
    )
    assert _et_hours(w[Timeframe.HOUR]) == list(range(4, 17))  # early close + 4h after-hours
    assert plan_windows(as_of=date(2025, 11, 28), days=1, timeframes=(Timeframe.HOUR,), hourly_days=0) == {}


def test_dates_do_not_depend_on_the_host_time_zone(monkeypatch):
    import time as time_module

    expected = plan_windows(as_of=date(2025, 11, 30), days=90, timeframes=ALL_TIMEFRAMES, now=AFTER_CLOSE_DEC_2)
    for tz in ("America/Los_Angeles", "Asia/Tokyo"):
        monkeypatch.setenv("TZ", tz)
        time_module.tzset()
        assert (
            plan_windows(as_of=date(2025, 11, 30), days=90, timeframes=ALL_TIMEFRAMES, now=AFTER_CLOSE_DEC_2)
            == expected
        )
    monkeypatch.delenv("TZ")
    time_module.tzset()


def test_calendar_helpers():
    assert calendar.week_start(date(2025, 12, 6)) == date(2025, 11, 30)  # Saturday -> Sunday before
    assert calendar.week_start(date(2025, 11, 30)) == date(2025, 11, 30)
    assert calendar.et_midnight(date(2005, 4, 1)) == datetime(2005, 4, 1, 5, tzinfo=UTC)  # EST
    assert calendar.et_midnight(date(2005, 4, 4)) == datetime(2005, 4, 4, 4, tzinfo=UTC)  # EDT
    assert calendar.et_date(datetime(2023, 1, 9, 21, 0, tzinfo=UTC)) == date(2023, 1, 9)  # grouped 16:00 ET
    assert not calendar.is_session(date(2025, 11, 27))
    assert calendar.session_close(date(2025, 11, 28)).astimezone(calendar.NEW_YORK).time() == time(13)
    with pytest.raises(ValueError, match="naive datetime"):
        calendar.et_date(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="outside the NYSE calendar"):
        calendar.sessions(date(1980, 1, 1), date(1980, 2, 1))
