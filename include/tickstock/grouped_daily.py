"""Request economy for day bars: one Custom Bars request per symbol, or one grouped-daily request per session.

Massive's grouped-daily endpoint returns the day bars of every US stock for one date in one
response (no pagination), so ``n`` symbols over ``s`` sessions cost ``s`` requests instead of
``n``. A 5,000-symbol, one-year load needs 252 requests for its day bars instead of 5,000; a
two-day load of two symbols needs two either way, and the per-symbol requests win (smaller
responses, a failure costs one symbol instead of a session of every symbol).

Both ``universe_load`` and ``nightly_refresh`` plan their grouped requests here, as batches of
the same mapped ``fetch_bars`` → ``upsert_bars`` group as the per-symbol ones, so the two DAGs
cannot drift apart.

Why the bars are the same from either endpoint (each checked by the tests, or documented where
the simulator cannot show it):

- The 16:00 ET stamp of grouped daily is normalised to the session's ET midnight
  (:func:`tickstock.bars.parse_grouped_daily`): same ``bar_start``, ``period`` and key.
- A symbol that did not trade on a session (or was not listed yet, or was delisted) has no row in
  that session's grouped response and no bar in its range response.
- ``adjusted`` is passed through unchanged: both endpoints take the same split-adjustment flag,
  so the choice does not depend on it.
- OTC-traded tickers are left out of grouped daily unless ``include_otc=true``, while the range
  endpoint returns their bars (flagged ``otc``): grouped requests always include them, and only
  the requested symbols are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tickstock.timeframes import Timeframe

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

# Sessions staged under one key, i.e. merged by one upsert task: a quarter of a year. A longer
# load is split into several keys so its merges are transactions of a bounded size (63 sessions
# x 5,000 symbols = 315,000 rows) that mapped upserts can run side by side.
GROUPED_SESSIONS_PER_KEY = 63
# The ``source`` a fetch result names, so the job results say which endpoint answered.
SOURCE_CUSTOM_BARS = "custom_bars"
SOURCE_GROUPED_DAILY = "grouped_daily"


def use_grouped_daily(timeframe: Timeframe, *, symbol_count: int, session_count: int) -> bool:
    """Return whether grouped daily needs fewer requests than one range request per symbol.

    Per symbol, a day range of any length is one request (``limit=50000`` day bars cover 136
    years); grouped daily is one request per session. Only day bars exist in grouped form, so
    every other timeframe stays per symbol; a tie stays per symbol too.
    """
    return timeframe is Timeframe.DAY and 0 < session_count < symbol_count


def grouped_requests(
    symbols: Sequence[str], sessions: Sequence[date], *, run_id: str, group: str, adjusted: bool
) -> list[dict[str, Any]]:
    """Return the grouped-daily requests that load ``symbols``' day bars for ``sessions``.

    Each item is one mapped fetch, shaped like a per-symbol batch (``symbols``, ``timeframe``,
    ``start``, ``end``, ``staging_key``, ``adjusted``, ``extended_hours``) plus the ``sessions``
    it requests (a per-symbol batch has ``None`` there): at most
    :data:`GROUPED_SESSIONS_PER_KEY` sessions, staged under its own key. ``group`` keeps the
    keys of several calls in one run apart.
    """
    from tickstock.staging import load_key  # psycopg: not needed where only the names above are

    days = [d.isoformat() for d in sessions]
    return [
        {
            "symbols": list(symbols),
            "timeframe": Timeframe.DAY.value,
            "start": chunk[0],
            "end": chunk[-1],
            "staging_key": load_key(run_id, Timeframe.DAY, f"{group}.{offset // GROUPED_SESSIONS_PER_KEY}"),
            "adjusted": adjusted,
            "extended_hours": False,
            "sessions": chunk,
        }
        for offset in range(0, len(days), GROUPED_SESSIONS_PER_KEY)
        if (chunk := days[offset : offset + GROUPED_SESSIONS_PER_KEY])
    ]
