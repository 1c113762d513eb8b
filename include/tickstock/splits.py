"""Splits: which stored series a split invalidates, and the adjustment basis of stored series.

Massive's ``adjusted=true`` bars are restated retroactively when a split executes: every bar
before the execution date changes (prices ÷ ratio, volume x ratio). A loader that only fetches new
bars would keep the old basis for its history and show a fake 75 % crash at a 4:1 split. So the
refresh asks ``/stocks/v1/splits`` once per run for the execution dates since the last
successful refresh (the *watermark*), and reloads the whole stored history of every stored
symbol that split, in every table it has, through the normal fetch → upsert → check path.

Every event the endpoint lists counts, stock dividends included: whether Massive restates bars
for a stock dividend is not documented, and a reload that changes nothing costs a few requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from tickstock.refresh import Extent, read_extents
from tickstock.sqlfiles import read_sql
from tickstock.timeframes import Timeframe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    import psycopg

ADJUSTMENT_TYPES = ("forward_split", "reverse_split", "stock_dividend")


class InvalidSplit(ValueError):
    """A splits row that cannot be trusted (missing field, bad date or ratio)."""


class AdjustmentMismatch(ValueError):
    """A load's ``adjusted`` flag differs from what is stored for some symbol and table."""

    def __init__(self, requested: bool, conflicts: Sequence[tuple[str, str, bool]]) -> None:
        self.requested = requested
        self.conflicts = list(conflicts)
        shown = ", ".join(f"{symbol} in {table} (stored adjusted={stored})" for symbol, table, stored in conflicts[:10])
        more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        super().__init__(
            f"adjusted={requested} differs from the stored series: {shown}{more}. Adjusted and raw bars are "
            "never mixed in one table: load these symbols with the stored basis, or delete their rows first"
        )


@dataclass(frozen=True)
class Split:
    """One split event as Massive lists it (a 4-for-1 split is ``split_from=1, split_to=4``)."""

    symbol: str
    execution_date: date
    split_from: float
    split_to: float
    adjustment_type: str

    @property
    def ratio(self) -> str:
        """``"4:1"`` for a 4-for-1 split, ``"1:10"`` for a 1-for-10 reverse split."""
        return f"{self.split_to:g}:{self.split_from:g}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (XCom between planning and the job result)."""
        return {
            "symbol": self.symbol,
            "execution_date": self.execution_date.isoformat(),
            "split_from": self.split_from,
            "split_to": self.split_to,
            "adjustment_type": self.adjustment_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Split:
        return cls(
            symbol=data["symbol"],
            execution_date=date.fromisoformat(data["execution_date"]),
            split_from=float(data["split_from"]),
            split_to=float(data["split_to"]),
            adjustment_type=data["adjustment_type"],
        )

    def result(self, rows_rewritten: int) -> dict[str, Any]:
        """The job-status entry (``results.splits``)."""
        return {
            "symbol": self.symbol,
            "date": self.execution_date.isoformat(),
            "ratio": self.ratio,
            "adjustment_type": self.adjustment_type,
            "rows_rewritten": rows_rewritten,
        }


def parse_splits(rows: Iterable[Any]) -> list[Split]:
    """Validate ``/stocks/v1/splits`` rows; one bad row fails the whole answer (it could hide a split)."""
    out = []
    for row in rows:
        try:
            split = Split(
                symbol=str(row["ticker"]),
                execution_date=date.fromisoformat(str(row["execution_date"])),
                split_from=float(row["split_from"]),
                split_to=float(row["split_to"]),
                adjustment_type=str(row.get("adjustment_type") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSplit(f"splits row {row!r}: {exc}") from None
        if not split.symbol or split.split_from <= 0 or split.split_to <= 0:
            raise InvalidSplit(f"splits row {row!r}: needs a ticker and positive split_from/split_to")
        out.append(split)
    return sorted(out, key=lambda s: (s.symbol, s.execution_date))


def splits_of_stored(splits: Iterable[Split], stored: Iterable[str]) -> dict[str, list[Split]]:
    """Group splits by symbol, keeping only symbols we store (a split elsewhere costs nothing)."""
    wanted = set(stored)
    out: dict[str, list[Split]] = {}
    for split in splits:
        if split.symbol in wanted:
            out.setdefault(split.symbol, []).append(split)
    return out


#: Days before the watermark a refresh asks about again: Massive updates the splits list daily, so
#: a split may be listed a day or two after it executed. Splits already reloaded are skipped.
LATE_LISTING_DAYS = 7


def split_query_range(
    watermark: date | None, as_of: date, fallback_start: date | None, *, late_days: int = LATE_LISTING_DAYS
) -> tuple[date, date] | None:
    """Execution dates one refresh asks about: from ``late_days`` before the watermark through ``as_of``.

    Dates, not sessions: a split dated on a weekend or holiday falls inside the range like any
    other. Without a watermark (bars loaded before splits were tracked), from the oldest stored
    bar: nothing older can have been fetched on an older basis. None when there is nothing to ask.
    """
    start = watermark + timedelta(days=1 - late_days) if watermark is not None else fallback_start
    if start is None or start > as_of:
        return None
    return start, as_of


def split_results(splits: Iterable[Split], rewritten: Mapping[str, int]) -> list[dict[str, Any]]:
    """``results.splits`` entries: a symbol's rows rewritten are its reload's, shown on each of its splits."""
    ordered = sorted(splits, key=lambda s: (s.symbol, s.execution_date))
    return [split.result(rewritten.get(split.symbol, 0)) for split in ordered]


@dataclass(frozen=True)
class SplitReloads:
    """What one refresh does about splits.

    :param splits: stored symbols whose history is reloaded, with their splits not yet reloaded
    :param hour_extents: the hourly extents of those symbols (the largest table is read only for them)
    :param through: the watermark a completed run advances to; None when no query was made
    """

    splits: dict[str, list[Split]]
    hour_extents: list[Extent]
    through: date | None


def plan_split_reloads(
    conn: psycopg.Connection,
    *,
    as_of: date,
    extents: Mapping[Timeframe, Sequence[Extent]],
    get_splits: Callable[[date, date], Sequence[Split]],
) -> SplitReloads:
    """Ask once for the splits since the watermark and pick the stored symbols whose history changed.

    ``extents`` are the day/week/month extents of the active symbols; ``get_splits`` is the hook's
    paginated query. A split of a symbol we do not store, or one a completed run already
    reloaded (listed again by the late-listing overlap), causes no reload.
    """
    symbols = sorted({e.symbol for items in extents.values() for e in items})
    firsts = [e.first_key for e in extents.get(Timeframe.DAY, ()) if e.first_key is not None]
    query = split_query_range(read_watermark(conn), as_of, min(firsts, default=None)) if symbols else None
    if query is None:
        return SplitReloads({}, [], None)
    listed = splits_of_stored(get_splits(*query), symbols)
    done = already_reloaded(conn, [split for found in listed.values() for split in found])
    fresh = {symbol: [s for s in found if s not in done] for symbol, found in listed.items()}
    fresh = {symbol: found for symbol, found in fresh.items() if found}
    hour_extents = read_extents(conn, Timeframe.HOUR, sorted(fresh))
    stored = {e.symbol for items in (*extents.values(), hour_extents) for e in items if e.stored}
    reloads = {symbol: found for symbol, found in fresh.items() if symbol in stored}
    return SplitReloads(reloads, [e for e in hour_extents if e.symbol in reloads], as_of)


# -- stored state -----------------------------------------------------------------------------


def already_reloaded(conn: psycopg.Connection, splits: Sequence[Split]) -> set[Split]:
    """The given splits a completed refresh has already reloaded (``split_reloads``)."""
    if not splits:
        return set()
    rows = conn.execute(
        read_sql("dml/split_reloads_done.sql"),
        {
            "symbols": [s.symbol for s in splits],
            "dates": [s.execution_date for s in splits],
            "froms": [s.split_from for s in splits],
            "tos": [s.split_to for s in splits],
        },
    ).fetchall()
    done = {(symbol, day, float(split_from), float(split_to)) for symbol, day, split_from, split_to in rows}
    return {s for s in splits if (s.symbol, s.execution_date, s.split_from, s.split_to) in done}


def record_reloads(
    conn: psycopg.Connection, splits: Sequence[Split], rewritten: Mapping[str, int], run_id: str
) -> None:
    """Remember splits whose reload a completed run made, so the late-listing overlap skips them."""
    for split in splits:
        conn.execute(
            read_sql("dml/split_reloads_record.sql"),
            {
                "symbol": split.symbol,
                "execution_date": split.execution_date,
                "split_from": split.split_from,
                "split_to": split.split_to,
                "adjustment_type": split.adjustment_type,
                "rows_rewritten": rewritten.get(split.symbol, 0),
                "run_id": run_id,
            },
        )


def read_watermark(conn: psycopg.Connection) -> date | None:
    """The last execution date every stored series is known to reflect (None: never set)."""
    row = conn.execute(read_sql("dml/split_watermark_read.sql")).fetchone()
    return row[0] if row else None


def advance_watermark(conn: psycopg.Connection, through: date) -> None:
    """Record that splits through ``through`` are applied; never moves the watermark back."""
    conn.execute(read_sql("dml/split_watermark_advance.sql"), {"through": through})


def initialise_watermark(conn: psycopg.Connection, through: date) -> None:
    """Set the watermark if it was never set (a first load fetched bars on today's basis)."""
    conn.execute(read_sql("dml/split_watermark_init.sql"), {"through": through})


def basis_conflicts(
    conn: psycopg.Connection, symbols: Sequence[str], tables: Sequence[str], adjusted: bool
) -> list[tuple[str, str, bool]]:
    """(symbol, table, stored adjusted) for every stored series whose basis differs from ``adjusted``."""
    rows = conn.execute(
        read_sql("dml/adjustment_basis_conflicts.sql"),
        {"symbols": list(symbols), "tables": list(tables), "adjusted": adjusted},
    ).fetchall()
    return [(symbol, table, stored) for symbol, table, stored in rows]


def check_basis(conn: psycopg.Connection, symbols: Sequence[str], tables: Sequence[str], adjusted: bool) -> None:
    """Raise :class:`AdjustmentMismatch` naming every conflicting symbol and table."""
    conflicts = basis_conflicts(conn, symbols, tables, adjusted)
    if conflicts:
        raise AdjustmentMismatch(adjusted, conflicts)


def record_basis(conn: psycopg.Connection, symbols: Sequence[str], table: str, adjusted: bool) -> None:
    """Claim the basis of ``table`` for ``symbols`` in the caller's transaction, or raise.

    Called in the merge's transaction: two concurrent loads with different flags that both passed
    the planning check cannot both write; the second one's merge is rolled back.
    """
    if not symbols:
        return
    conn.execute(
        read_sql("dml/adjustment_basis_record.sql"),
        {"symbols": list(symbols), "table_name": table, "adjusted": adjusted},
    )
    check_basis(conn, symbols, [table], adjusted)
