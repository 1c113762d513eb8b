"""Turn a validated load request into the mapped work of one universe load.

One mapped fetch per (timeframe x symbol batch), except day bars when grouped daily needs fewer
requests (:mod:`tickstock.grouped_daily`: one request per session for the whole market): then
the day bars are planned as grouped requests instead. Batches amortise Airflow's per-task overhead
(seconds of process start, DAG parse and scheduling per task instance, on the same cores as
everything else) over many API calls, while keeping a failure's blast radius and a retry's cost
to one batch. By default they are sized to the workers (:func:`auto_batch_size`): about two
rounds of the ``massive_api`` pool, so every slot stays busy while the last batches finish, and
never more than ``MAX_BATCH_SIZE`` symbols. The number of mapped tasks must stay under Airflow's
``[core] max_map_length`` (1024 per upstream list), so batches grow when the universe does. A load
of more than one round staggers its first round's batch sizes (:func:`cut_batches`) so that the
batches do not all end, and leave their slots idle, at the same moment.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from tickstock.calendar import today_new_york
from tickstock.grouped_daily import grouped_requests, use_grouped_daily
from tickstock.load_request import AUTO_MIN_BATCH_SIZE, MAX_BATCH_SIZE
from tickstock.staging import load_key
from tickstock.timeframes import Timeframe
from tickstock.windows import LoadWindow, plan_windows

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tickstock.load_request import LoadRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MAPPED_TASKS = 1000  # below Airflow's default max_map_length of 1024
#: Slots of the ``massive_api`` pool in ``make cluster`` and compose (docker/init_tickstock.py).
FETCH_SLOTS = 8
#: Rounds of the pool the per-symbol batches of a large load are cut into: one round leaves
#: slots idle behind the slowest batch; more rounds pay Airflow's per-task cost more often.
FETCH_ROUNDS = 2


@dataclass(frozen=True)
class LoadPlan:
    """The windows and batches of one load.

    :param as_of: the reference date actually used (today in New York when not given)
    :param windows: per-timeframe request ranges and exact expected bars
    :param batches: keyword arguments of each mapped per-symbol fetch task
    :param batch_size: symbols per batch after growing it to fit ``MAX_MAPPED_TASKS``
    :param grouped: grouped-daily fetches of the day bars, shaped like ``batches`` (empty when the
        day bars are fetched per symbol); the load maps over both (:func:`mapped_batches`)
    """

    as_of: date
    windows: dict[str, LoadWindow]
    batches: list[dict[str, Any]]
    batch_size: int
    grouped: list[dict[str, Any]]


def effective_batch_size(
    symbol_count: int, timeframe_count: int, requested: int, *, max_tasks: int = MAX_MAPPED_TASKS
) -> int:
    """Return the smallest batch size >= ``requested`` that keeps the map under ``max_tasks``."""
    if symbol_count == 0 or timeframe_count == 0:
        return requested
    per_timeframe_cap = max(1, max_tasks // timeframe_count)
    return max(requested, math.ceil(symbol_count / per_timeframe_cap))


def auto_batch_size(
    symbol_count: int,
    timeframe_count: int,
    *,
    slots: int = FETCH_SLOTS,
    rounds: int = FETCH_ROUNDS,
    floor: int = AUTO_MIN_BATCH_SIZE,
) -> int:
    """Return the batch size that cuts ``symbol_count`` x ``timeframe_count`` into ~``rounds`` x ``slots`` tasks.

    Clamped to ``[floor, MAX_BATCH_SIZE]``: a 2-symbol job stays one task per timeframe, and a
    5,000-symbol load is cut into batches of at most ``MAX_BATCH_SIZE`` symbols (a failed
    batch's retry repeats at most that many requests).
    """
    units = symbol_count * timeframe_count
    if units == 0:
        return floor
    return min(MAX_BATCH_SIZE, max(floor, math.ceil(units / (slots * rounds))))


def first_round_sizes(size: int, *, slots: int = FETCH_SLOTS) -> list[int]:
    """Return the sizes of the first round's batches: from half of ``size`` up to nearly all of it.

    Why: the shared request budget serves every running fetch in turn, so equal batches started
    together also end together. A 5,000-symbol nightly refresh (30 batches of 500 on 8 slots)
    showed it: each round ended with its upserts taking the worker slots while no fetch ran,
    and the 10-s request rate fell from 90/s to 44-48/s at every boundary. Batches of
    ``size * (slots + k) / (2 * slots)`` for k = 0..slots-1 end one at a time between half a
    round and a round; each freed slot starts the next batch while the others keep the budget
    full, and the later rounds keep that spacing.
    """
    return [max(1, math.ceil(size * (slots + k) / (2 * slots))) for k in range(slots)]


def cut_batches(
    groups: Sequence[Sequence[T]], size: int, *, others: int = 0, slots: int = FETCH_SLOTS
) -> list[list[list[T]]]:
    """Cut each group into consecutive batches of ``size``, the first round staggered.

    The first ``slots`` batches, in group order, take :func:`first_round_sizes` when the plain
    cut (plus ``others`` batches mapped beside these, e.g. grouped-daily fetches) needs more than
    one round of ``slots``. That costs at most :func:`stagger_extra` more task instances; a load
    of one round is cut exactly as before.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    plain = others + sum(math.ceil(len(group) / size) for group in groups)
    pending = iter(first_round_sizes(size, slots=slots) if plain > slots else ())
    cut: list[list[list[T]]] = []
    for group in groups:
        batches: list[list[T]] = []
        offset = 0
        while offset < len(group):
            length = next(pending, size)
            batches.append(list(group[offset : offset + length]))
            offset += length
        cut.append(batches)
    return cut


def stagger_extra(slots: int = FETCH_SLOTS) -> int:
    """Upper bound of the batches :func:`cut_batches` adds to a plain cut by staggering."""
    # the first round holds (3 * slots - 1) / 4 plain batches' worth, rounded up per batch
    return slots - (3 * slots - 1) // 4


def plan_load(request: LoadRequest, *, run_id: str, now: datetime | None = None) -> LoadPlan:
    """Compute windows and batches for ``request``; ``run_id`` makes staging keys unique."""
    now = now or datetime.now(UTC)
    as_of = request.as_of or today_new_york(now)
    windows = plan_windows(
        as_of=as_of,
        days=request.days,
        timeframes=request.timeframes,
        hourly_days=request.hourly_days,
        extended_hours=request.extended_hours,
        now=now,
    )
    grouped: list[dict[str, Any]] = []
    day = windows.get(Timeframe.DAY)
    if day and use_grouped_daily(Timeframe.DAY, symbol_count=len(request.symbols), session_count=len(day.expected)):
        grouped = grouped_requests(request.symbols, day.expected, run_id=run_id, group="g", adjusted=request.adjusted)
        log.info("Day bars from grouped daily: %d requests instead of %d", len(day.expected), len(request.symbols))
    per_symbol = {tf: w for tf, w in windows.items() if not (grouped and tf is Timeframe.DAY)}
    requested = request.batch_size or auto_batch_size(len(request.symbols), len(per_symbol))
    # Every grouped request is one more mapped upsert next to the per-symbol batches, and the
    # staggered first round a few more.
    size = effective_batch_size(
        len(request.symbols), len(per_symbol), requested, max_tasks=MAX_MAPPED_TASKS - len(grouped) - stagger_extra()
    )
    if size != requested:
        log.info(
            "Batch size raised from %d to %d to stay under %d mapped tasks",
            requested,
            size,
            MAX_MAPPED_TASKS,
        )
    log.info(
        "%d symbols x %d timeframes fetched per symbol, in batches of %d",
        len(request.symbols),
        len(per_symbol),
        size,
    )
    cut = cut_batches([request.symbols] * len(per_symbol), size, others=len(grouped))
    batches = [
        {
            "symbols": chunk,
            "timeframe": timeframe.value,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "staging_key": load_key(run_id, timeframe, index),
            "adjusted": request.adjusted,
            "extended_hours": request.extended_hours,
            "sessions": None,
        }
        for (timeframe, window), chunks in zip(per_symbol.items(), cut, strict=True)
        for index, chunk in enumerate(chunks)
    ]
    return LoadPlan(as_of, {tf.value: w for tf, w in windows.items()}, batches, size, grouped)


def mapped_batches(grouped: list[dict[str, Any]], batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the keyword arguments of every mapped ``load_batch``: grouped-daily fetches spread out.

    The scheduler starts equal priorities in map-index order. A grouped-daily fetch decodes the
    whole market for each of its sessions (~0.2 s of CPU each): the four of a 1-year load side by
    side at the start saturated both cores for a minute and the request rate fell to 40-80/s of
    90. One leads (its sessions are a large share of a small load's work), the others follow
    every ``len(batches) / len(grouped)`` per-symbol batches. Both DAGs order their map with it.
    """
    if not grouped:
        return list(batches)
    step = math.ceil(len(batches) / len(grouped))
    mapped: list[dict[str, Any]] = []
    for index, request in enumerate(grouped):
        mapped.append(request)
        mapped.extend(batches[index * step : (index + 1) * step])
    return mapped
