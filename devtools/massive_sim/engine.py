"""Request semantics of the three endpoints, independent of HTTP.

Custom Bars: ``from`` snaps to the start of its window and ``to`` to the end (KB-HOURLY), results
are whole windows of base aggregates (minutes for minute/hour, days for day and up), ``limit``
counts base aggregates, and a page that stops early carries a ``next_url`` whose ``from`` (``to``
when sorting descending) is rewritten to a millisecond timestamp and whose ``cursor`` is the
base64 of ``limit=..&sort=..`` with no API key, like the real one.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import numpy as np

from massive_sim.calendar import (
    DAY_BASED,
    ET,
    TIMESPANS,
    et_midnight_ms,
    window_start_ms,
)
from massive_sim.prices import Bars, PriceModel, empty_bars, render_bars

if TYPE_CHECKING:
    from collections.abc import Iterator

    from massive_sim.splits import SplitQuery
    from massive_sim.universe import Ticker, Universe

DEFAULT_LIMIT = 5000
MAX_LIMIT = 50_000
#: Sessions computed per step when walking minute data; a 50,000-minute page spans ~52 sessions.
_MINUTE_CHUNK = 24
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_RE = re.compile(r"^-?\d+$")


#: Grouped-daily bodies kept (per session, data version, clock cutoff and split state): a year of
#: sessions and more, so a year-long load re-reads what a warm-up or an earlier load built
#: (~0.35 s per 5,000-ticker session when cold) instead of rebuilding it.
GROUPED_CACHE_SESSIONS = 300


class BadRequest(ValueError):
    """A parameter error the real API answers with HTTP 400 and an ERROR body."""


def parse_instant(raw: str, *, is_to: bool) -> int:
    """``YYYY-MM-DD`` (a whole New York day) or epoch milliseconds, as an epoch-ms instant."""
    if _INT_RE.match(raw):
        return int(raw)
    if _DATE_RE.match(raw):
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            raise BadRequest(f"Could not parse the time parameter: '{'to' if is_to else 'from'}'.") from None
        if is_to:
            return et_midnight_ms(day + dt.timedelta(days=1)) - 1
        return et_midnight_ms(day)
    raise BadRequest(f"Could not parse the time parameter: '{'to' if is_to else 'from'}'.")


def encode_cursor(limit: int, sort: str, adjusted: bool) -> str:
    params = {"limit": str(limit), "sort": sort}
    if not adjusted:
        params["adjusted"] = "false"
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid cursor.") from None
    return dict(parse_qsl(raw))


def parse_bool(raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    low = raw.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise BadRequest(f"Could not parse boolean: '{raw}'.")


@dataclass
class AggQuery:
    ticker: str
    multiplier: int
    timespan: str
    from_raw: str
    to_raw: str
    adjusted: bool = True
    sort: str = "asc"
    limit: int = DEFAULT_LIMIT
    continued: bool = False  # the request came from a next_url cursor

    @classmethod
    def from_request(cls, path: dict[str, str], query: dict[str, str]) -> AggQuery:
        """Parse path parameters (ticker, multiplier, timespan, from, to) and the query string."""
        ticker, multiplier, timespan = path["ticker"], path["multiplier"], path["timespan"]
        from_raw, to_raw = path["from"], path["to"]
        params = dict(query)
        continued = "cursor" in params
        if continued:
            params = {**decode_cursor(params["cursor"]), **{k: v for k, v in params.items() if k != "cursor"}}
        if timespan not in TIMESPANS:
            raise BadRequest(f"Invalid timespan '{timespan}'. Simulated: {', '.join(TIMESPANS)}.")
        if not multiplier.isdigit() or int(multiplier) < 1:
            raise BadRequest(f"Could not parse the multiplier: '{multiplier}'.")
        if int(multiplier) != 1:
            raise BadRequest("The simulator only serves multiplier 1.")
        sort = params.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort '{sort}': use asc or desc.")
        limit_raw = params.get("limit", str(DEFAULT_LIMIT))
        if not limit_raw.isdigit() or int(limit_raw) < 1:
            raise BadRequest(f"Could not parse the limit: '{limit_raw}'.")
        return cls(
            ticker=ticker,
            multiplier=1,
            timespan=timespan,
            from_raw=from_raw,
            to_raw=to_raw,
            adjusted=parse_bool(params.get("adjusted"), True),
            sort=sort,
            limit=min(int(limit_raw), MAX_LIMIT),
            continued=continued,
        )


@dataclass
class AggPage:
    bars: Bars
    query_count: int
    next_from: str | None = None
    next_to: str | None = None

    @property
    def has_next(self) -> bool:
        return self.next_from is not None


def _group_days(days: Bars, keys: np.ndarray) -> Bars:
    """Reduce consecutive day bars sharing a window key into one bar each (exact sums)."""
    if len(days) == 0:
        return days
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    return Bars(
        t=keys[starts],
        o=days.o[starts],
        h=np.maximum.reduceat(days.h, starts),
        l=np.minimum.reduceat(days.l, starts),
        c=days.c[ends],
        v=np.add.reduceat(days.v, starts),
        vwv=np.add.reduceat(days.vwv, starts),
        n=np.add.reduceat(days.n, starts),
        base=np.add.reduceat(days.base, starts),
    )


class Engine:
    """Answers aggs, grouped-daily and ticker-details queries from the price model."""

    def __init__(self, model: PriceModel, universe: Universe) -> None:
        self.model = model
        self.universe = universe
        self.sessions = model.sessions
        self._grouped_cache: dict[tuple[int, int, int | None, int], tuple[list[str], Bars, str]] = {}

    # -- custom bars ----------------------------------------------------------------------------

    def aggs(self, q: AggQuery, version: int, now_ms: int, to_snap: str = "window") -> AggPage:
        """One page of Custom Bars.

        ``to_snap="window"`` is the real API: ``to`` extends to the end of its window, so a weekly
        request ending on a Sunday includes that (possibly partial) week. ``"day"`` (a simulator
        option, not real behaviour) keeps only base aggregates up to the ``to`` instant.
        """
        start = parse_instant(q.from_raw, is_to=False)
        end = parse_instant(q.to_raw, is_to=True)
        if end < start:
            raise BadRequest("The parameter 'to' cannot be a time that occurs before 'from'")
        ticker = self.universe.get(q.ticker)
        if ticker is None:
            return AggPage(empty_bars(), 0)
        lo_ms = window_start_ms(start, q.timespan)
        hi_ms = window_start_ms(end, q.timespan)  # start of the last window; its end is inclusive
        clip_ms = end if to_snap == "day" else None
        adjust_at = now_ms if q.adjusted else None
        if q.timespan in DAY_BASED:
            windows = self._day_windows(
                ticker=ticker,
                timespan=q.timespan,
                lo_ms=lo_ms,
                hi_ms=hi_ms,
                version=version,
                now_ms=now_ms,
                clip_ms=clip_ms,
                adjust_at=adjust_at,
            )
            if q.sort == "desc":
                windows = windows.take(slice(None, None, -1))
            return self._paginate(iter([windows]), q)
        if clip_ms is not None:
            hi_ms = window_start_ms(clip_ms, q.timespan)
        chunks = self._minute_windows(ticker, q, (lo_ms, hi_ms), version, now_ms)
        if adjust_at is not None and self.model.splits is not None:
            chunks = (self.model.splits.restate(chunk, ticker.ticker, adjust_at) for chunk in chunks)
        return self._paginate(chunks, q)

    def _day_windows(
        self,
        *,
        ticker: Ticker,
        timespan: str,
        lo_ms: int,
        hi_ms: int,
        version: int,
        now_ms: int,
        clip_ms: int | None = None,
        adjust_at: int | None = None,
    ) -> Bars:
        """Day bars reduced to ``timespan`` windows; restated for splits executed by ``adjust_at``.

        Restatement is applied to the days, so a week or month containing a split is the
        aggregate of restated days before it and unchanged days from it on.
        """
        s = self.sessions
        wm = s.window_ms[timespan]
        lo = int(np.searchsorted(wm, lo_ms, side="left"))
        hi = int(np.searchsorted(wm, hi_ms, side="right"))
        if clip_ms is not None:
            hi = min(hi, int(np.searchsorted(s.day_ms, clip_ms, side="right")))
        days = self.model.day_bars(ticker, lo, hi, version, now_ms)
        if adjust_at is not None and self.model.splits is not None:
            days = self.model.splits.restate(days, ticker.ticker, adjust_at)
        if timespan == "day" or len(days) == 0:
            return days
        ordinals = np.searchsorted(s.day_ms, days.t)
        return _group_days(days, wm[ordinals])

    def _minute_windows(
        self, ticker: Ticker, q: AggQuery, span: tuple[int, int], version: int, now_ms: int
    ) -> Iterator[Bars]:
        lo_ms, hi_ms = span
        s = self.sessions
        lo, hi = s.range_by_day_ms(window_start_ms(lo_ms, "day"), hi_ms)
        lo, hi = self.model.active_range(ticker, lo, hi, now_ms)
        width = 1 if q.timespan == "minute" else 60
        tidx = self.model.index(ticker)
        order = range(lo, hi, _MINUTE_CHUNK) if q.sort == "asc" else range(hi, lo, -_MINUTE_CHUNK)
        for edge in order:
            a, b = (edge, min(edge + _MINUTE_CHUNK, hi)) if q.sort == "asc" else (max(edge - _MINUTE_CHUNK, lo), edge)
            bars = self.model.minute_bars(tidx, np.arange(a, b, dtype=np.int64), version, now_ms, width)
            inside = (bars.t >= lo_ms) & (bars.t <= hi_ms)
            bars = bars.take(inside)
            if q.sort == "desc":
                bars = bars.take(slice(None, None, -1))
            if len(bars):
                yield bars

    @staticmethod
    def _paginate(chunks: Iterator[Bars], q: AggQuery) -> AggPage:
        """Whole windows while their base aggregates fit in ``limit`` (always at least one)."""
        taken: list[Bars] = []
        used = 0
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            cum = used + np.cumsum(chunk.base)
            fit = int(np.searchsorted(cum, q.limit, side="right"))
            if fit == 0 and used == 0:
                fit = 1  # a single window larger than limit is still served whole
            if fit > 0:
                taken.append(chunk.take(slice(0, fit)))
                used = int(cum[fit - 1])
            if fit < len(chunk):
                page = Bars.concat(taken)
                nxt = int(chunk.t[fit])
                if q.sort == "asc":
                    return AggPage(page, used, next_from=str(nxt), next_to=q.to_raw)
                return AggPage(page, used, next_from=q.from_raw, next_to=str(int(page.t[-1]) - 1))
        return AggPage(Bars.concat(taken), used)

    # -- grouped daily --------------------------------------------------------------------------

    def grouped(self, day: dt.date, version: int, now_ms: int, adjusted: bool = True) -> tuple[list[str], Bars, str]:
        """Tickers, day bars and the rendered ``results`` items of every symbol trading on ``day``.

        Empty on holidays, weekends and days the clock has not reached. ``adjusted`` restates
        the bars of tickers that split after ``day`` (by the clock), as on every other endpoint.
        """
        s = self.sessions
        ordinal = s.index_of.get(day)
        if ordinal is None or int(s.grid_ms[ordinal]) >= now_ms:
            return [], empty_bars(), ""
        end = int(s.grid_ms[ordinal]) + int(s.minutes[ordinal]) * 60_000
        cutoff = None if now_ms >= end else now_ms
        book = self.model.splits
        effective = book.effective_count(now_ms) if adjusted and book is not None else -1
        key = (ordinal, version, cutoff, effective)
        hit = self._grouped_cache.get(key)
        if hit is not None:
            return hit
        tickers = [
            t
            for t in self.universe.tickers
            if t.list_date <= day and (t.delisted is None or day < t.delisted) and ordinal >= 1
        ]
        bars = self.model.grouped_day(tickers, ordinal, version, now_ms)
        symbols = [tickers[i].ticker for i in bars.base.tolist()]
        if effective >= 0:
            bars.t = np.full(len(bars), int(s.day_ms[ordinal]), dtype=np.int64)  # restate by the day
            bars = book.restate_rows(bars, symbols, now_ms)
        bars.t = np.full(len(bars), int(s.close_16_ms[ordinal]), dtype=np.int64)
        rendered = ",".join(render_bars(bars, symbols))
        if len(self._grouped_cache) >= GROUPED_CACHE_SESSIONS:
            self._grouped_cache.pop(next(iter(self._grouped_cache)))
        self._grouped_cache[key] = (symbols, bars, rendered)
        return symbols, bars, rendered

    # -- splits ---------------------------------------------------------------------------------

    def splits(self, q: SplitQuery, now_ms: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of ``/stocks/v1/splits`` rows and whether a next page exists."""
        book = self.model.splits
        if book is None:
            return [], False
        page, more = q.select(book.listing(now_ms))
        return [book.row(split, now_ms) for split in page], more

    def clear_caches(self) -> None:
        self._grouped_cache.clear()
        self.model.clear_caches()


def et_date(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET).date()
