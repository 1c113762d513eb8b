"""MassiveBarsToStagingOperator: fetch one timeframe for a batch of symbols and stage the bars.

The bars go to a staged batch, an UNLOGGED table of the batch's own (COPY, one transaction per
batch, replaced on retry; ``tickstock.staging``), not to XCom: a batch of 50 symbols x 5 years
of day bars is megabytes, and the metadata database is the wrong place for it. The task returns
only counters and reasons; the upsert task merges the staged batch by ``staging_key``.

The hook module is imported when the task runs, not with this module: DAG files import this
one to build their maps, and the hook's http stack (HttpHook, aiohttp) would cost every DAG
parse and task start a second.

Failure policy: a symbol whose fetch fails at the API (after the hook's retries) is reported in
``failed`` and the others are still staged, because one delisted or misbehaving ticker must not
cost the batch. Authentication/entitlement errors fail the task at once (every symbol would fail
the same way), and so does any failure that is not the API's answer about a symbol — the shared
rate budget's Redis restarting, a bug — because it says nothing about the symbol it happened to
hit: reported per symbol it would end the load as ``completed_with_errors`` for symbols a task
retry loads fine. A batch in which every symbol failed for a reason that a task retry may cure
(API unavailable) fails the task too.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk import BaseOperator

from tickstock.grouped_daily import SOURCE_CUSTOM_BARS, SOURCE_GROUPED_DAILY
from tickstock.timeframes import Timeframe
from tickstock_airflow.hooks import MASSIVE_CONN_ID

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import jinja2
    from airflow.sdk import Context

    from tickstock.bars import Bar, ParsedBars
    from tickstock_airflow.hooks.massive import MassiveHook

# Reasons kept per symbol in the task result: enough to diagnose, small enough for XCom.
MAX_REASONS_PER_SYMBOL = 20
# Grouped-daily sessions in flight per task (see grouped_bars).
GROUPED_PREFETCH = 4


@dataclass
class BatchResult:
    """What fetching a batch produced.

    :param bars: every valid bar of the batch
    :param counts: valid bars per fetched symbol (0 for "no data")
    :param failed: symbol -> why its fetch failed
    :param invalid: symbol -> reasons its rejected bars were kept out
    :param errors: symbol -> the exception, to tell per-symbol from systemic failures
    """

    bars: list[Bar] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    def add(self, symbol: str, parsed: ParsedBars) -> None:
        self.bars.extend(parsed.bars)
        self.counts[symbol] = len(parsed.bars)
        reasons = [r.reason for r in parsed.rejected]
        if reasons:
            extra = len(reasons) - MAX_REASONS_PER_SYMBOL
            self.invalid[symbol] = reasons[:MAX_REASONS_PER_SYMBOL] + ([f"... and {extra} more"] if extra > 0 else [])

    def fail(self, symbol: str, error: BaseException) -> None:
        self.errors[symbol] = error
        self.failed[symbol] = str(error) or type(error).__name__


def normalise_symbols(value: Sequence[str] | str) -> list[str]:
    """Accept a list, a JSON list or a comma-separated string (templates render to strings)."""
    if isinstance(value, str):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    else:
        items = list(value)
    symbols = list(dict.fromkeys(str(s).strip().upper() for s in items if str(s).strip()))
    if not symbols:
        raise ValueError("symbols is empty")
    return symbols


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def fetch_batch(
    hook: MassiveHook,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: date,
    end: date,
    *,
    adjusted: bool = True,
    extended_hours: bool = False,
    max_workers: int = 8,
) -> BatchResult:
    """Fetch ``symbols`` concurrently on ``hook`` (one session, one connection pool).

    Raises :class:`MassiveAuthError`, or any error that is not a :class:`MassiveError` (not the
    API's answer: e.g. the rate budget's Redis is unreachable), as soon as any symbol hits one,
    cancelling what has not started; the API's failures are recorded per symbol.
    """
    from tickstock_airflow.hooks.massive import MassiveAuthError, MassiveError

    result = BatchResult()

    def fetch(symbol: str) -> ParsedBars:
        return hook.get_bars(symbol, timeframe, start, end, adjusted=adjusted, extended_hours=extended_hours)

    hook.prepare()  # connections are resolved here, in the task's own thread, not in the pool
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(symbols))), thread_name_prefix="massive") as pool:
        futures = {pool.submit(fetch, symbol): symbol for symbol in symbols}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if isinstance(error, MassiveAuthError) or (error is not None and not isinstance(error, MassiveError)):
                    for other in pending:
                        other.cancel()
                    raise error
                if error is not None:
                    result.fail(futures[future], error)
                else:
                    result.add(futures[future], future.result())
    # Report in the batch's order, not completion order.
    result.counts = {s: result.counts[s] for s in symbols if s in result.counts}
    result.failed = {s: result.failed[s] for s in symbols if s in result.failed}
    result.invalid = {s: result.invalid[s] for s in symbols if s in result.invalid}
    return result


def grouped_bars(
    hook: MassiveHook,
    symbols: Sequence[str],
    sessions: Sequence[date | str],
    invalid: dict[str, list[str]],
    *,
    adjusted: bool = True,
) -> Iterator[Bar]:
    """Yield ``symbols``' day bars of each session in turn, from grouped daily; collect rejects in ``invalid``.

    :data:`GROUPED_PREFETCH` sessions are requested ahead on threads while the COPY consumes the
    current one, so the API's latency and the parsing overlap instead of adding up per session;
    bars still reach the COPY in session order, and the task holds at most that many sessions
    of the market, not a year.

    ``include_otc``: the range endpoint returns an OTC-traded ticker's bars, grouped daily only
    when asked, and the two paths must load the same bars.
    """
    wanted = frozenset(symbols)

    def fetch(day: date | str) -> ParsedBars:
        return hook.get_grouped_daily(_as_date(day), adjusted=adjusted, include_otc=True, symbols=wanted)

    hook.prepare()  # connection look-ups here, before the threads share the hook
    days = iter(sessions)
    with ThreadPoolExecutor(max_workers=GROUPED_PREFETCH, thread_name_prefix="grouped") as pool:
        pending = deque(pool.submit(fetch, day) for day in itertools.islice(days, GROUPED_PREFETCH))
        try:
            while pending:
                parsed = pending.popleft().result()
                if (day := next(days, None)) is not None:
                    pending.append(pool.submit(fetch, day))
                for symbol, reasons in parsed.reasons_by_symbol().items():
                    invalid.setdefault(symbol, []).extend(reasons)
                yield from parsed.bars  # only the wanted symbols' (parsed with symbols=wanted)
        finally:
            for future in pending:  # a failed session (or a failed COPY) stops the rest
                future.cancel()


#: What a planned batch maps (:meth:`MassiveBarsToStagingOperator._apply_batch`), required keys first.
REQUIRED_BATCH_KEYS = ("symbols", "timeframe", "start", "end", "staging_key")
BATCH_KEYS = (*REQUIRED_BATCH_KEYS, "adjusted", "extended_hours", "sessions")


class MassiveBarsToStagingOperator(BaseOperator):
    """Fetch one timeframe of bars for a batch of symbols from Massive into the staging table.

    Returns ``{"staging_key", "timeframe", "adjusted", "bars": {symbol: n}, "failed": {symbol: reason},
    "invalid": {symbol: [reasons]}, "requests": n, "source": "custom_bars"}``. Use it with the
    pool ``massive_api`` so the number of concurrent fetch tasks stays bounded; ``rate_limit``
    bounds their requests.

    With ``sessions``, the batch is a grouped-daily fetch: one request per session for the whole
    market (``timeframe`` must be ``day``), keeping ``symbols``' bars; the result's ``source`` is
    ``grouped_daily`` and a symbol without a bar in any session counts 0, as on the range path.

    :param batch: one planned batch, a mapping of the arguments below (``symbols``, ``timeframe``,
        ``start``, ``end``, ``staging_key``; optionally ``adjusted``, ``extended_hours``,
        ``sessions``) (templated); it sets them when rendered. In a mapped task group this is the
        one argument to map: a task instance resolves each group argument with its own pull of
        the planner's whole batch list from XCom, and eight arguments cost eight pulls of a few
        hundred KB (7-17 s of every fetch's start-up in a 5,000-symbol load on ``make cluster``)
    :param symbols: tickers of this batch (templated; a list, a JSON list or "A,B,C")
    :param timeframe: hour, day, week or month (templated)
    :param start: first date, America/New_York (templated; ``date`` or ``YYYY-MM-DD``)
    :param end: last date, inclusive (templated)
    :param staging_key: key of this batch's staged bars (templated); re-running the task replaces them
    :param adjusted: split-adjusted prices (templated)
    :param extended_hours: keep pre-market and after-hours hourly bars (templated)
    :param sessions: the sessions (``YYYY-MM-DD``) of a grouped-daily batch (templated); ``None``
        fetches each symbol's range from Custom Bars
    :param massive_conn_id: Massive connection (base URL + API key as password)
    :param postgres_conn_id: TickStock database, where the batch is staged
    :param redis_conn_id: Redis holding the shared rate budget (used only with ``rate_limit``)
    :param rate_limit: shared request budget such as ``"100/s"`` or ``"5/min"``; ``None`` = none
    :param max_workers: symbols fetched at once by this task (threads sharing one HTTP pool)
    :param max_attempts: attempts per request before a symbol counts as failed
    :param retry_base_delay: first backoff in seconds (429 backoff starts at twice this)
    """

    # ``batch`` first: in a mapped task group it arrives as a reference that rendering resolves,
    # and the arguments it sets are then shown rendered like the others.
    template_fields: Sequence[str] = (
        "batch",
        "symbols",
        "timeframe",
        "start",
        "end",
        "staging_key",
        "adjusted",
        "extended_hours",
        "sessions",
        "rate_limit",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"symbols": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        batch: Mapping[str, Any] | None = None,
        symbols: Sequence[str] | str | None = None,
        timeframe: Timeframe | str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        staging_key: str | None = None,
        adjusted: bool = True,
        extended_hours: bool = False,
        sessions: Sequence[str] | None = None,
        massive_conn_id: str = MASSIVE_CONN_ID,
        postgres_conn_id: str = "tickstock_db",
        redis_conn_id: str = "tickstock_redis",
        rate_limit: str | None = None,
        max_workers: int = 8,
        max_attempts: int = 6,
        retry_base_delay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        required = dict(zip(REQUIRED_BATCH_KEYS, (symbols, timeframe, start, end, staging_key), strict=True))
        if batch is None and (missing := [name for name, value in required.items() if value is None]):
            raise ValueError(f"{self.task_id}: give a batch, or {', '.join(missing)}")
        self.batch = batch
        self.symbols = symbols
        self.timeframe = timeframe
        self.start = start
        self.end = end
        self.staging_key = staging_key
        self.adjusted = adjusted
        self.extended_hours = extended_hours
        self.sessions = sessions
        self.massive_conn_id = massive_conn_id
        self.postgres_conn_id = postgres_conn_id
        self.redis_conn_id = redis_conn_id
        self.rate_limit = rate_limit
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay

    @cached_property
    def hook(self) -> MassiveHook:
        from tickstock_airflow.hooks.massive import MassiveHook

        return MassiveHook(
            self.massive_conn_id,
            rate_limit=self.rate_limit,
            redis_conn_id=self.redis_conn_id,
            pool_size=self.max_workers,
            max_attempts=self.max_attempts,
            retry_base_delay=self.retry_base_delay,
            rate_limited_base_delay=2 * self.retry_base_delay,
        )

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then spread the rendered ``batch`` over the arguments (the UI and the map label show them)."""
        super().render_template_fields(context, jinja_env)
        self._apply_batch()

    def _apply_batch(self) -> None:
        """Set the arguments from ``batch``; idempotent, and a no-op without one."""
        if self.batch is None:
            return
        batch = dict(self.batch)
        problems = []
        if unknown := sorted(set(batch) - set(BATCH_KEYS)):
            problems.append(f"unknown {', '.join(unknown)}")
        if missing := [name for name in REQUIRED_BATCH_KEYS if batch.get(name) is None]:
            problems.append(f"missing {', '.join(missing)}")
        if problems:
            raise ValueError(f"{self.task_id}: a batch maps {', '.join(BATCH_KEYS)}: {'; '.join(problems)}")
        for name, value in batch.items():
            setattr(self, name, value)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from tickstock.staging import stage_bars

        self._apply_batch()  # also when mapped directly (.expand(batch=...)), which renders without the hook above
        symbols, timeframe = normalise_symbols(self.symbols), Timeframe(self.timeframe)
        if self.sessions is not None:
            return self._stage_grouped(symbols, timeframe)
        batch = fetch_batch(
            self.hook, symbols, timeframe, _as_date(self.start), _as_date(self.end),
            adjusted=self.adjusted, extended_hours=self.extended_hours, max_workers=self.max_workers,
        )  # fmt: skip
        self._raise_if_systemic(symbols, batch)
        with closing(PostgresHook(postgres_conn_id=self.postgres_conn_id).get_conn()) as conn:
            stage_bars(conn, self.staging_key, batch.bars, timeframe=timeframe)
        return self._summarise(timeframe, batch)

    def _stage_grouped(self, symbols: list[str], timeframe: Timeframe) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from tickstock.staging import stage_bars

        if timeframe is not Timeframe.DAY:
            raise ValueError(f"grouped daily loads day bars, not {timeframe.value} bars")
        invalid: dict[str, list[str]] = {}
        with closing(PostgresHook(postgres_conn_id=self.postgres_conn_id).get_conn()) as conn:
            bars = grouped_bars(self.hook, symbols, self.sessions, invalid, adjusted=self.adjusted)
            counts = stage_bars(conn, self.staging_key, bars, timeframe=timeframe)
        self.log.info(
            "✓ API returned %d day bars for %d of %d symbols in %d grouped requests",
            counts.total(),
            len(counts),
            len(symbols),
            len(self.sessions),
        )
        return {
            "staging_key": self.staging_key,
            "timeframe": timeframe.value,
            "adjusted": self.adjusted,
            "bars": {symbol: counts.get(symbol, 0) for symbol in symbols},
            "failed": {},
            "invalid": invalid,
            "requests": self.hook.requests_made,
            "source": SOURCE_GROUPED_DAILY,
        }

    def _raise_if_systemic(self, symbols: list[str], batch: BatchResult) -> None:
        if len(batch.failed) < len(symbols):
            return
        from tickstock_airflow.hooks.massive import MassivePaginationError, MassiveRequestError

        # Failures that belong to one symbol's request; anything else in every symbol is systemic.
        if all(isinstance(e, (MassiveRequestError, MassivePaginationError)) for e in batch.errors.values()):
            return
        first = next(iter(batch.failed.items()))
        raise AirflowException(f"all {len(symbols)} symbols failed; e.g. {first[0]}: {first[1]}")

    def _summarise(self, timeframe: Timeframe, batch: BatchResult) -> dict[str, Any]:
        for symbol, count in batch.counts.items():
            if count == 0:
                self.log.warning("⚠ No %s data returned from API for %s", timeframe.value, symbol)
        for symbol, reason in batch.failed.items():
            self.log.error("✗ %s %s bars failed: %s", symbol, timeframe.value, reason)
        self.log.info(
            "Staged %d %s bars for %d of %d symbols under %s (%d failed, %d with invalid bars, %d requests)",
            len(batch.bars),
            timeframe.value,
            len(batch.counts),
            len(batch.counts) + len(batch.failed),
            self.staging_key,
            len(batch.failed),
            len(batch.invalid),
            self.hook.requests_made,
        )
        return {
            "staging_key": self.staging_key,
            "timeframe": timeframe.value,
            "adjusted": self.adjusted,
            "bars": batch.counts,
            "failed": batch.failed,
            "invalid": batch.invalid,
            "requests": self.hook.requests_made,
            "source": SOURCE_CUSTOM_BARS,
        }
