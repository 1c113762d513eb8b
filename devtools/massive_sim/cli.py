"""Command line: ``python -m massive_sim [--port N] [--now ISO] [fault flags...]``.

Prints a line with the base URL, then ``massive_sim ready <base_url>`` once the socket accepts
connections (the fixture and scripts wait for that line), and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from massive_sim import DEFAULT_API_KEY, READY_PREFIX
from massive_sim.knobs import Knobs

log = logging.getLogger("massive_sim")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m massive_sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900, help="0 picks a free port (default 8900)")
    p.add_argument("--now", help="simulated clock, ISO 8601 (e.g. 2025-12-02T21:00:00Z); default: real time")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help=f'accepted key; repeatable or comma list (default "{DEFAULT_API_KEY}")',
    )
    p.add_argument("--seed", type=int, default=0, help="seed of prices, universe and fault dice")
    p.add_argument("--data-version", type=int, default=0, help="changes every price deterministically")
    p.add_argument("--universe-size", type=int, default=5000, help="synthetic symbols beyond the curated ones")
    p.add_argument("--rate-limit", help="e.g. 100/s or 5/min: excess requests get 429")
    p.add_argument("--retry-after", type=float, help="Retry-After seconds sent with 429 (default: none)")
    p.add_argument("--latency-ms", default="0", help="added latency: N or MIN:MAX (uniform, seeded)")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 5xx")
    p.add_argument("--error-status", type=int, help="status for --error-rate (default: 500/502/503/504)")
    p.add_argument("--forbidden-timespans", default="", help="comma list answered 403 NOT_AUTHORIZED")
    p.add_argument("--slow-ms", type=float, default=0.0, help="extra delay for a fraction of responses")
    p.add_argument("--slow-rate", type=float, default=1.0, help="fraction of responses slowed by --slow-ms")
    p.add_argument("--invalid-json-rate", type=float, default=0.0, help="fraction of 200s with truncated JSON")
    p.add_argument("--duplicate-bar", action="store_true", help="repeat the first bar of every aggs page")
    p.add_argument("--repeat-next-url", action="store_true", help="continuation pages point at themselves")
    p.add_argument("--fail-next-n", type=int, default=0, help="the next N API requests fail ...")
    p.add_argument("--fail-next-status", type=int, default=503, help="... with this status (default 503)")
    p.add_argument(
        "--split",
        action="append",
        dest="splits",
        help="a settable split SYMBOL:YYYY-MM-DD:TO:FROM[:TYPE] (4:1 is X:2025-12-03:4:1, 1:10 reverse "
        "X:2025-12-03:1:10, a 5%% stock dividend X:2025-12-03:21:20:stock_dividend); repeatable or comma list",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


def knobs_from_args(args: argparse.Namespace) -> Knobs:
    keys: list[str] = []
    for raw in args.api_keys or [DEFAULT_API_KEY]:
        keys.extend(k.strip() for k in raw.split(",") if k.strip())
    return Knobs(
        now=args.now,
        data_version=args.data_version,
        api_keys=keys,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        error_status=args.error_status,
        forbidden_timespans=args.forbidden_timespans,
        slow_ms=args.slow_ms,
        slow_rate=args.slow_rate,
        invalid_json_rate=args.invalid_json_rate,
        duplicate_bar=args.duplicate_bar,
        repeat_next_url=args.repeat_next_url,
        fail_next_n=args.fail_next_n,
        fail_next_status=args.fail_next_status,
        splits=[part for raw in args.splits or [] for part in raw.split(",")],
    ).validated()


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from massive_sim.server import Simulator

    sim = Simulator(knobs_from_args(args), seed=args.seed, universe_size=args.universe_size)
    runner = web.AppRunner(sim.build_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"http://{host}:{port}"
    print(
        f"massive_sim serving {len(sim.universe)} tickers at {url} (now={args.now or 'real time'})",
        flush=True,
    )
    print(f"{READY_PREFIX}{url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(message)s")
    try:
        knobs_from_args(args)
    except ValueError as exc:
        print(f"massive_sim: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop is optional: only throughput depends on it
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(args))
    return 0
