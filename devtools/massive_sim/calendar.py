"""NYSE sessions as flat numpy arrays, built once from exchange_calendars (XNYS).

Every bar the simulator serves hangs off one session row: its ET-midnight day start, the 04:00 ET
start of the extended-hours grid, how many minutes trade that day (early closes are shorter) and
the start of the week/month/quarter/year window it falls in. Keeping these as arrays lets the
price generator and the window selection stay vectorised, which is what makes the 5,000-symbol
grouped-daily endpoint and the throughput target cheap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

ET = ZoneInfo("America/New_York")
UTC = dt.UTC

#: First session with simulated data; nothing older is served (documented difference).
HISTORY_START = dt.date(2005, 1, 3)
#: The extended-hours grid starts at 04:00 ET and runs four hours past the regular close.
EXTENDED_OPEN_MINUTE = 4 * 60
EXTENDED_AFTER_CLOSE_MINUTES = 4 * 60
#: Width of the per-day minute grid (04:00-20:00 ET on a normal day).
GRID_MINUTES = 16 * 60
#: Minute index (from 04:00) of the 09:30 regular open.
REGULAR_OPEN_INDEX = 5 * 60 + 30

MS_MINUTE = 60_000
MS_HOUR = 3_600_000

#: Timespans whose base aggregate is the minute bar; the rest are built from day bars.
MINUTE_BASED = ("minute", "hour")
DAY_BASED = ("day", "week", "month", "quarter", "year")
TIMESPANS = MINUTE_BASED + DAY_BASED


def et_midnight_ms(day: dt.date) -> int:
    """Epoch ms of 00:00 America/New_York on ``day`` (DST-aware, like real day bars)."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=ET).timestamp() * 1000)


def et_date_of_ms(ms: int) -> dt.date:
    """The New York calendar date an epoch-ms instant falls on."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET).date()


def window_start_date(day: dt.date, timespan: str) -> dt.date:
    """First calendar day of the day/week/month/quarter/year window containing ``day``.

    Weeks start on Sunday, as the real API's weekly bars do.
    """
    if timespan == "day":
        return day
    if timespan == "week":
        return day - dt.timedelta(days=(day.weekday() + 1) % 7)
    if timespan == "month":
        return day.replace(day=1)
    if timespan == "quarter":
        return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if timespan == "year":
        return dt.date(day.year, 1, 1)
    raise ValueError(timespan)


def window_start_ms(ms: int, timespan: str) -> int:
    """Start (epoch ms) of the window of ``timespan`` containing the instant ``ms``."""
    if timespan == "minute":
        return ms - ms % MS_MINUTE
    if timespan == "hour":
        # Whole-hour UTC offsets mean ET hours and UTC hours share boundaries.
        return ms - ms % MS_HOUR
    return et_midnight_ms(window_start_date(et_date_of_ms(ms), timespan))


@dataclass(frozen=True, eq=False)  # identity hash: usable as a cache key
class Sessions:
    """All XNYS sessions from ``HISTORY_START`` as parallel arrays (index = session ordinal)."""

    dates: list[dt.date]
    day_ms: np.ndarray  # int64 ET midnight
    grid_ms: np.ndarray  # int64 04:00 ET, minute 0 of the grid
    minutes: np.ndarray  # int64 minutes traded (960, or 780 on an early close)
    regular_close_index: np.ndarray  # int64 grid index of the regular close (390+330, ...)
    close_16_ms: np.ndarray  # int64 16:00 ET, the grouped-daily timestamp quirk
    window_ms: dict[str, np.ndarray]  # week/month/quarter/year window start per session
    index_of: dict[dt.date, int]

    def __len__(self) -> int:
        return len(self.dates)

    def range_by_day_ms(self, lo_ms: int, hi_ms: int) -> tuple[int, int]:
        """Ordinals [i, j) of sessions whose day start lies in [lo_ms, hi_ms]."""
        i = int(np.searchsorted(self.day_ms, lo_ms, side="left"))
        j = int(np.searchsorted(self.day_ms, hi_ms, side="right"))
        return i, j


def load_sessions(end: dt.date | None = None) -> Sessions:
    """Build the session table from exchange_calendars XNYS (holidays and early closes)."""
    import exchange_calendars as xcals

    end = end or (dt.date.today() + dt.timedelta(days=370))
    cal = xcals.get_calendar("XNYS", start=HISTORY_START.isoformat(), end=end.isoformat())
    labels = cal.sessions
    closes_utc = cal.closes.loc[labels]
    dates = [ts.date() for ts in labels]
    day_idx = pd.DatetimeIndex(labels).tz_localize(None).tz_localize("America/New_York")
    day_ms = day_idx.asi8 // 1_000_000
    close_et = pd.DatetimeIndex(closes_utc).tz_convert("America/New_York")
    close_minute = (close_et.hour * 60 + close_et.minute).to_numpy(dtype=np.int64)
    regular_close_index = close_minute - EXTENDED_OPEN_MINUTE
    minutes = regular_close_index + EXTENDED_AFTER_CLOSE_MINUTES
    window_ms = {"day": day_ms}
    for span in ("week", "month", "quarter", "year"):
        starts = sorted({window_start_date(d, span) for d in dates})
        ms_of = {d: et_midnight_ms(d) for d in starts}
        window_ms[span] = np.array([ms_of[window_start_date(d, span)] for d in dates], dtype=np.int64)
    return Sessions(
        dates=dates,
        day_ms=day_ms.astype(np.int64),
        grid_ms=(day_ms + EXTENDED_OPEN_MINUTE * MS_MINUTE).astype(np.int64),
        minutes=minutes.astype(np.int64),
        regular_close_index=regular_close_index.astype(np.int64),
        close_16_ms=(day_ms + 16 * MS_HOUR).astype(np.int64),
        window_ms=window_ms,
        index_of={d: i for i, d in enumerate(dates)},
    )
