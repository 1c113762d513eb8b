"""Throughput benchmark: one-year daily Custom Bars requests per second against a simulator.

    python -m massive_sim.bench [--url http://127.0.0.1:8900] [--processes 2] [--threads 2]
                                [--seconds 5] [--runs 5] [--tickers 50]

Without ``--url`` it starts its own simulator process (``run_simulator``). Client load comes from
several processes, each with a few keep-alive connections (``http.client``, the cheapest client in
the standard library), so the client spends as little of the machine's CPU as possible. A warm-up
pass touches every ticker first: the numbers are for cached series, which is what a loader that
requests symbol after symbol sees after its first year. It also checks that the simulator counted
exactly the requests the clients made.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from massive_sim import DEFAULT_API_KEY

PATH = "/v2/aggs/ticker/{ticker}/range/1/day/2024-12-02/2025-12-01"
CURATED = ["SPY", "SCHG", "VUG", "QQQ", "AAPL", "MSFT", "NVDA", "QUIET", "NEWCO"]


def _tickers(url: str, key: str, count: int) -> list[str]:
    """Curated names plus synthetic ones taken from a grouped-daily response."""
    import json

    conn = _connect(url)
    conn.request(
        "GET",
        "/v2/aggs/grouped/locale/us/market/stocks/2025-11-26",
        headers={"Authorization": f"Bearer {key}"},
    )
    rows = json.loads(conn.getresponse().read()).get("results", [])
    names = CURATED + [r["T"] for r in rows if r["T"] not in CURATED]
    return names[:count]


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)


@dataclass(frozen=True)
class Load:
    """What every client process does: which URL, key and tickers, how many connections, how long."""

    url: str
    key: str
    tickers: list[str]
    threads: int
    seconds: float
    processes: int = 1


def _client(load: Load, proc_index: int, start: Any, out: Any) -> None:
    """One client process: ``threads`` keep-alive connections hammering until the deadline."""
    url, key, tickers, threads, seconds = load.url, load.key, load.tickers, load.threads, load.seconds
    counts = [0] * threads
    errors = [0] * threads
    start.wait()
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        conn = _connect(url)
        headers = {"Authorization": f"Bearer {key}"}
        j = proc_index * threads + i  # every connection walks its own tickers
        stride = threads * load.processes
        while time.perf_counter() < deadline:
            conn.request("GET", PATH.format(ticker=tickers[j % len(tickers)]), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or not body.endswith(b"}"):
                errors[i] += 1
            counts[i] += 1
            j += stride
        conn.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((sum(counts), sum(errors)))


def run_once(load: Load, processes: int) -> float:
    """Requests per second of one timed run with ``processes`` client processes."""
    seconds = load.seconds
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(load, i, start, out)) for i in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let the spawned interpreters import before the clock starts
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    if errors:
        raise RuntimeError(f"{errors} of {total} requests failed")
    return total / max(elapsed, seconds)


def bench(url: str, key: str, args: argparse.Namespace) -> dict[str, float]:
    import json
    import urllib.request

    def admin(path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req).read()

    tickers = _tickers(url, key, 100_000 if args.cold else args.tickers)
    if not args.cold:
        conn = _connect(url)
        for t in tickers:  # warm-up: compute and cache every series once
            conn.request("GET", PATH.format(ticker=t), headers={"Authorization": f"Bearer {key}"})
            conn.getresponse().read()
    admin("/_sim/reset", {})
    rates = []
    for i in range(args.runs):
        if args.cold:  # a data version never served before: every series must be generated
            admin("/_sim/config", {"data_version": 1000 + i})
        load = Load(url, key, tickers, args.threads, args.seconds, args.processes)
        rate = run_once(load, args.processes)
        rates.append(rate)
        print(f"run {i + 1}: {rate:.0f} req/s", flush=True)
    with urllib.request.urlopen(f"{url}/_sim/stats") as resp:
        stats = json.loads(resp.read())
    summary = {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}
    print(
        f"{'cold' if args.cold else 'cached'} one-year daily requests/s over "
        f"{args.runs} runs of {args.seconds:g}s "
        f"({args.processes} processes x {args.threads} connections, {len(tickers)} tickers): "
        f"min {summary['min']:.0f}  median {summary['median']:.0f}  max {summary['max']:.0f}; "
        f"simulator counted {stats['total']} requests, by status {stats['by_status']}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m massive_sim.bench", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running simulator; default: start one")
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--tickers", type=int, default=50, help="distinct tickers requested (cached mode)")
    p.add_argument("--cold", action="store_true", help="every request a series not generated yet")
    args = p.parse_args(argv)
    if args.url:
        bench(args.url.rstrip("/"), args.api_key, args)
        return 0
    from massive_sim.testing import run_simulator

    with run_simulator(now="2025-12-02T21:00:00Z", api_key=args.api_key) as sim:
        print(f"simulator at {sim.url}", flush=True)
        bench(sim.url, sim.api_key, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
