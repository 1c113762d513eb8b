"""Stock splits: the ``/stocks/v1/splits`` listing and the restatement of ``adjusted=true`` bars.

Two kinds of split exist in the simulator:

* **Built-in** splits (a few curated names, and one to three per synthetic name listed before 2018)
  lie in the past. The price model's series is today's share basis, so for them the *raw*
  history before the split is scaled up (prices x ratio, volume ÷ ratio): exactly what a real
  ticker that split years ago looks like unadjusted.
* **Settable** splits (the ``splits`` knob / ``--split`` flag) are meant to happen "now", so
  bars already served must not change their raw values: for them the raw series *after* the
  execution date drops (prices ÷ ratio, volume x ratio).

Either way the raw series jumps by the ratio at the execution date, and ``adjusted=true`` bars
are the raw ones restated for every split that has executed by the simulator's clock: a bar that
starts before the execution date (ET midnight, so the prior day's post-market is pre-split) has
OHLC and vwap x split_from / split_to and volume x split_to / split_from (the docs: "On the
execution date, all trading is already adjusted for the split, including the pre-market").
Restatement happens on minute/hour/day bars; weeks and months are aggregated from restated days.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from massive_sim.calendar import HISTORY_START, et_midnight_ms

if TYPE_CHECKING:
    from massive_sim.prices import Bars
    from massive_sim.universe import Universe

ADJUSTMENT_TYPES = ("forward_split", "reverse_split", "stock_dividend")
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
DEFAULT_SORT = "execution_date.desc"
SORT_COLUMNS = ("execution_date", "ticker", "id", "adjustment_type")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE_SUFFIXES = ("", ".gt", ".gte", ".lt", ".lte")
ALLOWED_PARAMS = frozenset(
    [f"ticker{s}" for s in _RANGE_SUFFIXES]
    + ["ticker.any_of"]
    + [f"execution_date{s}" for s in _RANGE_SUFFIXES]
    + ["adjustment_type", "adjustment_type.any_of", "limit", "sort", "cursor", "apiKey"]
)
#: Real splits of curated names (AAPL's 7:1 in 2014 and 4:1 in 2020) and one reverse split.
_CURATED_SPLITS = (
    ("AAPL", "2014-06-09", 1, 7),
    ("AAPL", "2020-08-31", 1, 4),
    ("GONE", "2019-03-18", 10, 1),
)
_SYNTHETIC_RATIOS = ((1, 2), (1, 3), (2, 3), (1, 4), (5, 1), (10, 1), (20, 21))
_SYNTHETIC_LAST_DATE = dt.date(2019, 12, 31)


class SplitQueryError(ValueError):
    """A splits query parameter error (HTTP 400 with an ERROR body)."""


@dataclass(frozen=True)
class Split:
    """One split event. ``split_from`` old shares become ``split_to`` new ones (4-for-1: 1 -> 4)."""

    ticker: str
    execution_date: dt.date
    split_from: int
    split_to: int
    adjustment_type: str
    settable: bool = False

    @property
    def exec_ms(self) -> int:
        return et_midnight_ms(self.execution_date)

    @property
    def id(self) -> str:
        key = f"{self.ticker}:{self.execution_date}:{self.split_from}:{self.split_to}:{self.adjustment_type}"
        return "E" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()

    @property
    def log_ratio(self) -> float:
        """log(split_to / split_from): how much the share count grows."""
        return math.log(self.split_to / self.split_from)


def adjustment_type_of(split_from: int, split_to: int) -> str:
    return "forward_split" if split_to > split_from else "reverse_split"


def parse_split(raw: Any) -> Split:
    """``"SYMBOL:YYYY-MM-DD:TO:FROM[:TYPE]"`` (a 4:1 split is ``X:2025-12-03:4:1``, a 1:10 reverse
    split ``X:2025-12-03:1:10``) or a dict with the API's field names; always a settable split."""
    if isinstance(raw, dict):
        try:
            ticker, day = str(raw["ticker"]), str(raw["execution_date"])
            split_to, split_from = int(raw["split_to"]), int(raw["split_from"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"split {raw!r}: needs ticker, execution_date, split_from, split_to") from None
        kind = raw.get("adjustment_type")
    else:
        parts = str(raw).split(":")
        if len(parts) not in (4, 5):
            raise ValueError(f"split {raw!r}: expected SYMBOL:YYYY-MM-DD:TO:FROM[:TYPE], e.g. SCHG:2025-12-03:4:1")
        ticker, day = parts[0], parts[1]
        try:
            split_to, split_from = int(parts[2]), int(parts[3])
        except ValueError:
            raise ValueError(f"split {raw!r}: TO and FROM must be integers") from None
        kind = parts[4] if len(parts) == 5 else None
    if not _DATE_RE.match(day):
        raise ValueError(f"split {raw!r}: execution date must be YYYY-MM-DD")
    if split_to < 1 or split_from < 1 or split_to == split_from:
        raise ValueError(f"split {raw!r}: TO and FROM must be positive and different")
    kind = kind or adjustment_type_of(split_from, split_to)
    if kind not in ADJUSTMENT_TYPES:
        raise ValueError(f"split {raw!r}: adjustment type must be one of {', '.join(ADJUSTMENT_TYPES)}")
    return Split(ticker.strip(), dt.date.fromisoformat(day), split_from, split_to, kind, settable=True)


def split_spec(split: Split) -> str:
    """The knob/CLI spelling of a split (what :func:`parse_split` reads)."""
    return f"{split.ticker}:{split.execution_date}:{split.split_to}:{split.split_from}:{split.adjustment_type}"


def builtin_splits(universe: Universe, seed: int) -> list[Split]:
    """The deterministic historical splits: curated ones plus 1-3 per synthetic name listed before 2018."""
    out = [
        Split(t, dt.date.fromisoformat(d), f, to, "reverse_split" if to < f else "forward_split")
        for t, d, f, to in _CURATED_SPLITS
        if universe.get(t) is not None
    ]
    for ticker in universe.tickers:
        if not ticker.ticker.startswith("X"):
            continue
        first = max(ticker.list_date + dt.timedelta(days=400), HISTORY_START + dt.timedelta(days=30))
        span = (_SYNTHETIC_LAST_DATE - first).days
        if span < 60:
            continue
        rng = random.Random(f"massive_sim-splits-{seed}-{ticker.ticker}")
        days = sorted(rng.sample(range(span), rng.randint(1, 3)))
        for offset in days:
            split_from, split_to = rng.choice(_SYNTHETIC_RATIOS)
            kind = "stock_dividend" if (split_from, split_to) == (20, 21) else adjustment_type_of(split_from, split_to)
            out.append(Split(ticker.ticker, first + dt.timedelta(days=offset), split_from, split_to, kind))
    return out


class SplitBook:
    """Every split the simulator knows, by ticker, with the factors the price model needs."""

    def __init__(self, builtin: list[Split], settable: list[Split]) -> None:
        self.splits = sorted(builtin + settable, key=lambda s: (s.execution_date, s.ticker, s.id))
        self.by_ticker: dict[str, list[Split]] = {}
        for split in self.splits:
            self.by_ticker.setdefault(split.ticker, []).append(split)
        self._exec_ms = np.array([s.exec_ms for s in self.splits], dtype=np.int64)
        #: Raw bars on or after this instant are never rescaled by a built-in split.
        self.builtin_until_ms = max((s.exec_ms for s in builtin), default=-(2**62))
        #: Raw bars before this instant are never rescaled by a settable split.
        self.settable_from_ms = min((s.exec_ms for s in settable), default=2**62)

    def effective_count(self, now_ms: int) -> int:
        """How many splits have executed by ``now_ms`` (a cache key for restated results)."""
        return int(np.searchsorted(self._exec_ms, now_ms, side="right"))

    def raw_log_factor(self, ticker: str, day_ms: np.ndarray) -> np.ndarray | None:
        """log of the raw price multiplier per session (``day_ms`` = ET midnights); None if all 1."""
        splits = self.by_ticker.get(ticker)
        if not splits:
            return None
        out = np.zeros(len(day_ms))
        for split in splits:
            if split.settable:
                out -= np.where(day_ms >= split.exec_ms, split.log_ratio, 0.0)
            else:
                out += np.where(day_ms < split.exec_ms, split.log_ratio, 0.0)
        return out

    def restate(self, bars: Bars, ticker: str, now_ms: int) -> Bars:
        """The ``adjusted=true`` view of raw bars of one ticker at ``now_ms``."""
        splits = [s for s in self.by_ticker.get(ticker, ()) if s.exec_ms <= now_ms]
        if not splits or len(bars) == 0 or int(bars.t.min()) >= splits[-1].exec_ms:
            return bars
        num = np.ones(len(bars))
        den = np.ones(len(bars))
        for split in splits:
            before = bars.t < split.exec_ms
            num[before] *= split.split_from
            den[before] *= split.split_to
        return scale(bars, num, den)

    def restate_rows(self, bars: Bars, tickers: list[str], now_ms: int) -> Bars:
        """Restate bars whose rows belong to different tickers (grouped daily)."""
        num = np.ones(len(bars))
        den = np.ones(len(bars))
        touched = False
        for row, ticker in enumerate(tickers):
            for split in self.by_ticker.get(ticker, ()):
                if int(bars.t[row]) < split.exec_ms <= now_ms:
                    num[row] *= split.split_from
                    den[row] *= split.split_to
                    touched = True
        return scale(bars, num, den) if touched else bars

    # -- the listing ----------------------------------------------------------------------------

    def listing(self, now_ms: int) -> list[Split]:
        """Splits executed by ``now_ms`` (the simulator lists no announced future splits)."""
        return self.splits[: self.effective_count(now_ms)]

    def row(self, split: Split, now_ms: int) -> dict[str, Any]:
        """The API row; the factor brings prices before this split to today's share basis."""
        factor = 1.0
        for other in self.by_ticker[split.ticker]:
            if other.execution_date >= split.execution_date and other.exec_ms <= now_ms:
                factor *= other.split_from / other.split_to
        return {
            "id": split.id,
            "ticker": split.ticker,
            "execution_date": split.execution_date.isoformat(),
            "split_from": split.split_from,
            "split_to": split.split_to,
            "adjustment_type": split.adjustment_type,
            "historical_adjustment_factor": round(factor, 10),
        }


def scale(bars: Bars, num: np.ndarray, den: np.ndarray) -> Bars:
    """Prices x num / den, volume x den / num; the vw x volume sum is invariant, so it is kept."""
    from massive_sim.prices import Bars

    return Bars(
        t=bars.t,
        o=bars.o * num / den,
        h=bars.h * num / den,
        l=bars.l * num / den,
        c=bars.c * num / den,
        v=bars.v * den / num,
        vwv=bars.vwv,
        n=bars.n,
        base=bars.base,
    )


@dataclass
class SplitQuery:
    """A parsed ``/stocks/v1/splits`` query: filters, sort, page size and offset."""

    filters: dict[str, str]
    sort: list[tuple[str, bool]]  # (column, descending)
    limit: int
    offset: int = 0

    @classmethod
    def from_request(cls, query: dict[str, str]) -> SplitQuery:
        params = dict(query)
        offset = 0
        if "cursor" in params:
            try:
                state = json.loads(base64.urlsafe_b64decode(params.pop("cursor") + "==").decode())
                offset = int(state.pop("offset"))
                params = {**state, **params}
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                raise SplitQueryError("Invalid cursor.") from None
        params.pop("apiKey", None)
        unknown = sorted(set(params) - ALLOWED_PARAMS)
        if unknown:
            raise SplitQueryError(f"Unknown query parameter(s): {', '.join(unknown)}.")
        limit_raw = params.pop("limit", str(DEFAULT_LIMIT))
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
            raise SplitQueryError(f"Invalid limit '{limit_raw}': must be an integer from 1 to {MAX_LIMIT}.")
        sort_raw = params.pop("sort", DEFAULT_SORT)
        sort = []
        for part in sort_raw.split(","):
            column, _, direction = part.strip().partition(".")
            if column not in SORT_COLUMNS or direction not in ("", "asc", "desc"):
                raise SplitQueryError(f"Invalid sort '{sort_raw}': use column.asc|desc, columns {SORT_COLUMNS}.")
            sort.append((column, direction == "desc"))
        for name, value in params.items():
            if name.startswith("execution_date") and not _DATE_RE.match(value):
                raise SplitQueryError(f"Could not parse {name} '{value}': expected YYYY-MM-DD.")
            if name.startswith("adjustment_type"):
                bad = [v for v in value.split(",") if v not in ADJUSTMENT_TYPES]
                if bad:
                    raise SplitQueryError(f"Invalid {name} '{value}': one of {', '.join(ADJUSTMENT_TYPES)}.")
        return cls(filters=params, sort=sort, limit=int(limit_raw), offset=offset)

    def matches(self, split: Split) -> bool:
        values = {"ticker": split.ticker, "execution_date": split.execution_date.isoformat()}
        for name, want in self.filters.items():
            field, _, op = name.partition(".")
            if field == "adjustment_type":
                if split.adjustment_type not in want.split(","):
                    return False
                continue
            have = values[field]
            if op == "any_of":
                ok = have in want.split(",")
            else:
                ok = {
                    "": have == want,
                    "gt": have > want,
                    "gte": have >= want,
                    "lt": have < want,
                    "lte": have <= want,
                }[op]
            if not ok:
                return False
        return True

    def select(self, splits: list[Split]) -> tuple[list[Split], bool]:
        """This page's splits and whether more follow."""
        rows = [s for s in splits if self.matches(s)]
        rows.sort(key=lambda s: s.id)  # the final tie-break: a stable order for pagination
        for column, descending in reversed(self.sort):
            rows.sort(key=lambda s, c=column: getattr(s, c), reverse=descending)
        page = rows[self.offset : self.offset + self.limit]
        return page, self.offset + self.limit < len(rows)

    def next_cursor(self) -> str:
        state = {**self.filters, "limit": str(self.limit), "offset": self.offset + self.limit}
        state["sort"] = ",".join(f"{c}.{'desc' if d else 'asc'}" for c, d in self.sort)
        return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")
