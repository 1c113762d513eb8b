"""NYSE (XNYS) sessions and the period arithmetic of Massive's bars.

Massive builds bars in US Eastern time: day bars start at 00:00 America/New_York, weeks on
Sunday 00:00 ET, months on the 1st. Everything here therefore works in ``America/New_York`` and
never in the host's local time zone (the design document's sketch used local time and shifted
dates). Sessions, holidays and early closes come from ``exchange_calendars``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

NEW_YORK = ZoneInfo("America/New_York")
EXCHANGE = "XNYS"
# The calendar object is built once per process for this range; 20-year lookbacks need 1990s+.
CALENDAR_START = date(1990, 1, 2)
CALENDAR_END_YEARS_AHEAD = 2

# Hourly bars: the 09:00 bar mixes the last half hour of pre-market with the open (as Massive
# builds it); "regular session" keeps bars starting 09:00 ET up to the session's close.
REGULAR_FIRST_HOUR = time(9)
EXTENDED_FIRST_HOUR = time(4)
# After-hours trading runs until 20:00 ET on a full day and 4 hours after an early close.
AFTER_HOURS = timedelta(hours=4)


@cache
def nyse() -> ExchangeCalendar:
    """Return the XNYS calendar (built once per process: it takes a few hundred ms)."""
    import exchange_calendars

    end = date(datetime.now(UTC).year + CALENDAR_END_YEARS_AHEAD, 12, 31)
    return exchange_calendars.get_calendar(EXCHANGE, start=CALENDAR_START.isoformat(), end=end.isoformat())


def _check_range(day: date) -> None:
    cal = nyse()
    if not cal.first_session.date() <= day <= cal.last_session.date():
        raise ValueError(
            f"{day} is outside the NYSE calendar's range {cal.first_session.date()}..{cal.last_session.date()}"
        )


def sessions(start: date, end: date) -> list[date]:
    """Return the NYSE sessions in ``[start, end]`` (both inclusive), oldest first."""
    if end < start:
        return []
    _check_range(start)
    _check_range(end)
    return [ts.date() for ts in nyse().sessions_in_range(start.isoformat(), end.isoformat())]


def is_session(day: date) -> bool:
    """Return whether ``day`` is an NYSE trading day."""
    _check_range(day)
    return bool(nyse().is_session(day.isoformat()))


def last_sessions(as_of: date, count: int) -> list[date]:
    """Return the last ``count`` sessions on or before ``as_of``, oldest first."""
    if count <= 0:
        return []
    _check_range(as_of)
    cal = nyse()
    last = cal.date_to_session(as_of.isoformat(), direction="previous")
    window = cal.sessions_window(last, -count)
    return [ts.date() for ts in window]


def session_open(day: date) -> datetime:
    """Return the regular-session open of ``day`` as an aware UTC datetime."""
    return nyse().session_open(day.isoformat()).to_pydatetime()


def started_sessions(days: list[date], now: datetime) -> list[date]:
    """Return the sessions of ``days`` (oldest first) whose regular open is at or before ``now``.

    A session's daily bar may exist from its first (pre-market) trade; only sessions whose regular
    open has passed are *expected*, so a run before the open does not fail the check. Opens grow
    with the date, so only the newest sessions can be ahead of ``now``: trim the tail instead of
    asking the calendar about every session (a refresh passes decades of them).
    """
    end = len(days)
    while end and session_open(days[end - 1]) > now:
        end -= 1
    return days[:end]


def session_close(day: date) -> datetime:
    """Return the regular-session close of ``day`` (13:00 ET on early closes) in UTC."""
    return nyse().session_close(day.isoformat()).to_pydatetime()


def et_midnight(day: date) -> datetime:
    """Return 00:00 America/New_York of ``day`` in UTC: the ``t`` of Massive's day bar."""
    return datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)


def et_date(instant: datetime) -> date:
    """Return the America/New_York calendar date of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: bar times must be timezone-aware")
    return instant.astimezone(NEW_YORK).date()


def week_start(day: date) -> date:
    """Return the Sunday that starts ``day``'s Massive week."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def month_start(day: date) -> date:
    """Return the first day of ``day``'s month."""
    return day.replace(day=1)


def hour_starts(day: date, *, extended: bool = False) -> list[datetime]:
    """Return the UTC starts of the hourly bars a liquid symbol has on session ``day``.

    Regular: 09:00 ET up to the last hour starting before the close (7 on a full day, 4 on a
    13:00 early close). Extended: 04:00 ET up to the last hour before the after-hours end.
    """
    close = session_close(day).astimezone(NEW_YORK)
    first = EXTENDED_FIRST_HOUR if extended else REGULAR_FIRST_HOUR
    end = close + AFTER_HOURS if extended else close
    cursor = datetime.combine(day, first, NEW_YORK)
    starts = []
    while cursor < end:
        starts.append(cursor.astimezone(UTC))
        # Wall-clock hours in ET: add in UTC so a DST change inside the range stays correct.
        cursor = (cursor.astimezone(UTC) + timedelta(hours=1)).astimezone(NEW_YORK)
    return starts


def today_new_york(now: datetime | None = None) -> date:
    """Return today's date in America/New_York (the default ``as_of`` of a load)."""
    return (now or datetime.now(UTC)).astimezone(NEW_YORK).date()
