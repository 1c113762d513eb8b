"""The aiohttp application: real-API routes behind auth, rate limit and fault injection.

One process, one event loop: the rate limiter and the statistics are then exact without any
locking or cross-process aggregation, and the asyncio server still clears the throughput target
(see bench.py). Latency faults are ``asyncio.sleep`` so a slow response never blocks others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from massive_sim.calendar import load_sessions
from massive_sim.engine import AggQuery, BadRequest, Engine, encode_cursor
from massive_sim.knobs import FaultDice, Knobs, RateLimiter, Stats, parse_latency, parse_now, parse_rate
from massive_sim.prices import PriceModel, render_bars
from massive_sim.splits import SplitBook, SplitQuery, SplitQueryError, builtin_splits, parse_split
from massive_sim.universe import Universe

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger("massive_sim")

JSON = "application/json"
MSG_NO_KEY = "API Key was not provided"
MSG_BAD_KEY = "Unknown API Key"
MSG_RATE = "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue."
MSG_FORBIDDEN = "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing"
MSG_5XX = "Internal server error (simulated fault)"
MSG_TICKER_NOT_FOUND = "Ticker not found."
_5XX = (500, 502, 503, 504)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] | None = None


class Simulator:
    """State shared by every request: data model, knobs, limiter, statistics, fault dice."""

    def __init__(self, knobs: Knobs, seed: int = 0, universe_size: int = 5000) -> None:
        self.seed = seed
        self.startup_knobs = knobs.validated()
        self.sessions = load_sessions()
        self.universe = Universe(seed=seed, synthetic_size=universe_size)
        self.model = PriceModel(self.sessions, self.universe, seed=seed)
        self.engine = Engine(self.model, self.universe)
        self._builtin_splits = builtin_splits(self.universe, seed)
        self.stats = Stats()
        self._request_counter = 0
        # Response bodies are built on one worker thread, in arrival order; see api().
        self._bodies = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-body")
        self.apply(self.startup_knobs, reset=True)

    # -- knobs ----------------------------------------------------------------------------------

    def apply(self, knobs: Knobs, *, reset: bool = False) -> None:
        previous = getattr(self, "knobs", None)
        self.knobs = knobs
        self._now_ms = parse_now(knobs.now)
        self._latency = parse_latency(knobs.latency_ms)
        self._keys = frozenset(knobs.api_keys)
        self._forbidden = frozenset(knobs.forbidden_timespans)
        self._fail_left = knobs.fail_next_n
        if previous is None or previous.splits != knobs.splits:
            self.model.splits = SplitBook(self._builtin_splits, [parse_split(spec) for spec in knobs.splits])
            self.engine.clear_caches()
        if reset or previous is None or previous.rate_limit != knobs.rate_limit:
            self.limiter = RateLimiter(parse_rate(knobs.rate_limit))
        if reset:
            self.dice = FaultDice(self.seed)
            self.stats.clear()
            self._request_counter = 0

    def configure(self, changes: dict[str, Any]) -> Knobs:
        knobs = self.knobs.updated(changes)
        self.apply(knobs)
        return knobs

    def reset(self) -> None:
        self.apply(Knobs(**self.startup_knobs.public()).validated(), reset=True)

    def now_ms(self) -> int:
        return self._now_ms if self._now_ms is not None else int(time.time() * 1000)

    # -- helpers --------------------------------------------------------------------------------

    def request_id(self) -> str:
        self._request_counter += 1
        return hashlib.blake2b(f"{self.seed}:{self._request_counter}".encode(), digest_size=16).hexdigest()

    @staticmethod
    def error(status: int, rid: str, api_status: str, key: str, text: str) -> Reply:
        body = _dumps({"status": api_status, "request_id": rid, key: text})
        return Reply(status, body)

    def _gate(self, request: web.Request, rid: str) -> Reply | None:
        """Auth, rate limit and injected failures, in that order (before any data work)."""
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else request.query.get("apiKey")
        if not key:
            return self.error(401, rid, "ERROR", "error", MSG_NO_KEY)
        if key not in self._keys:
            return self.error(401, rid, "ERROR", "error", MSG_BAD_KEY)
        if not self.limiter.allow(time.monotonic()):
            reply = self.error(429, rid, "ERROR", "error", MSG_RATE)
            if self.knobs.retry_after is not None:
                reply.headers = {"Retry-After": f"{self.knobs.retry_after:g}"}
            return reply
        if self._fail_left > 0:
            self._fail_left -= 1
            return self._status_reply(self.knobs.fail_next_status, rid)
        if FaultDice.hit(self.dice.error, self.knobs.error_rate):
            status = self.knobs.error_status or self.dice.error_status.choice(_5XX)
            return self._status_reply(status, rid)
        return None

    def _status_reply(self, status: int, rid: str) -> Reply:
        """An injected failure with the body the real API uses for that status."""
        if status == 429:
            reply = self.error(429, rid, "ERROR", "error", MSG_RATE)
            if self.knobs.retry_after is not None:
                reply.headers = {"Retry-After": f"{self.knobs.retry_after:g}"}
            return reply
        if status == 401:
            return self.error(401, rid, "ERROR", "error", MSG_BAD_KEY)
        if status == 403:
            return self.error(403, rid, "NOT_AUTHORIZED", "message", MSG_FORBIDDEN)
        return self.error(status, rid, "ERROR", "error", MSG_5XX)

    def _delay_s(self) -> float:
        lo, hi = self._latency
        ms = lo if lo == hi else self.dice.latency.uniform(lo, hi)
        if self.knobs.slow_ms > 0 and FaultDice.hit(self.dice.slow, self.knobs.slow_rate):
            ms += self.knobs.slow_ms
        return ms / 1000.0

    # -- endpoint bodies ------------------------------------------------------------------------

    def aggs(self, request: web.Request, rid: str) -> Reply:
        m = request.match_info
        try:
            q = AggQuery.from_request(dict(m), dict(request.query))
            if q.timespan in self._forbidden:
                return self.error(403, rid, "NOT_AUTHORIZED", "message", MSG_FORBIDDEN)
            page = self.engine.aggs(q, self.knobs.data_version, self.now_ms(), to_snap=self.knobs.to_snap)
        except BadRequest as exc:
            return self.error(400, rid, "ERROR", "error", str(exc))
        adjusted = "true" if q.adjusted else "false"
        ticker = json.dumps(q.ticker)
        if len(page.bars) == 0:
            body = (
                f'{{"ticker":{ticker},"queryCount":0,"resultsCount":0,"adjusted":{adjusted},'
                f'"status":"OK","request_id":"{rid}"}}'
            )
            return Reply(200, body.encode())
        items = render_bars(page.bars)
        if self.knobs.duplicate_bar:
            items.insert(1, items[0])
        next_url = ""
        base = f"{request.scheme}://{request.host}"
        if self.knobs.repeat_next_url and q.continued:
            next_url = f',"next_url":{json.dumps(base + _without_key(request))}'
        elif page.has_next:
            path = f"/v2/aggs/ticker/{q.ticker}/range/1/{q.timespan}/{page.next_from}/{page.next_to}"
            cursor = encode_cursor(q.limit, q.sort, q.adjusted)
            next_url = f',"next_url":{json.dumps(f"{base}{path}?cursor={cursor}")}'
        n = len(items)
        body = (
            f'{{"ticker":{ticker},"queryCount":{page.query_count},"resultsCount":{n},'
            f'"adjusted":{adjusted},"results":[{",".join(items)}],"status":"OK",'
            f'"request_id":"{rid}","count":{n}{next_url}}}'
        )
        return Reply(200, body.encode())

    def grouped(self, request: web.Request, rid: str) -> Reply:
        m = request.match_info
        if m["locale"] != "us" or m["market"] != "stocks":
            return self.error(400, rid, "ERROR", "error", "The simulator serves locale us, market stocks.")
        try:
            day = dt.date.fromisoformat(m["date"])
            is_adjusted = _parse_bool(request.query.get("adjusted"))
        except ValueError:
            return self.error(400, rid, "ERROR", "error", f"Could not parse the date: '{m['date']}'.")
        adjusted = "true" if is_adjusted else "false"
        symbols, _bars, rendered = self.engine.grouped(
            day, self.knobs.data_version, self.now_ms(), adjusted=is_adjusted
        )
        if not symbols:
            body = f'{{"queryCount":0,"resultsCount":0,"adjusted":{adjusted},"status":"OK","request_id":"{rid}"}}'
            return Reply(200, body.encode())
        n = len(symbols)
        body = (
            f'{{"queryCount":{n},"resultsCount":{n},"adjusted":{adjusted},'
            f'"results":[{rendered}],"status":"OK","request_id":"{rid}"}}'
        )
        return Reply(200, body.encode())

    def splits(self, request: web.Request, rid: str) -> Reply:
        try:
            q = SplitQuery.from_request(dict(request.query))
        except SplitQueryError as exc:
            return self.error(400, rid, "ERROR", "error", str(exc))
        rows, more = self.engine.splits(q, self.now_ms())
        body: dict[str, Any] = {"results": rows, "status": "OK", "request_id": rid}
        if more:
            body["next_url"] = f"{request.scheme}://{request.host}/stocks/v1/splits?cursor={q.next_cursor()}"
        return Reply(200, _dumps(body))

    def ticker_details(self, request: web.Request, rid: str) -> Reply:
        ticker = self.universe.get(request.match_info["ticker"])
        on = request.query.get("date")
        if ticker is not None and on:
            try:
                if dt.date.fromisoformat(on) < ticker.list_date:
                    ticker = None
            except ValueError:
                return self.error(400, rid, "ERROR", "error", f"Could not parse the date: '{on}'.")
        if ticker is None:
            return self.error(404, rid, "NOT_FOUND", "message", MSG_TICKER_NOT_FOUND)
        body = {"request_id": rid, "results": self.universe.details(ticker), "status": "OK", "count": 1}
        return Reply(200, _dumps(body))

    def not_found(self, request: web.Request, rid: str) -> Reply:
        return self.error(404, rid, "NOT_FOUND", "message", "Not found.")

    # -- HTTP -----------------------------------------------------------------------------------

    def api(self, kind: str, body: Callable[[web.Request, str], Reply]) -> Callable[..., Awaitable[Any]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            entry = self.stats.arrive(kind, _without_key(request))
            status = 500
            try:
                rid = self.request_id()
                reply = self._gate(request, rid)
                if reply is None:
                    # Arrival time, rate limit and request id stay on the event loop; the data work
                    # (a 5,000-ticker grouped-daily body takes tens of ms) runs off it. Built on
                    # the loop, a big body held back every request arriving meanwhile, which
                    # then got stamped and counted together: a burst the client never sent.
                    loop = asyncio.get_running_loop()
                    reply = await loop.run_in_executor(self._bodies, body, request, rid)
                if reply.status == 200 and FaultDice.hit(self.dice.invalid, self.knobs.invalid_json_rate):
                    reply.body = reply.body[: max(1, len(reply.body) // 2)]
                delay = self._delay_s()
                if delay > 0:
                    await asyncio.sleep(delay)
                status = reply.status
                headers = {"X-Request-Id": rid, **(reply.headers or {})}
                return web.Response(body=reply.body, status=reply.status, content_type=JSON, headers=headers)
            finally:
                self.stats.finish(entry, status)

        return handler

    def build_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}", self.api("aggs", self.aggs))
        r.add_get("/v2/aggs/grouped/locale/{locale}/market/{market}/{date}", self.api("grouped", self.grouped))
        r.add_get("/v3/reference/tickers/{ticker}", self.api("ticker_details", self.ticker_details))
        r.add_get("/stocks/v1/splits", self.api("splits", self.splits))
        r.add_get("/_sim/health", self._health)
        r.add_get("/_sim/config", self._get_config)
        r.add_post("/_sim/config", self._post_config)
        r.add_post("/_sim/reset", self._post_reset)
        r.add_get("/_sim/stats", self._get_stats)
        r.add_route("*", "/{tail:(?!_sim/).*}", self.api("other", self.not_found))
        app.on_startup.append(self._start_loop_watch)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _start_loop_watch(self, app: web.Application) -> None:
        self._loop_watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        """Measure the event loop's own lateness, every 10 ms, into the statistics.

        Arrivals are stamped (and rate-limited) when the loop runs their handler. When this
        process waits for a core (the bench shares two cores with the whole cluster), requests
        that reached the socket meanwhile are stamped together when it resumes: a burst in the
        statistics that the client did not send. The lag says how much of a busy second is that.
        """
        tick = 0.01
        while True:
            before = time.monotonic()
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.stats.loop_lag(now, now - before - tick)

    async def _on_cleanup(self, app: web.Application) -> None:
        """Stop the loop watch and the body builder."""
        watch = getattr(self, "_loop_watch", None)
        if watch is not None:
            watch.cancel()
        self._bodies.shutdown(wait=True, cancel_futures=True)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "OK", "tickers": len(self.universe)})

    async def _get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.knobs.public())

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json() if request.can_read_body else {}
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of knobs")
            knobs = self.configure(changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"status": "ERROR", "error": str(exc)}, status=400)
        log.info("knobs changed: %s", changes)
        return web.json_response(knobs.public())

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.knobs.public())

    async def _get_stats(self, request: web.Request) -> web.Response:
        include_log = request.query.get("requests", "").lower() in ("1", "true", "yes")
        return web.json_response(self.stats.snapshot(include_log))


def _dumps(obj: object) -> bytes:
    """Compact JSON, as the real API sends it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _without_key(request: web.Request) -> str:
    """The request path and query with any apiKey removed (next_url never carries a key)."""
    if "apiKey" not in request.query:
        return request.path_qs
    rest = [(k, v) for k, v in request.query.items() if k != "apiKey"]
    return request.path + (f"?{urlencode(rest)}" if rest else "")


def _parse_bool(raw: str | None) -> bool:
    if raw is None or raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ValueError(raw)
