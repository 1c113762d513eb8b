"""What a universe load is asked to do, validated once for every entry point.

The Airflow trigger form (Params), TickStockAppV2's Redis messages and the nightly refresh all
describe a load with the same fields; :func:`parse_load_request` turns any of them into a
:class:`LoadRequest` or raises :class:`InvalidRequest` naming the offending field, so bad input
is rejected before anything is fetched or written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tickstock.timeframes import ALL_TIMEFRAMES, Timeframe

UNIVERSES_DIR = Path(__file__).resolve().parents[1] / "universes"
SYMBOL_PATTERN = r"^[A-Z][A-Z0-9.-]{0,9}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_UNIVERSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 7300, 365
MAX_HOURLY_DAYS, DEFAULT_HOURLY_DAYS = 2, 2
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 1, 500
#: Smallest batch the automatic size (tickstock.plan.auto_batch_size) picks: a task instance
#: costs seconds of a slot and of CPU, while one task's 8 request threads keep 80 requests/s in
#: flight at 100 ms latency, so a small load is best one task per timeframe.
AUTO_MIN_BATCH_SIZE = 100
HOURLY_SESSIONS = ("regular", "extended")
DAYS_PER_YEAR = 365


class InvalidRequest(ValueError):
    """A load request that cannot be run; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LoadRequest:
    """A validated universe load.

    :param symbols: unique upper-case tickers in first-seen order
    :param days: calendar-day lookback for daily/weekly/monthly bars
    :param timeframes: timeframes to load, in canonical order
    :param hourly_days: sessions of hourly bars (0..2, the design document's cap)
    :param hourly_session: ``regular`` (09:00 ET to the close) or ``extended`` (04:00-20:00 ET)
    :param adjusted: split-adjusted prices (Massive's default)
    :param as_of: the lookback's reference date in America/New_York; ``None`` means today
    :param job_id: TickStockAppV2's job id, used for the Redis job status
    :param source: free-text origin of the request (UI, message source, schedule)
    :param batch_size: symbols per mapped fetch task; ``None`` sizes batches to the workers
        (:func:`tickstock.plan.auto_batch_size`)
    """

    symbols: tuple[str, ...]
    days: int = DEFAULT_DAYS
    timeframes: tuple[Timeframe, ...] = ALL_TIMEFRAMES
    hourly_days: int = DEFAULT_HOURLY_DAYS
    hourly_session: str = "regular"
    adjusted: bool = True
    as_of: date | None = None
    job_id: str | None = None
    source: str | None = None
    batch_size: int | None = None
    universe: str | None = field(default=None, compare=False)

    @property
    def extended_hours(self) -> bool:
        return self.hourly_session == "extended"


def universe_path(name: str) -> Path:
    """Return the CSV of universe ``name``; the name can never escape the universes folder."""
    stem = name.removesuffix(".csv")
    if not _UNIVERSE_RE.match(stem):
        raise InvalidRequest("universe", f"{name!r} is not a universe name (letters, digits, _ and - only)")
    path = (UNIVERSES_DIR / f"{stem}.csv").resolve()
    if path.parent != UNIVERSES_DIR.resolve() or not path.is_file():
        known = ", ".join(sorted(p.stem for p in UNIVERSES_DIR.glob("*.csv")))
        raise InvalidRequest("universe", f"unknown universe {name!r}; known: {known}")
    return path


def read_universe(name: str) -> list[str]:
    """Return the symbols of universe ``name`` (first column, or the ``symbol`` column)."""
    path = universe_path(name)
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and row[0].strip() and not row[0].startswith("#")]
    if rows and rows[0][0].strip().lower() in {"symbol", "ticker"}:
        rows = rows[1:]
    if not rows:
        raise InvalidRequest("universe", f"universe {name!r} has no symbols")
    return [row[0].strip() for row in rows]


def normalise_symbols(raw: Any, field_name: str = "symbols") -> list[str]:
    """Validate tickers: strings, upper-cased, matching :data:`SYMBOL_PATTERN`."""
    if isinstance(raw, str):
        raw = [part for part in re.split(r"[,\s]+", raw) if part]
    if not isinstance(raw, Sequence) or isinstance(raw, bytes):
        raise InvalidRequest(field_name, f"expected a list of tickers, got {type(raw).__name__}")
    symbols = []
    bad = []
    for item in raw:
        if not isinstance(item, str):
            bad.append(repr(item))
            continue
        symbol = item.strip().upper()
        if _SYMBOL_RE.match(symbol):
            symbols.append(symbol)
        else:
            bad.append(repr(item))
    if bad:
        raise InvalidRequest(field_name, f"invalid ticker(s) {', '.join(bad[:10])}; expected {SYMBOL_PATTERN}")
    return symbols


def _int_in_range(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidRequest(name, f"expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(name, f"{value} is out of range {low}..{high}")
    return int(value)


def _days(params: Mapping[str, Any]) -> int:
    days, years = params.get("days"), params.get("years")
    if days is not None and years is not None:
        raise InvalidRequest("days", "give days or years, not both")
    if years is not None:
        if isinstance(years, bool) or not isinstance(years, int | float) or years <= 0:
            raise InvalidRequest("years", f"expected a positive number of years, got {years!r}")
        # TickStockAppV2 sends fractions: 0.005479 years = 2 days.
        converted = max(1, round(years * DAYS_PER_YEAR))
        if converted > MAX_DAYS:
            raise InvalidRequest("years", f"{years} years is more than {MAX_DAYS} days")
        return converted
    return _int_in_range(params, "days", DEFAULT_DAYS, MIN_DAYS, MAX_DAYS)


def _timeframes(raw: Any) -> tuple[Timeframe, ...]:
    if raw is None:
        return ALL_TIMEFRAMES
    if isinstance(raw, str):
        raw = [part for part in re.split(r"[,\s]+", raw) if part]
    if not isinstance(raw, Sequence) or not raw:
        raise InvalidRequest("timeframes", "expected a non-empty list of hour, day, week, month")
    chosen = set()
    for item in raw:
        try:
            chosen.add(Timeframe(str(item).lower()))
        except ValueError:
            raise InvalidRequest("timeframes", f"unknown timeframe {item!r}; expected hour, day, week, month") from None
    return tuple(tf for tf in ALL_TIMEFRAMES if tf in chosen)


def _as_of(raw: Any) -> date | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw)
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()  # the trigger form may send a date-time
    except ValueError:
        raise InvalidRequest("as_of", f"{raw!r} is not a date (YYYY-MM-DD)") from None


def _optional_text(params: Mapping[str, Any], name: str, max_len: int = 200) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str | int):
        raise InvalidRequest(name, f"expected text, got {type(value).__name__}")
    text = str(value)
    if len(text) > max_len:
        raise InvalidRequest(name, f"longer than {max_len} characters")
    return text


def parse_load_request(params: Mapping[str, Any]) -> LoadRequest:
    """Validate a load's parameters (trigger-form params, a job message, a schedule's conf).

    ``symbols`` and ``universe`` may be combined; duplicates are dropped keeping first-seen order.
    ``years`` is accepted instead of ``days`` (TickStockAppV2's format).
    """
    symbols = normalise_symbols(params.get("symbols") or [])
    universe = params.get("universe")
    if universe not in (None, ""):
        if not isinstance(universe, str):
            raise InvalidRequest("universe", f"expected a universe name, got {type(universe).__name__}")
        symbols += normalise_symbols(read_universe(universe), "universe")
    unique = tuple(dict.fromkeys(symbols))
    if not unique:
        raise InvalidRequest("symbols", "no symbols: give symbols and/or a universe")

    hourly_session = params.get("hourly_session") or "regular"
    if hourly_session not in HOURLY_SESSIONS:
        raise InvalidRequest("hourly_session", f"{hourly_session!r} is not one of {', '.join(HOURLY_SESSIONS)}")
    adjusted = params.get("adjusted", True)
    if not isinstance(adjusted, bool):
        raise InvalidRequest("adjusted", f"expected true or false, got {adjusted!r}")

    return LoadRequest(
        symbols=unique,
        days=_days(params),
        timeframes=_timeframes(params.get("timeframes")),
        hourly_days=_int_in_range(params, "hourly_days", DEFAULT_HOURLY_DAYS, 0, MAX_HOURLY_DAYS),
        hourly_session=hourly_session,
        adjusted=adjusted,
        as_of=_as_of(params.get("as_of")),
        job_id=_optional_text(params, "job_id"),
        source=_optional_text(params, "source"),
        batch_size=None
        if params.get("batch_size") is None
        else _int_in_range(params, "batch_size", MIN_BATCH_SIZE, MIN_BATCH_SIZE, MAX_BATCH_SIZE),
        universe=universe or None,
    )
