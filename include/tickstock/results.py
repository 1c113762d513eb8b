"""Summarise a load for the job status and the ``JOB COMPLETE`` log block.

Failures are never folded into "0 bars": a symbol is *failed* when a fetch for it failed, when
the API does not know it and returned nothing, or when it has no daily bars although sessions
were expected; every failure carries its reason into ``results.errors``.

The results also count the API requests per timeframe (``daily_requests`` ...) and which of them
went to grouped daily (``grouped_daily_requests``: 0 when the day bars were fetched per symbol),
so a job shows what the request economy chose and what it cost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tickstock.grouped_daily import SOURCE_GROUPED_DAILY
from tickstock.job_status import JobState
from tickstock.timeframes import Timeframe, table_for

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

RESULT_FIELD = {tf: f"{table_for(tf).table.removeprefix('ohlcv_')}_bars" for tf in Timeframe}
REQUEST_FIELD = {tf: f"{table_for(tf).table.removeprefix('ohlcv_')}_requests" for tf in Timeframe}
GROUPED_REQUESTS = "grouped_daily_requests"
DETAILS_REQUESTS = "ticker_details_requests"
REQUEST_COUNTERS = (*REQUEST_FIELD.values(), GROUPED_REQUESTS, DETAILS_REQUESTS)


@dataclass
class LoadSummary:
    """Outcome of one load, in TickStockAppV2's ``results`` shape."""

    symbols: list[str]
    bars: Counter[str] = field(default_factory=Counter)  # per RESULT_FIELD name
    requests: Counter[str] = field(default_factory=Counter)  # per REQUEST_COUNTERS name
    failed: dict[str, str] = field(default_factory=dict)
    missing_batches: int = 0
    check_passed: bool | None = None
    check_summary: str = ""

    @property
    def loaded(self) -> list[str]:
        return [s for s in self.symbols if s not in self.failed]

    @property
    def state(self) -> JobState:
        if self.missing_batches or self.check_passed is False or not self.loaded:
            return JobState.FAILED
        return JobState.COMPLETED_WITH_ERRORS if self.failed else JobState.COMPLETED

    def errors(self) -> list[str]:
        errors = [f"{symbol}: {reason}" for symbol, reason in self.failed.items()]
        if self.missing_batches:
            errors.append(f"{self.missing_batches} fetch/upsert batch(es) failed after retries; see the task logs")
        if self.check_passed is False:
            errors.append(f"bar-count check failed: {self.check_summary}")
        return errors

    def results(self) -> dict[str, Any]:
        return {
            "symbols_loaded": len(self.loaded),
            "symbols_failed": len(self.failed),
            **{name: self.bars[name] for name in RESULT_FIELD.values()},
            **{name: self.requests[name] for name in REQUEST_COUNTERS},
            "errors": self.errors(),
        }

    def message(self) -> str:
        if self.state is JobState.COMPLETED:
            return f"Successfully loaded {len(self.loaded)} symbols"
        if self.state is JobState.COMPLETED_WITH_ERRORS:
            return f"Loaded {len(self.loaded)} symbols, {len(self.failed)} failed"
        return f"Load failed: {'; '.join(self.errors()[:3])}"


def summarise(
    *,
    symbols: list[str],
    batch_results: Iterable[Mapping[str, Any]],
    planned_batches: int,
    unknown_symbols: Iterable[str] = (),
    daily_expected: bool = True,
    details_requests: int = 0,
) -> LoadSummary:
    """Fold the mapped upsert results of a load into one :class:`LoadSummary`.

    :param batch_results: what each finished upsert task returned (``timeframe``, ``bars`` per
        symbol, ``failed`` symbol -> reason, ``invalid`` symbol -> reasons)
    :param planned_batches: how many batches the plan emitted (missing ones failed outright)
    :param unknown_symbols: symbols the API has no ticker details for
    :param daily_expected: whether the window holds sessions, so a symbol without daily bars failed
    :param details_requests: ticker-details requests made by the symbol registration
    """
    summary = LoadSummary(symbols=list(symbols))
    summary.requests[DETAILS_REQUESTS] = details_requests
    bars_per_symbol: Counter[str] = Counter()
    daily_per_symbol: Counter[str] = Counter()
    seen = 0
    fetched_daily = False
    for result in batch_results:
        seen += 1
        timeframe = Timeframe(result["timeframe"])
        for symbol, count in result.get("bars", {}).items():
            summary.bars[RESULT_FIELD[timeframe]] += count
            bars_per_symbol[symbol] += count
            if timeframe is Timeframe.DAY:
                daily_per_symbol[symbol] += count
        fetched_daily |= timeframe is Timeframe.DAY
        summary.requests[REQUEST_FIELD[timeframe]] += result.get("requests", 0)
        if result.get("source") == SOURCE_GROUPED_DAILY:
            summary.requests[GROUPED_REQUESTS] += result.get("requests", 0)
        for symbol, reason in result.get("failed", {}).items():
            summary.failed.setdefault(symbol, f"{timeframe.value} bars: {reason}")
        for symbol, reasons in result.get("invalid", {}).items():
            if reasons:
                summary.failed.setdefault(symbol, f"{timeframe.value} bars rejected: {'; '.join(reasons[:3])}")
    summary.missing_batches = max(0, planned_batches - seen)
    for symbol in unknown_symbols:
        if symbol not in summary.failed and not bars_per_symbol[symbol]:
            summary.failed[symbol] = "unknown ticker: no ticker details and no bars"
    if daily_expected and fetched_daily:
        for symbol in symbols:
            if symbol not in summary.failed and not daily_per_symbol[symbol]:
                summary.failed[symbol] = "No daily data available"
    return summary
