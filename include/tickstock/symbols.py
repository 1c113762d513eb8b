"""The ``symbols`` registry: ticker details from Massive mapped onto the design document's columns.

Massive's ticker details have no sector, issuer or underlying index (ETF issuers exist only in a
partner endpoint), so those columns stay empty unless filled elsewhere; ``industry`` takes the
SIC description. A symbol the API does not know is still registered, with the symbol only, as
the design document does, and its load is reported as failed rather than silently empty.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from tickstock.sqlfiles import read_sql

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import psycopg

log = logging.getLogger(__name__)

METADATA_MAX_AGE = "20 hours"  # ticker details rarely change; a nightly run refreshes them


def _date(value: Any) -> date | None:
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def symbol_row(symbol: str, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the ``symbols`` row for ``symbol`` from its ticker details (``None``: unknown)."""
    details = details or {}
    return {
        "symbol": symbol,
        "has_details": bool(details),
        "name": details.get("name"),
        "exchange": details.get("primary_exchange"),
        "sector": None,
        "industry": details.get("sic_description"),
        "issuer": None,
        "underlying_index": None,
        "type": details.get("type"),
        "active": bool(details.get("active", True)),
        "market": details.get("market"),
        "currency_name": details.get("currency_name"),
        "cik": details.get("cik"),
        "composite_figi": details.get("composite_figi"),
        "list_date": _date(details.get("list_date")),
        "delisted_at": _instant(details.get("delisted_utc")),
    }


def symbols_with_fresh_metadata(conn: psycopg.Connection, symbols: Iterable[str]) -> set[str]:
    """Return the symbols whose details were fetched within :data:`METADATA_MAX_AGE`."""
    rows = conn.execute(
        read_sql("dml/symbols_with_fresh_metadata.sql"),
        {"symbols": list(symbols), "max_age": METADATA_MAX_AGE},
    ).fetchall()
    return {row[0] for row in rows}


def register_symbols(conn: psycopg.Connection, rows: Iterable[Mapping[str, Any]], fresh: Iterable[str] = ()) -> int:
    """Upsert symbol rows and touch ``last_updated`` of the ``fresh`` ones, in one transaction."""
    rows = list(rows)
    with conn.transaction(), conn.cursor() as cur:
        if rows:
            cur.executemany(read_sql("dml/upsert_symbols.sql"), rows)
        fresh = list(fresh)
        if fresh:
            cur.execute(read_sql("dml/touch_symbols.sql"), {"symbols": fresh})
    return len(rows)
