"""The typed bar record every part of the loader passes around, and how API results become bars.

One record for all four timeframes: ``start`` is the instant Massive's ``t`` names (the window
start, aware UTC); ``period`` is the America/New_York date that keys day/week/month bars. Prices
and volume are ``Decimal`` so values reach NUMERIC columns exactly as the API sent them: responses
must be decoded with :func:`decode_json` (``parse_float=Decimal``), never with plain ``json.loads``,
or ``1.029145e+06`` and four-decimal prices pass through binary floats first.

Parsing is pure (no I/O) and never drops a bar silently: every bar that fails validation is
returned in :attr:`ParsedBars.rejected` with the reason, so callers can report it and keep it out
of the load. Hourly bars outside the regular session are the one deliberate exclusion; they are
counted in :attr:`ParsedBars.outside_session`.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tickstock import calendar
from tickstock.timeframes import Timeframe

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("o", "h", "l", "c", "v", "t")


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar.

    :param symbol: ticker, upper case
    :param timeframe: hour, day, week or month
    :param start: window start as an aware UTC datetime (Massive's ``t``)
    :param period: ET date of the period start for day/week/month bars; ``None`` for hourly bars
    """

    symbol: str
    timeframe: Timeframe
    start: datetime
    period: date | None
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal | None = None
    transactions: int | None = None

    @property
    def key(self) -> date | datetime:
        """The value of the table's time column: ``start`` for hourly bars, else ``period``."""
        if self.timeframe is Timeframe.HOUR:
            return self.start
        assert self.period is not None
        return self.period


@dataclass(frozen=True, slots=True)
class RejectedBar:
    """A result item that is not a valid bar, and why.

    :param symbol: the ticker it was returned for
    :param reason: human-readable reason, starting with the bar's start when it is known
    :param raw: the result item as received (for debugging; holds no credentials)
    """

    symbol: str
    reason: str
    raw: Mapping[str, Any]


@dataclass
class ParsedBars:
    """Bars parsed from one or more API responses.

    :param bars: valid bars, oldest first (per symbol)
    :param rejected: items that failed validation; they are reported, never loaded
    :param outside_session: hourly bars outside the regular session, left out because extended
        hours were not requested (not an error)
    """

    bars: list[Bar] = field(default_factory=list)
    rejected: list[RejectedBar] = field(default_factory=list)
    outside_session: int = 0

    def reasons_by_symbol(self) -> dict[str, list[str]]:
        """Return the rejection reasons grouped by symbol (for task results and job status)."""
        reasons: dict[str, list[str]] = defaultdict(list)
        for item in self.rejected:
            reasons[item.symbol].append(item.reason)
        return dict(reasons)


class InvalidBar(ValueError):
    """A result item that cannot be a bar (raised and caught inside this module)."""


def decode_json(body: bytes | str) -> Any:
    """Decode an API response body with every JSON number that has a fraction or exponent as a Decimal.

    Raises ``ValueError`` (``json.JSONDecodeError``) on truncated or otherwise invalid JSON.
    """
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Decimal:
    # NaN / Infinity are not JSON; a price that is not a number must fail validation, not load.
    raise ValueError(f"non-finite number {name} in response")


def _decimal(item: Mapping[str, Any], name: str) -> Decimal:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidBar(f"field {name!r} is {value!r}, not a number")
    result = Decimal(value)
    if not result.is_finite():
        raise InvalidBar(f"field {name!r} is not finite")
    return result


def _optional_decimal(item: Mapping[str, Any], name: str) -> Decimal | None:
    return None if item.get(name) is None else _decimal(item, name)


def _optional_int(item: Mapping[str, Any], name: str) -> int | None:
    if item.get(name) is None:
        return None
    value = _decimal(item, name)
    if value != value.to_integral_value():
        raise InvalidBar(f"field {name!r} is {value}, not a whole number")
    return int(value)


def _start(item: Mapping[str, Any]) -> datetime:
    ms = _optional_int(item, "t")
    if ms is None:
        raise InvalidBar("field 't' is missing")
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _describe(start: datetime | None) -> str:
    return start.isoformat() if start else "bar without a valid 't'"


def _check_prices(bar: Bar) -> None:
    if bar.high < max(bar.open, bar.close):
        raise InvalidBar(f"high {bar.high} is below max(open {bar.open}, close {bar.close})")
    if bar.low > min(bar.open, bar.close):
        raise InvalidBar(f"low {bar.low} is above min(open {bar.open}, close {bar.close})")
    if bar.volume < 0:
        raise InvalidBar(f"volume {bar.volume} is negative")


def _period(timeframe: Timeframe, start: datetime) -> date | None:
    if timeframe is Timeframe.HOUR:
        if start.minute or start.second or start.microsecond:
            raise InvalidBar("hourly bar does not start on the hour")
        return None
    day = calendar.et_date(start)
    if start != calendar.et_midnight(day):
        raise InvalidBar(f"{timeframe.value} bar does not start at 00:00 America/New_York")
    if timeframe is Timeframe.WEEK and calendar.week_start(day) != day:
        raise InvalidBar(f"weekly bar starts on {day:%A} {day} ET, not on a Sunday")
    if timeframe is Timeframe.MONTH and day.day != 1:
        raise InvalidBar(f"monthly bar starts on {day} ET, not on the 1st")
    return day


def _bar(symbol: str, timeframe: Timeframe, item: Mapping[str, Any], start: datetime) -> Bar:
    missing = [name for name in REQUIRED_FIELDS if item.get(name) is None]
    if missing:
        raise InvalidBar(f"missing field(s) {', '.join(missing)}")
    bar = Bar(
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        period=_period(timeframe, start),
        open=_decimal(item, "o"),
        high=_decimal(item, "h"),
        low=_decimal(item, "l"),
        close=_decimal(item, "c"),
        volume=_decimal(item, "v"),
        vwap=_optional_decimal(item, "vw"),
        transactions=_optional_int(item, "n"),
    )
    _check_prices(bar)
    return bar


class _RegularSession:
    """Whether an hourly bar lies in the regular session: 09:00 ET up to that session's close.

    The 09:00 bar is kept although it mixes pre-market minutes with the 09:30 open, because
    Massive builds hour bars on the hour (see ``tickstock.calendar``). Closes are looked up once
    per date: the calendar call costs far more than the comparison.
    """

    def __init__(self) -> None:
        self._closes: dict[date, datetime | None] = {}

    def contains(self, start: datetime) -> bool:
        local = start.astimezone(calendar.NEW_YORK)
        day = local.date()
        if day not in self._closes:
            self._closes[day] = calendar.session_close(day) if calendar.is_session(day) else None
        close = self._closes[day]
        return close is not None and local.time() >= calendar.REGULAR_FIRST_HOUR and start < close


def _merge_duplicates(
    symbol: str, items: list[tuple[datetime, Mapping[str, Any], Bar]], parsed: ParsedBars
) -> Bar | None:
    """Resolve bars that share a start: identical copies collapse, conflicting ones are all rejected."""
    first = items[0][2]
    if all(bar == first for _, _, bar in items[1:]):
        for start, raw, _ in items[1:]:
            parsed.rejected.append(
                RejectedBar(symbol, f"{_describe(start)}: duplicate of an identical bar (one kept)", raw)
            )
        return first
    for start, raw, _ in items:
        parsed.rejected.append(
            RejectedBar(
                symbol,
                f"{_describe(start)}: {len(items)} bars with this start and different values "
                "(none kept: which one is right is unknown)",
                raw,
            )
        )
    return None


def parse_aggregates(
    symbol: str,
    timeframe: Timeframe | str,
    results: Iterable[Mapping[str, Any]] | None,
    *,
    extended_hours: bool = False,
) -> ParsedBars:
    """Turn Custom Bars ``results`` (all pages of one symbol) into validated bars, oldest first.

    :param symbol: the ticker requested (results of the range endpoint carry no ticker)
    :param timeframe: the requested timespan (hour, day, week, month)
    :param results: the concatenated ``results`` arrays, decoded with :func:`decode_json`;
        ``None`` (a 200 response without ``results``) means no bars
    :param extended_hours: keep hourly bars outside 09:00 ET .. session close
    """
    timeframe = Timeframe(timeframe)
    parsed = ParsedBars()
    by_start: dict[datetime, list[tuple[datetime, Mapping[str, Any], Bar]]] = {}
    session = _RegularSession()
    for item in results or ():
        start: datetime | None = None
        try:
            if not isinstance(item, dict):
                raise InvalidBar(f"result item is {type(item).__name__}, not an object")
            start = _start(item)
            bar = _bar(symbol, timeframe, item, start)
        except (InvalidBar, OverflowError, ValueError) as err:
            parsed.rejected.append(RejectedBar(symbol, f"{_describe(start)}: {err}", item))
            continue
        if timeframe is Timeframe.HOUR and not extended_hours and not session.contains(start):
            parsed.outside_session += 1
            continue
        by_start.setdefault(start, []).append((start, item, bar))
    for start in sorted(by_start):
        items = by_start[start]
        kept = items[0][2] if len(items) == 1 else _merge_duplicates(symbol, items, parsed)
        if kept is not None:
            parsed.bars.append(kept)
    if parsed.rejected:
        log.warning("%d invalid %s bar(s) for %s kept out of the load", len(parsed.rejected), timeframe, symbol)
    return parsed


def parse_grouped_daily(
    results: Iterable[Mapping[str, Any]] | None, *, day: date | None = None, symbols: Collection[str] | None = None
) -> ParsedBars:
    """Turn grouped-daily ``results`` (every ticker, one date) into day bars keyed like the range endpoint's.

    Grouped daily stamps ``t`` at 16:00 ET (the range endpoint at 00:00 ET), so the bar's date is
    the America/New_York date of ``t`` and ``start`` is normalised to that date's ET midnight:
    a bar loaded from either endpoint then has the same ``start``, ``period`` and key.

    :param results: the response's ``results`` decoded with :func:`decode_json`; ``None`` = no bars
    :param day: the requested date; a bar dated otherwise is rejected
    :param symbols: keep only these tickers' items (``None`` = all): the response holds the whole
        market, and validating bars nobody asked for costs most of the request's client time when
        a load wants a few hundred of them
    """
    parsed = ParsedBars()
    per_symbol: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    wanted = None if symbols is None else frozenset(symbols)
    for item in results or ():
        symbol = item.get("T") if isinstance(item, dict) else None
        if wanted is not None and symbol not in wanted:
            continue  # nobody asked for it (nor for an item without a ticker)
        if not isinstance(symbol, str) or not symbol:
            parsed.rejected.append(RejectedBar("?", "grouped daily item without a ticker 'T'", item))
            continue
        try:
            stamped = _start(item)
        except (InvalidBar, OverflowError, ValueError) as err:
            parsed.rejected.append(RejectedBar(symbol, f"{_describe(None)}: {err}", item))
            continue
        bar_day = calendar.et_date(stamped)
        if day is not None and bar_day != day:
            parsed.rejected.append(
                RejectedBar(symbol, f"{stamped.isoformat()}: dated {bar_day} ET, requested {day}", item)
            )
            continue
        per_symbol[symbol].append({**item, "t": int(calendar.et_midnight(bar_day).timestamp() * 1000)})
    for symbol, items in per_symbol.items():
        one = parse_aggregates(symbol, Timeframe.DAY, items)
        parsed.bars.extend(one.bars)
        parsed.rejected.extend(one.rejected)
    return parsed
