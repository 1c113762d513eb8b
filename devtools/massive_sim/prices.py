"""Deterministic minute bars and their exact aggregates.

The base series is one minute bar per traded minute of the 04:00-20:00 ET grid. Every coarser bar
(hour, day, week, month, ...) is reduced from those minutes with integer volume and integer
``vw * 10_000 * volume`` sums, so aggregates are exactly consistent across timeframes whatever
order they are computed in.

Randomness comes from one seeded table of standard normals indexed by a stable hash of (ticker,
data version, session): any (ticker, session) row can be generated on its own, in any batch,
without a per-ticker random walk. That is what lets the grouped-daily endpoint build 5,000
symbols for one date in a single vectorised pass, and lets a per-symbol request start anywhere
in history. The daily close follows a drift plus two seasonal waves plus noise (no cumulative
sum); intraday prices are a Brownian bridge from the open to that close.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from massive_sim.calendar import (
    GRID_MINUTES,
    MS_MINUTE,
    REGULAR_OPEN_INDEX,
    Sessions,
    et_midnight_ms,
)
from massive_sim.universe import Ticker, Universe, stable_hash

if TYPE_CHECKING:
    from collections.abc import Sequence

    from massive_sim.splits import SplitBook

TABLE_SIZE = 1 << 21
_SEGMENTS = 4  # path, high wick, low wick, volume noise
_ROW_SPAN = _SEGMENTS * GRID_MINUTES
#: Sessions per vectorised batch: bounds temporary memory to a few tens of MB.
BATCH_ROWS = 192
#: Illiquid symbols trade a minute when the mask normal exceeds these thresholds.
_ILLIQUID_REGULAR_THRESHOLD = 1.2816  # ~10 % of regular-hours minutes
_ILLIQUID_EXTENDED_THRESHOLD = 2.0537  # ~2 % of extended-hours minutes
VW_SCALE = 10_000


@dataclass
class Bars:
    """Columnar bars. ``vwv`` is sum(vw * 10_000 * v) as int64; ``base`` counts base aggregates."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - the API's own field name
    c: np.ndarray
    v: np.ndarray
    vwv: np.ndarray
    n: np.ndarray
    base: np.ndarray
    #: Pre-rendered JSON objects, one per bar, when cached (day bars); None means render on demand.
    frags: list[str] | None = None

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: np.ndarray | slice) -> Bars:
        out = Bars(*(getattr(self, f)[idx] for f in _FIELDS))
        if self.frags is not None and isinstance(idx, slice):
            out.frags = self.frags[idx]
        return out

    @property
    def vw(self) -> np.ndarray:
        # Restated (split-adjusted) volume is a float and may be below 1 share.
        return np.round(self.vwv / np.where(self.v > 0, self.v, 1)) / VW_SCALE

    @staticmethod
    def concat(parts: Sequence[Bars]) -> Bars:
        if not parts:
            return empty_bars()
        if len(parts) == 1:
            return parts[0]
        out = Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))
        if all(p.frags is not None for p in parts):
            out.frags = [frag for p in parts for frag in p.frags or ()]
        return out


_FIELDS = ("t", "o", "h", "l", "c", "v", "vwv", "n", "base")


def empty_bars() -> Bars:
    f = np.empty(0, dtype=np.float64)
    i = np.empty(0, dtype=np.int64)
    return Bars(i, f, f, f, f, i, i, i, i)


def _round_cents(x: np.ndarray) -> np.ndarray:
    return np.round(x * 100.0) / 100.0


def _round_cents_inplace(x: np.ndarray) -> None:
    x *= 100.0
    np.rint(x, out=x)
    x /= 100.0


@dataclass
class MinuteGrid:
    """Minute bars of ``rows`` (ticker, session) pairs on the fixed 960-minute grid."""

    t0: np.ndarray  # (R,) int64 epoch ms of grid minute 0 (04:00 ET)
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray  # int64
    vwx: np.ndarray  # int64, vw * 10_000
    n: np.ndarray  # int64
    mask: np.ndarray  # bool: the minute exists (traded, inside the session, before the clock)


class PriceModel:
    """Generates minute grids and caches per-year day bars per (ticker, data version)."""

    def __init__(self, sessions: Sessions, universe: Universe, seed: int = 0) -> None:
        self.sessions = sessions
        self.universe = universe
        self.seed = seed
        self.table = np.random.default_rng(seed).standard_normal(TABLE_SIZE + _ROW_SPAN)
        self._index = {t.ticker: i for i, t in enumerate(universe.tickers)}
        tickers = universe.tickers
        hashes = [stable_hash(seed, "params", t.ticker) for t in tickers]
        u = np.array([[(h >> (8 * k)) & 0xFF for k in range(6)] for h in hashes], dtype=np.float64) / 255.0
        is_etf = np.array([t.type == "ETF" for t in tickers])
        self.log_price = np.log([t.price for t in tickers])
        self.sigma_d = np.where(is_etf, 0.008 + 0.004 * u[:, 0], 0.014 + 0.016 * u[:, 0])
        self.drift = 0.00015 + 0.0003 * u[:, 1]
        self.amp1 = 0.03 + 0.06 * u[:, 2]
        self.amp2 = 0.01 + 0.03 * u[:, 3]
        self.phase1 = 2 * math.pi * u[:, 4]
        self.phase2 = 2 * math.pi * u[:, 5]
        self.minute_volume = np.array([t.daily_volume for t in tickers]) / (390 * 1.45)
        self.trade_size = 60.0 + 140.0 * u[:, 1]
        self.illiquid = np.array([t.illiquid for t in tickers])
        self.mask_hash = np.array([stable_hash(seed, "mask", t.ticker) for t in tickers], dtype=np.uint64)
        # Ordinal of the session the quoted reference price belongs to (prices hover around it).
        ref = sessions.index_of.get(_REFERENCE_SESSION)
        self.ref_ordinal = ref if ref is not None else len(sessions) - 1
        self._version_hash: dict[tuple[int, int], int] = {}
        #: Splits rescale the raw series (see massive_sim.splits); set by the simulator.
        self.splits: SplitBook | None = None
        self._templates: dict[int, dict[str, np.ndarray]] = {}
        #: (ticker index, data version, month id) -> that month's complete day bars.
        self._day_blocks: OrderedDict[tuple[int, int, int], Bars] = OrderedDict()
        #: ~12,000 months (1,000 symbol-years) is about 60 MB of arrays and rendered JSON.
        self.day_block_cache_size = 12_000
        _, self._month_of = np.unique(sessions.window_ms["month"], return_inverse=True)
        self._month_start = np.r_[np.flatnonzero(np.diff(self._month_of)) + 1, len(sessions)]
        self._month_start = np.r_[0, self._month_start]

    # -- identities -----------------------------------------------------------------------------

    def index(self, ticker: Ticker) -> int:
        return self._index[ticker.ticker]

    def _vhash(self, tidx: int, version: int) -> int:
        key = (tidx, version)
        h = self._version_hash.get(key)
        if h is None:
            h = stable_hash(self.seed, "series", self.universe.tickers[tidx].ticker, version)
            self._version_hash[key] = h
        return h

    # -- daily anchors --------------------------------------------------------------------------

    def _log_close(self, tidx: np.ndarray, ordinal: np.ndarray, vh: np.ndarray) -> np.ndarray:
        d = ordinal.astype(np.float64)
        rel = d - self.ref_ordinal
        noise = self.table[(vh + ordinal.astype(np.uint64) * np.uint64(7919)) % np.uint64(TABLE_SIZE)]
        return (
            self.log_price[tidx]
            + self.drift[tidx] * rel
            + self.amp1[tidx] * np.sin(2 * math.pi * d / 252.0 + self.phase1[tidx])
            + self.amp2[tidx] * np.sin(2 * math.pi * d / 63.0 + self.phase2[tidx])
            + self.sigma_d[tidx] * noise
        )

    def _split_log_factor(self, tidx: np.ndarray, sidx: np.ndarray) -> np.ndarray | None:
        """log of each row's raw price multiplier from splits, or None when every row is 1."""
        book = self.splits
        if book is None or not book.by_ticker:
            return None
        day_ms = self.sessions.day_ms[sidx]
        if int(day_ms.min()) >= book.builtin_until_ms and int(day_ms.max()) < book.settable_from_ms:
            return None
        out = None
        for ti in np.unique(tidx).tolist():
            rows = tidx == ti
            factor = book.raw_log_factor(self.universe.tickers[ti].ticker, day_ms[rows])
            if factor is not None:
                out = np.zeros(len(tidx)) if out is None else out
                out[rows] = factor
        return out

    def clear_caches(self) -> None:
        """Forget cached day bars (the raw series changed: a split was set)."""
        self._day_blocks.clear()

    # -- minute grid ----------------------------------------------------------------------------

    def _template(self, regular_close: int) -> dict[str, np.ndarray]:
        """Per-minute constants of a session shape (normal or early close), computed once."""
        tpl = self._templates.get(regular_close)
        if tpl is None:
            k = np.arange(GRID_MINUTES)
            minutes = regular_close + (GRID_MINUTES - 720)
            inside = k < minutes
            regular = (k >= REGULAR_OPEN_INDEX) & (k < regular_close)
            x = (k - REGULAR_OPEN_INDEX) / (regular_close - REGULAR_OPEN_INDEX)
            tpl = {
                "step": np.where(inside, np.where(regular, 0.8 / math.sqrt(390), 0.3 / math.sqrt(570)), 0.0),
                "frac": np.minimum(k + 1, minutes) / minutes,
                "profile": np.where(regular, 1.0 + 1.2 * (2.0 * x - 1.0) ** 2, np.where(x < 0, 0.04, 0.06)),
                "inside": inside,
                "threshold": np.where(regular, _ILLIQUID_REGULAR_THRESHOLD, _ILLIQUID_EXTENDED_THRESHOLD),
            }
            self._templates[regular_close] = tpl
        return tpl

    def minute_grid(self, tidx: np.ndarray, sidx: np.ndarray, version: int, now_ms: int | None = None) -> MinuteGrid:
        """Minute bars for rows (tidx[r], sidx[r]); minutes at or after ``now_ms`` do not exist.

        Written for speed (it is the cost of every uncached request): per-minute constants come
        from per-session-shape templates, and operations run in place where they can.
        """
        tidx = np.asarray(tidx, dtype=np.int64)
        sidx = np.asarray(sidx, dtype=np.int64)
        s = self.sessions
        vh = np.array([self._vhash(int(i), version) for i in tidx], dtype=np.uint64)
        minutes = s.minutes[sidx]
        shapes = s.regular_close_index[sidx]
        if np.all(shapes == shapes[0]):
            tpl = self._template(int(shapes[0]))
            pick = {name: arr[None, :] for name, arr in tpl.items()}
        else:
            tpls = [self._template(int(rc)) for rc in shapes]
            pick = {name: np.stack([t[name] for t in tpls]) for name in tpls[0]}

        log_close = self._log_close(tidx, sidx, vh)
        prev_close = self._log_close(tidx, sidx - 1, vh)
        gap_idx = (vh + sidx.astype(np.uint64) * np.uint64(7919) + np.uint64(3)) % np.uint64(TABLE_SIZE)
        sig = self.sigma_d[tidx][:, None]
        log_open = prev_close + 0.3 * sig[:, 0] * self.table[gap_idx]
        split_log = self._split_log_factor(tidx, sidx)
        if split_log is not None:  # the whole session is on one share basis, open included
            log_close = log_close + split_log
            log_open = log_open + split_log

        start = (vh * np.uint64(31) + sidx.astype(np.uint64) * np.uint64(104729)) % np.uint64(TABLE_SIZE)
        table = self.table
        seg = np.stack([table[a : a + _ROW_SPAN] for a in start.tolist()])
        z_path = seg[:, :GRID_MINUTES]
        z_hi = seg[:, GRID_MINUTES : 2 * GRID_MINUTES]
        z_lo = seg[:, 2 * GRID_MINUTES : 3 * GRID_MINUTES]
        z_vol = seg[:, 3 * GRID_MINUTES :]

        step = pick["step"] * sig  # zero outside the session, so the walk stays flat there
        walk = np.cumsum(step * z_path, axis=1)
        walk_end = walk[np.arange(len(tidx)), minutes - 1][:, None]
        frac = pick["frac"]
        log_p = walk
        log_p -= frac * walk_end
        log_p += frac * (log_close - log_open)[:, None]
        log_p += log_open[:, None]
        c = np.exp(log_p, out=log_p)
        _round_cents_inplace(c)
        o = np.empty_like(c)
        o[:, 0] = _round_cents(np.exp(log_open))
        o[:, 1:] = c[:, :-1]
        half = 0.5 * step
        # Wicks: exp(x) ~ 1 + x for these tiny x; |z| keeps high >= max(o, c), low <= min(o, c).
        h = np.maximum(o, c)
        h *= 1.0 + half * np.abs(z_hi)
        _round_cents_inplace(h)
        low = np.minimum(o, c)
        low *= 1.0 - half * np.abs(z_lo)
        _round_cents_inplace(low)
        np.maximum(low, 0.01, out=low)

        vol = np.exp(0.35 * z_vol - 0.06)
        vol *= pick["profile"]
        vol *= self.minute_volume[tidx][:, None]
        if split_log is not None:
            vol *= np.exp(-split_log)[:, None]
        np.rint(vol, out=vol)
        np.maximum(vol, 1.0, out=vol)
        v = vol.astype(np.int64)
        vol /= self.trade_size[tidx][:, None]
        np.rint(vol, out=vol)
        n = np.maximum(vol, 1.0).astype(np.int64)
        vw = h + low
        vw += c
        vw *= VW_SCALE / 3.0
        vwx = np.rint(vw, out=vw).astype(np.int64)

        mask = np.broadcast_to(pick["inside"], c.shape)
        illiquid = self.illiquid[tidx]
        if illiquid.any():
            mstart = (self.mask_hash[tidx] + sidx.astype(np.uint64) * np.uint64(104729)) % np.uint64(TABLE_SIZE)
            zm = np.stack([table[a : a + GRID_MINUTES] for a in mstart.tolist()])
            mask = mask & (~illiquid[:, None] | (zm > pick["threshold"]))
        t0 = s.grid_ms[sidx]
        if now_ms is not None:
            visible = np.clip((now_ms - t0 + MS_MINUTE - 1) // MS_MINUTE, 0, GRID_MINUTES)
            mask = mask & (np.arange(GRID_MINUTES)[None, :] < visible[:, None])
        return MinuteGrid(t0=t0, o=o, h=h, l=low, c=c, v=v, vwx=vwx, n=n, mask=np.ascontiguousarray(mask))

    # -- reductions -----------------------------------------------------------------------------

    @staticmethod
    def reduce(grid: MinuteGrid, width: int) -> Bars:
        """Aggregate each run of ``width`` grid minutes (1 = minute, 60 = hour, 960 = day).

        Windows without a single minute bar are dropped, like the real API drops empty windows.
        Output is in time order when the grid rows are.
        """
        rows = grid.t0.shape[0]
        if rows == 0:
            return empty_bars()
        g = GRID_MINUTES // width
        shape = (rows, g, width)
        mask = grid.mask.reshape(shape)
        cnt = mask.sum(axis=2)
        if width == 1:
            keep = grid.mask.reshape(-1)
            return Bars(
                t=(grid.t0[:, None] + np.arange(GRID_MINUTES) * MS_MINUTE).reshape(-1)[keep],
                o=grid.o.reshape(-1)[keep],
                h=grid.h.reshape(-1)[keep],
                l=grid.l.reshape(-1)[keep],
                c=grid.c.reshape(-1)[keep],
                v=grid.v.reshape(-1)[keep],
                vwv=(grid.vwx * grid.v).reshape(-1)[keep],
                n=grid.n.reshape(-1)[keep],
                base=np.ones(int(keep.sum()), dtype=np.int64),
            )
        first = mask.argmax(axis=2)[..., None]
        last = (width - 1 - mask[..., ::-1].argmax(axis=2))[..., None]
        o = np.take_along_axis(grid.o.reshape(shape), first, axis=2)[..., 0]
        c = np.take_along_axis(grid.c.reshape(shape), last, axis=2)[..., 0]
        h = np.where(mask, grid.h.reshape(shape), -np.inf).max(axis=2)
        low = np.where(mask, grid.l.reshape(shape), np.inf).min(axis=2)
        v = np.where(mask, grid.v.reshape(shape), 0)
        vwv = (v * grid.vwx.reshape(shape)).sum(axis=2)
        n = np.where(mask, grid.n.reshape(shape), 0).sum(axis=2)
        t = grid.t0[:, None] + np.arange(g) * (width * MS_MINUTE)
        keep = (cnt > 0).reshape(-1)
        return Bars(
            t=t.reshape(-1)[keep],
            o=o.reshape(-1)[keep],
            h=h.reshape(-1)[keep],
            l=low.reshape(-1)[keep],
            c=c.reshape(-1)[keep],
            v=v.sum(axis=2).reshape(-1)[keep],
            vwv=vwv.reshape(-1)[keep],
            n=n.reshape(-1)[keep],
            base=cnt.reshape(-1)[keep].astype(np.int64),
        )

    def minute_bars(self, tidx: int, sidx: np.ndarray, version: int, now_ms: int | None, width: int) -> Bars:
        """Minute (width 1) or hour (width 60) bars of one ticker over sessions ``sidx`` (ascending)."""
        parts = []
        for i in range(0, len(sidx), BATCH_ROWS):
            chunk = sidx[i : i + BATCH_ROWS]
            grid = self.minute_grid(np.full(len(chunk), tidx), chunk, version, now_ms)
            parts.append(self.reduce(grid, width))
        return Bars.concat(parts)

    # -- day bars -------------------------------------------------------------------------------

    def _day_rows(self, tidx: np.ndarray, sidx: np.ndarray, version: int, now_ms: int | None) -> Bars:
        """One day bar per row; rows without any trade are dropped. ``t`` is the ET midnight."""
        parts = []
        for i in range(0, len(sidx), BATCH_ROWS):
            grid = self.minute_grid(tidx[i : i + BATCH_ROWS], sidx[i : i + BATCH_ROWS], version, now_ms)
            day = self.reduce(grid, GRID_MINUTES)
            parts.append(day)
        bars = Bars.concat(parts)
        bars.t = bars.t - 4 * 3_600_000  # grid start 04:00 ET -> 00:00 ET (no DST change on sessions)
        bars.base = np.ones(len(bars), dtype=np.int64)
        return bars

    def active_range(self, ticker: Ticker, lo: int, hi: int, now_ms: int) -> tuple[int, int]:
        """Clip session ordinals [lo, hi) to the ticker's listed life and to sessions begun by now."""
        s = self.sessions
        lo = max(lo, 1, int(np.searchsorted(s.day_ms, et_midnight_ms(ticker.list_date), side="left")))
        if ticker.delisted is not None:
            hi = min(hi, int(np.searchsorted(s.day_ms, et_midnight_ms(ticker.delisted), side="left")))
        return lo, min(hi, int(np.searchsorted(s.grid_ms, now_ms, side="left")))

    def day_bars(self, ticker: Ticker, lo: int, hi: int, version: int, now_ms: int) -> Bars:
        """Day bars of sessions [lo, hi) that exist at ``now_ms`` (the current day is partial)."""
        s = self.sessions
        tidx = self.index(ticker)
        lo, hi = self.active_range(ticker, lo, hi, now_ms)
        if lo >= hi:
            return empty_bars()
        started = int(np.searchsorted(s.grid_ms, now_ms, side="left"))
        partial_ord = started - 1
        full_hi = hi if partial_ord >= hi or _is_complete(s, partial_ord, now_ms) else hi - 1
        parts: list[Bars] = []
        if lo < full_hi:
            m_lo, m_hi = int(self._month_of[lo]), int(self._month_of[full_hi - 1]) + 1
            for block in self._month_blocks(tidx, version, m_lo, m_hi):
                a = int(np.searchsorted(block.base, lo, side="left"))  # base: session ordinals
                b = int(np.searchsorted(block.base, full_hi, side="left"))
                if a < b:
                    parts.append(block.take(slice(a, b)))
        if full_hi < hi:
            partial = self._day_rows(np.array([tidx]), np.array([full_hi]), version, now_ms)
            partial.frags = render_bars(partial)
            parts.append(partial)
        bars = Bars.concat(parts)
        bars.base = np.ones(len(bars), dtype=np.int64)
        return bars

    def _month_blocks(self, tidx: int, version: int, m_lo: int, m_hi: int) -> list[Bars]:
        """Complete day bars of months [m_lo, m_hi), cached per month; ``base`` is the session ordinal.

        Missing months are computed in one vectorised pass, so a one-year request costs about one
        year of minutes (not the two calendar years a year-granular cache would compute).
        """
        s = self.sessions
        cache = self._day_blocks
        blocks: dict[int, Bars] = {}
        missing: list[int] = []
        for month in range(m_lo, m_hi):
            block = cache.get((tidx, version, month))
            if block is None:
                missing.append(month)
            else:
                cache.move_to_end((tidx, version, month))
                blocks[month] = block
        if missing:
            sidx = np.concatenate(
                [np.arange(self._month_start[m], self._month_start[m + 1], dtype=np.int64) for m in missing]
            )
            sidx = sidx[sidx >= 1]  # ordinal 0 has no previous close to open from
            days = self._day_rows(np.full(len(sidx), tidx), sidx, version, None)
            days.base = np.searchsorted(s.day_ms, days.t).astype(np.int64)
            # Rendering floats dominates a cached request's cost: render each complete day once.
            days.frags = render_bars(days)
            months = self._month_of[days.base]
            for month in missing:
                a = int(np.searchsorted(months, month, side="left"))
                b = int(np.searchsorted(months, month, side="right"))
                blocks[month] = cache[(tidx, version, month)] = days.take(slice(a, b))
            while len(cache) > self.day_block_cache_size:
                cache.popitem(last=False)
        return [blocks[m] for m in range(m_lo, m_hi)]

    def grouped_day(self, tickers: Sequence[Ticker], sidx: int, version: int, now_ms: int) -> Bars:
        """Day bars of many tickers for one session, in the order given (tickers without trades dropped).

        ``base`` holds the index into ``tickers`` of each surviving row.
        """
        tidx = np.array([self.index(t) for t in tickers], dtype=np.int64)
        rows = np.arange(len(tidx), dtype=np.int64)
        parts = []
        for i in range(0, len(tidx), BATCH_ROWS):
            chunk = tidx[i : i + BATCH_ROWS]
            grid = self.minute_grid(chunk, np.full(len(chunk), sidx), version, now_ms)
            day = self.reduce(grid, GRID_MINUTES)
            # reduce() keeps rows with trades in order; recover which rows survived.
            alive = grid.mask.any(axis=1)
            day.base = rows[i : i + BATCH_ROWS][alive]
            parts.append(day)
        return Bars.concat(parts)


_REFERENCE_SESSION = dt.date(2025, 12, 1)


def render_bars(bars: Bars, symbols: list[str] | None = None) -> list[str]:
    """JSON objects of the bars, field order as in the real API's recorded responses."""
    if symbols is None and bars.frags is not None:
        return list(bars.frags)
    cols = zip(
        bars.v.tolist(),
        bars.vw.tolist(),
        bars.o.tolist(),
        bars.c.tolist(),
        bars.h.tolist(),
        bars.l.tolist(),
        bars.t.tolist(),
        bars.n.tolist(),
        strict=True,
    )
    if symbols is None:
        return [
            f'{{"v":{float(v)!r},"vw":{vw!r},"o":{o!r},"c":{c!r},"h":{h!r},"l":{lo!r},"t":{t},"n":{n}}}'
            for v, vw, o, c, h, lo, t, n in cols
        ]
    return [
        f'{{"T":"{sym}","v":{float(v)!r},"vw":{vw!r},"o":{o!r},"c":{c!r},"h":{h!r},"l":{lo!r},"t":{t},"n":{n}}}'
        for sym, (v, vw, o, c, h, lo, t, n) in zip(symbols, cols, strict=True)
    ]


def _is_complete(s: Sessions, ordinal: int, now_ms: int) -> bool:
    end = int(s.grid_ms[ordinal]) + int(s.minutes[ordinal]) * MS_MINUTE
    return now_ms >= end
