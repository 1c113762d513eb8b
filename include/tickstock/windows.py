"""Load windows: what to request from Massive per timeframe, and exactly which bars to expect.

The design document's formula is kept for the daily window (``[as_of - days, as_of]``), but
calendar facts replace its guesses: the expected bars are computed from the XNYS calendar, so
the final check can demand an exact count instead of "±10%".

- Daily: the sessions in ``[as_of - days, as_of]``.
- Weekly / monthly: the periods containing those sessions. They are requested from the first to
  the last session of the window; Massive snaps ``from``/``to`` to whole periods, so a partial
  month never overwrites a full one.
- Hourly: the last ``hourly_days`` sessions up to ``as_of`` (sessions, not 48 clock hours, so a
  weekend run still loads them); regular-session bars unless ``extended``.
- A session, hour, week or month still in progress at ``now`` is loaded as a partial bar (and is
  corrected by a later run); bars that cannot exist yet are not expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tickstock import calendar
from tickstock.timeframes import Timeframe

BarKey = date | datetime


@dataclass(frozen=True)
class LoadWindow:
    """One timeframe's request range and the exact bar keys a liquid symbol has in it.

    :param timeframe: the bar timeframe
    :param start: ``from`` date sent to Massive (ET calendar date)
    :param end: ``to`` date sent to Massive (inclusive; Massive snaps it to the period's end)
    :param expected: the bar keys (period dates, or UTC hour starts for hourly bars), oldest first
    """

    timeframe: Timeframe
    start: date
    end: date
    expected: tuple[BarKey, ...]

    @property
    def expected_count(self) -> int:
        return len(self.expected)


def plan_windows(
    *,
    as_of: date,
    days: int,
    timeframes: tuple[Timeframe, ...],
    hourly_days: int = 2,
    extended_hours: bool = False,
    now: datetime | None = None,
) -> dict[Timeframe, LoadWindow]:
    """Compute the window of every requested timeframe; timeframes with nothing to load are omitted.

    :param as_of: reference date (America/New_York) the lookback ends on
    :param days: calendar-day lookback for daily, weekly and monthly bars
    :param timeframes: which timeframes to plan
    :param hourly_days: how many sessions of hourly bars (0 disables hourly bars)
    :param extended_hours: keep pre-market and after-hours hourly bars
    :param now: the current instant (default: the real time); bars after it cannot exist
    """
    now = now or datetime.now(UTC)
    windows: dict[Timeframe, LoadWindow] = {}
    daily = calendar.started_sessions(calendar.sessions(as_of - timedelta(days=days), as_of), now)
    if daily:
        first, last = daily[0], daily[-1]
        if Timeframe.DAY in timeframes:
            windows[Timeframe.DAY] = LoadWindow(Timeframe.DAY, first, last, tuple(daily))
        if Timeframe.WEEK in timeframes:
            weeks = tuple(sorted({calendar.week_start(d) for d in daily}))
            windows[Timeframe.WEEK] = LoadWindow(Timeframe.WEEK, first, last, weeks)
        if Timeframe.MONTH in timeframes:
            months = tuple(sorted({calendar.month_start(d) for d in daily}))
            windows[Timeframe.MONTH] = LoadWindow(Timeframe.MONTH, first, last, months)
    if Timeframe.HOUR in timeframes and hourly_days > 0:
        hourly_sessions = calendar.started_sessions(calendar.last_sessions(as_of, hourly_days), now)
        hours = tuple(
            start
            for day in hourly_sessions
            for start in calendar.hour_starts(day, extended=extended_hours)
            if start <= now
        )
        if hours:
            windows[Timeframe.HOUR] = LoadWindow(Timeframe.HOUR, hourly_sessions[0], hourly_sessions[-1], hours)
    return {tf: windows[tf] for tf in timeframes if tf in windows}
