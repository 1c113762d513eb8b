"""The simulator as the bench runs it: a day-bar cache big enough for the universe, and warmed.

The simulator builds every series from minute data on first use (~40 ms of CPU per symbol-year,
README "Performance") and caches day bars for about 1,000 symbol-years. A 1,000-symbol x 1-year
load touches ~13,000 months, just over that cache, so a sequential pass would miss on every symbol
and the simulator, sharing the benchmark's two cores, would generate minute data at 20-30 req/s
while the loader is being timed. The real API serves precomputed aggregates at a constant cost; to
measure the loader and not the simulator's generator, the bench

- starts ``massive_sim`` with its cache sized for the largest universe it will request
  (``python -m tickstock_dev.bench_sim`` = ``python -m massive_sim`` with that one attribute set),
- and warms the series of the symbols a measurement uses before its timed runs.

Both are stated in docs/benchmarks.md; measurement 5 reports cached and cold throughput.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from massive_sim.testing import SimHandle

CACHE_MONTHS_ENV = "TICKSTOCK_BENCH_SIM_CACHE_MONTHS"
MONTHS_PER_SYMBOL_YEAR = 14  # a 1-year window spans 13 calendar months; one spare


@contextlib.contextmanager
def bench_simulator(*, cache_symbols: int, **cli_options: Any) -> Iterator[SimHandle]:
    """Start the simulator with a day-bar cache for ``cache_symbols`` symbol-years; stop it on exit."""
    from massive_sim import DEFAULT_API_KEY
    from massive_sim.testing import SimHandle, _stop, _wait_ready

    options = {"port": 0, **cli_options}
    argv = [sys.executable, "-m", "tickstock_dev.bench_sim"]
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv += ["--" + name.replace("_", "-")] + ([] if value is True else [str(value)])
    argv += ["--api-key", DEFAULT_API_KEY]
    env = {
        **os.environ,
        CACHE_MONTHS_ENV: str(max(12_000, cache_symbols * MONTHS_PER_SYMBOL_YEAR)),
        "PYTHONUNBUFFERED": "1",
    }
    devtools = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (devtools, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            url = _wait_ready(proc, stderr)
            yield SimHandle(url, DEFAULT_API_KEY, proc)
        finally:
            _stop(proc)


# Days up to ``as_of`` whose grouped daily the nightly refresh re-requests (its revision window,
# a few sessions, fits in a week).
REFRESH_WARM_DAYS = 7


def warm(sim: SimHandle, symbols: list[str], *, as_of: str = "2025-12-02", threads: int = 4) -> None:
    """Request each symbol's year of day bars, and the grouped dailies a run will ask for, once (untimed).

    Timed runs then hit the simulator's caches: day bars are the cached unit (week and month
    bars are built from them, hours from two sessions of minutes, cheap); a grouped-daily body
    (the whole market's day, 0.35-2 s to build on 2 cores) is cached per session. The year's
    grouped dailies are only warmed when a load of ``symbols`` would request them (more symbols
    than sessions, the planner's own rule); otherwise only the last :data:`REFRESH_WARM_DAYS`
    days, the nightly refresh's revision window. Warming the whole year for a 5-symbol ``--quick`` run
    cost 1.5-3 minutes of ``make test``. The request counters are reset afterwards.
    """
    import requests

    from tickstock.calendar import sessions
    from tickstock.grouped_daily import use_grouped_daily
    from tickstock.timeframes import Timeframe

    start = _year_before(as_of)

    def one(symbol: str, session: requests.Session) -> None:
        path = f"/v2/aggs/ticker/{symbol}/range/1/day/{start}/{as_of}"
        session.get(sim.url + path, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=60).raise_for_status()

    sessions_by_thread: dict[int, requests.Session] = {}

    def work(symbol: str) -> None:
        import threading

        s = sessions_by_thread.setdefault(threading.get_ident(), requests.Session())
        one(symbol, s)

    def grouped(day: str) -> None:
        import threading

        s = sessions_by_thread.setdefault(threading.get_ident(), requests.Session())
        path = f"/v2/aggs/grouped/locale/us/market/stocks/{day}"
        s.get(sim.url + path, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=60).raise_for_status()

    days = [str(date.fromisoformat(start) + timedelta(days=n)) for n in range(_span_days(start, as_of) + 1)]
    session_count = len(sessions(date.fromisoformat(start), date.fromisoformat(as_of)))
    if not use_grouped_daily(Timeframe.DAY, symbol_count=len(symbols), session_count=session_count):
        days = days[-REFRESH_WARM_DAYS:]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, symbols))
        list(pool.map(grouped, days))
    for s in sessions_by_thread.values():
        s.close()
    sim.reset()


def _span_days(start: str, end: str) -> int:
    return (date.fromisoformat(end) - date.fromisoformat(start)).days


def _year_before(as_of: str) -> str:
    return (date.fromisoformat(as_of) - timedelta(days=365)).isoformat()


def main() -> int:
    """``python -m massive_sim`` with the day-bar cache size taken from the environment."""
    from massive_sim import prices
    from massive_sim.cli import main as sim_main

    months = int(os.environ.get(CACHE_MONTHS_ENV, "12000"))
    original = prices.PriceModel.__init__

    def init(self: prices.PriceModel, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.day_block_cache_size = months

    prices.PriceModel.__init__ = init  # type: ignore[method-assign]
    return sim_main()


if __name__ == "__main__":
    raise SystemExit(main())
