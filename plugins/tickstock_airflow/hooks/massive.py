"""MassiveHook: the Massive (formerly Polygon.io) REST API on top of the http provider's HttpHook.

What the official client and the design document's sketch get wrong for a bulk loader, and what
this hook does instead:

- **Auth** goes in an ``Authorization: Bearer`` header, never in a URL (URLs end up in logs and
  exception text). ``next_url`` pages are requested against the connection's base URL with the
  header re-attached, so the key is never sent to a host the connection does not name.
- **Pagination** follows ``next_url`` with ``limit=50000`` and stops with an error when a cursor
  repeats (the API has looped before). Minute-based ranges are also split into windows whose
  base-minute count stays under ``limit``, so a server that truncates without a ``next_url``
  cannot silently drop bars.
- **Failures are raised, never turned into empty lists.** 401/403 fail fast with what to fix;
  429 backs off exponentially (seconds, not the official client's 0.1 s) or as long as
  ``Retry-After`` says; 5xx, timeouts, resets and invalid JSON are retried a bounded number of
  times. The loop is tenacity's (:class:`tenacity.Retrying`); only the wait is the hook's own,
  because tenacity has no ``Retry-After`` strategy. A 200 without ``results`` is simply "no bars".
- **Rate budget**: with ``rate_limit`` set, every request first takes a slot from a Redis-shared
  budget (:mod:`tickstock.rate_budget`), so all workers together stay under the plan's limit;
  the Airflow pool ``massive_api`` bounds how many tasks run at once.
- **One session per hook**, shared by the threads of a batch, so they share its connection pool.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import date, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.http.hooks.http import HttpHook
from requests.auth import AuthBase
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity import sleep as tenacity_sleep
from tenacity.wait import wait_base

from tickstock.bars import ParsedBars, decode_json, parse_aggregates, parse_grouped_daily
from tickstock.rate_budget import DEFAULT_HEADROOM
from tickstock.splits import InvalidSplit, Split, parse_splits
from tickstock.timeframes import Timeframe
from tickstock_airflow.hooks import MASSIVE_CONN_ID

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from airflow.sdk import Connection
    from tenacity import RetryCallState

    from tickstock.rate_budget import RateBudget

DEFAULT_BASE_URL = "https://api.massive.com"
MAX_LIMIT = 50_000
#: The splits endpoint's maximum page size (its default is 100).
SPLITS_PAGE_LIMIT = 5000
# Minute and hour bars are built from minute bars; ``limit`` caps those, not the result rows.
MINUTE_BASED = frozenset({"minute", "hour"})
MINUTES_PER_DAY = 24 * 60
_RETRY_AFTER_CAP = 300.0


class MassiveError(AirflowException):
    """Base class of the hook's errors; messages never contain the API key."""


class MassiveAuthError(MassiveError):
    """401/403 or no key configured: systemic, retrying or trying other symbols cannot help."""


class MassiveRequestError(MassiveError):
    """The API rejected this request (400, 404, an error body): specific to the request, not retried."""


class MassiveUnavailableError(MassiveError):
    """Retries exhausted on 429, 5xx, timeouts, connection resets or invalid JSON."""


class MassivePaginationError(MassiveError):
    """``next_url`` repeated a cursor or exceeded the page limit: the response cannot be trusted."""


class _BearerAuth(AuthBase):
    """Adds ``Authorization: Bearer <key>`` to each request; its repr never shows the key."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class _Retry(Exception):
    """One attempt failed in a way worth another attempt; the wait strategy reads how long to wait.

    :param problem: what went wrong, for the warning and the final error (may still need ``_redact``)
    :param rate_limited: the failure was a 429, so the rate-limit backoff (or ``retry_after``) applies
    :param retry_after: the 429's raw ``Retry-After`` header, parsed only when the wait is computed
    """

    def __init__(self, problem: str, *, rate_limited: bool = False, retry_after: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.rate_limited = rate_limited
        self.retry_after = retry_after


def retry_after_delay(value: str | None, *, now: float | None = None, cap: float = _RETRY_AFTER_CAP) -> float | None:
    """Return the wait a ``Retry-After`` header asks for, plus jitter; ``None`` if it says nothing usable.

    Both forms of the header are understood: delay-seconds (``"7"``, also fractional) and an
    HTTP-date, measured against ``now`` (default: the current time). The wait is clamped to
    ``[0, cap]`` so a misbehaving server cannot park a worker for hours, and up to 10 % (at most
    1 s) of jitter is added so the workers one 429 stopped do not all return in the same instant.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError):
            return None
    seconds = min(max(seconds, 0.0), cap)
    return seconds + random.uniform(0, min(1.0, seconds * 0.1))


def equal_jitter_backoff(base: float, cap: float) -> wait_base:
    """Exponential backoff with "equal jitter": half fixed, half random, so workers spread out.

    Attempt ``n`` waits between ``c / 2`` and ``c``, where ``c = min(cap, base * 2 ** (n - 1))``.
    Tenacity has no equal-jitter strategy, so it is the sum of two of its own over the same half
    ceiling: ``wait_exponential`` (the fixed half) and ``wait_random_exponential`` (full jitter over
    the other half). Full jitter alone could retry a struggling server almost at once.
    """
    half_base, half_cap = base / 2, cap / 2
    return wait_exponential(multiplier=half_base, max=half_cap) + wait_random_exponential(
        multiplier=half_base, max=half_cap
    )


class wait_retry_after(wait_base):  # lower case like tenacity's own wait_* strategies
    """Wait as long as a 429's ``Retry-After`` asks; otherwise back off exponentially.

    The server knows when its rate window reopens, so its answer beats any guess. A 429 without a
    usable header waits per ``rate_limited`` (a longer base: retrying a rate limit early only earns
    another 429); every other retryable failure waits per ``fallback``.

    :param rate_limited: wait for a 429 without a usable ``Retry-After``
    :param fallback: wait for 5xx, timeouts, connection resets and invalid JSON
    """

    def __init__(self, *, rate_limited: wait_base, fallback: wait_base) -> None:
        self.rate_limited = rate_limited
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if isinstance(failure, _Retry) and failure.rate_limited:
            delay = retry_after_delay(failure.retry_after)
            return delay if delay is not None else self.rate_limited(retry_state)
        return self.fallback(retry_state)


def split_request_range(start: date, end: date, timespan: str, limit: int = MAX_LIMIT) -> list[tuple[date, date]]:
    """Split ``[start, end]`` into consecutive date windows small enough for one request each.

    Day-based timespans (day/week/month) are capped in day bars, so one request covers 136 years
    at ``limit=50000``. Minute-based ones (minute/hour) are capped in minute bars: a window gets at
    most ``limit // 1440`` calendar days (a whole day of minutes, more than the 04:00-20:00 ET
    that trades), at least one day; pagination covers whatever a day still exceeds. ``from`` and
    ``to`` snap to whole days, so consecutive windows neither overlap nor leave gaps.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if timespan not in MINUTE_BASED:
        return [(start, end)]
    days = max(1, limit // MINUTES_PER_DAY)
    windows = []
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=days - 1))
        windows.append((cursor, last))
        cursor = last + timedelta(days=1)
    return windows


def _as_date(value: date | str, name: str) -> date:
    if isinstance(value, str):
        return date.fromisoformat(value)
    if hasattr(value, "hour"):  # datetime subclasses date; its "date" depends on a time zone
        raise TypeError(f"{name} must be a date (America/New_York), not a datetime: {value!r}")
    return value


class MassiveHook(HttpHook):
    """Interact with the Massive market-data REST API (formerly Polygon.io).

    The connection is an ``http`` connection: ``host`` is the base URL (default
    ``https://api.massive.com``; ``https://api.polygon.io`` works too; a host without a scheme
    gets ``https``) and ``password`` is the API key, e.g.
    ``AIRFLOW_CONN_MASSIVE_DEFAULT='{"conn_type": "http", "host": "https://api.massive.com",
    "password": "..."}'``.

    ``conn_name_attr`` is ``massive_conn_id`` rather than the discord provider's inherited
    ``http_conn_id``: Airflow builds hooks from a connection id with ``Hook(**{conn_name_attr:
    conn_id})``, and the operator's argument follows the ``<service>_conn_id`` convention, so the
    three names agree. ``http_conn_id`` is still set because HttpHook's internals read it.

    :param massive_conn_id: Airflow connection with the base URL and API key
    :param rate_limit: shared request budget such as ``"100/s"`` (paid) or ``"5/min"`` (free);
        ``None`` disables the budget (the pool ``massive_api`` still bounds concurrency)
    :param redis_conn_id: Redis connection holding the shared budget (used only with ``rate_limit``)
    :param rate_burst: requests allowed at once after an idle period
    :param rate_headroom: fraction of ``rate_limit`` left unused to absorb arrival jitter
    :param limit: ``limit`` query parameter (base aggregates per request; max 50000)
    :param max_attempts: attempts per request for retryable failures (429, 5xx, timeouts, resets,
        invalid JSON) before :class:`MassiveUnavailableError`
    :param retry_base_delay: first backoff in seconds after a 5xx/timeout/reset/invalid JSON;
        doubles per attempt, with jitter
    :param rate_limited_base_delay: first backoff in seconds after a 429 without ``Retry-After``
    :param max_retry_delay: cap of one backoff (a ``Retry-After`` is capped at 300 s instead)
    :param timeout: ``requests`` timeout (seconds, or (connect, read)); a connection extra
        ``timeout`` overrides it
    :param pool_size: HTTP connections kept per host; match the operator's thread count
    :param max_pages: pages followed for one request before giving up

    Between attempts the hook waits with its ``sleep`` attribute, which it hands to
    :class:`tenacity.Retrying` (default: tenacity's, i.e. :func:`time.sleep`). Tests replace it,
    as with ``Retrying(sleep=...)``, to record the waits instead of sitting through them.
    """

    conn_name_attr = "massive_conn_id"
    default_conn_name = MASSIVE_CONN_ID
    conn_type = "http"
    hook_name = "Massive"
    default_host = DEFAULT_BASE_URL

    def __init__(
        self,
        massive_conn_id: str = default_conn_name,
        *,
        rate_limit: str | None = None,
        redis_conn_id: str = "tickstock_redis",
        rate_burst: int = 1,
        rate_headroom: float = DEFAULT_HEADROOM,
        limit: int = MAX_LIMIT,
        max_attempts: int = 6,
        retry_base_delay: float = 1.0,
        rate_limited_base_delay: float = 2.0,
        max_retry_delay: float = 60.0,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        pool_size: int = 10,
        max_pages: int = 1000,
    ) -> None:
        super().__init__(method="GET", http_conn_id=massive_conn_id)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.massive_conn_id = massive_conn_id
        self.rate_limit = rate_limit
        self.redis_conn_id = redis_conn_id
        self.rate_burst = rate_burst
        self.rate_headroom = rate_headroom
        self.limit = limit
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.rate_limited_base_delay = rate_limited_base_delay
        self.max_retry_delay = max_retry_delay
        self.timeout = timeout
        self.max_pages = max_pages
        self.keep_alive_adapter = TCPKeepAliveAdapter(
            idle=120, count=20, interval=30, pool_connections=1, pool_maxsize=max(1, pool_size)
        )
        self._api_key: str = ""
        self._session: requests.Session | None = None
        self._budget: RateBudget | None = None
        self._lock = threading.Lock()
        self._requests = 0
        self.sleep: Callable[[float], None] = tenacity_sleep

    # -- connection ------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Shape the connection form (effective only when installed as a provider package)."""
        return {
            "hidden_fields": ["schema", "login", "port"],
            "relabeling": {"host": "Base URL", "password": "API Key"},
            "placeholders": {"host": DEFAULT_BASE_URL},
        }

    def _set_base_url(self, connection: Connection) -> None:
        # HttpHook defaults a scheme-less host to http://; Massive is https-only.
        host = (connection.host or self.default_host).strip().rstrip("/")
        if "://" not in host:
            host = f"{connection.schema or 'https'}://{host}"
        if connection.port:
            host = f"{host}:{connection.port}"
        self.base_url = host
        self._srv_lookup_enabled = False
        self._base_url_initialized = True

    def _configure_session_from_auth(self, session: requests.Session, connection: Connection) -> requests.Session:
        key = connection.password or ""
        if not key:
            raise MassiveAuthError(
                f"Airflow connection {self.massive_conn_id!r} has no Massive API key: "
                "put the key in the connection's password field"
            )
        self._api_key = key
        session.auth = _BearerAuth(key)
        return session

    def _shared_session(self) -> requests.Session:
        """Return the hook's one session (built on first use, then shared by every thread)."""
        with self._lock:
            if self._session is None:
                self._session = self.get_conn()
            return self._session

    def _rate_budget(self) -> RateBudget | None:
        if not self.rate_limit:
            return None
        with self._lock:
            if self._budget is None:
                from airflow.providers.redis.hooks.redis import RedisHook

                from tickstock.rate_budget import RateBudget

                client = RedisHook(redis_conn_id=self.redis_conn_id).get_conn()
                self._budget = RateBudget(
                    client, self.massive_conn_id, self.rate_limit, burst=self.rate_burst, headroom=self.rate_headroom
                )
            return self._budget

    def prepare(self) -> None:
        """Resolve the connection(s), session and rate budget now, in the calling thread.

        Call before handing the hook to a thread pool: connection look-ups then happen once, in
        the task's main thread, and the threads only share the ready session.
        """
        self._shared_session()
        self._rate_budget()

    @property
    def requests_made(self) -> int:
        """HTTP requests this hook has sent (every attempt and page counts)."""
        return self._requests

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- one request with retries ----------------------------------------------------------------

    @staticmethod
    def _error_text(response: requests.Response) -> str:
        try:
            body = decode_json(response.content)
        except ValueError:
            return response.reason or ""
        if isinstance(body, dict):
            return str(body.get("message") or body.get("error") or body.get("status") or response.reason)
        return response.reason or ""

    def _auth_error(self, response: requests.Response, what: str) -> MassiveAuthError:
        detail = self._redact(self._error_text(response))
        if response.status_code == 401:
            fix = f"the API key was rejected: check the password of Airflow connection {self.massive_conn_id!r}"
        else:
            fix = (
                "the API key's plan is not entitled to this data: upgrade the Massive plan or request "
                "a shorter history / another timespan"
            )
        return MassiveAuthError(f"{what}: HTTP {response.status_code} ({detail}): {fix}")

    def _attempt(self, url: str, params: Sequence[tuple[str, Any]], what: str) -> Any:
        """Send one request; return the decoded body, ``None`` for 404, or raise ``_Retry``/an error."""
        session = self._shared_session()
        extra = {
            **self.merged_extra,
            "check_response": False,
            "timeout": self.merged_extra.get("timeout", self.timeout),
        }
        prepared = session.prepare_request(requests.Request("GET", url, params=list(params)))
        budget = self._rate_budget()
        if budget is not None:
            budget.acquire()  # last step before the send: the budget logs the send time
        with self._lock:
            self._requests += 1
        try:
            response = self.run_and_check(session, prepared, extra)
        except requests.Timeout as err:
            raise _Retry(f"timed out ({type(err).__name__})") from err
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
            raise _Retry(f"connection failed ({type(err).__name__})") from err
        status = response.status_code
        if status == 200:
            try:
                return decode_json(response.content)
            except ValueError as err:
                raise _Retry(f"invalid JSON in a 200 response ({err.__class__.__name__}: {err})") from err
        if status in (401, 403):
            raise self._auth_error(response, what)
        if status == 404:
            return None
        if status == 429:
            raise _Retry("rate limited (429)", rate_limited=True, retry_after=response.headers.get("Retry-After"))
        if status >= 500:
            raise _Retry(f"server error {status}")
        raise MassiveRequestError(f"{what}: HTTP {status}: {self._redact(self._error_text(response))}")

    def _retrying(self, what: str, page: int, attempts: int) -> Retrying:
        """Build the tenacity controller of one request.

        One per request because the attempt budget and the log text differ per request. Only
        :class:`_Retry` is retried; anything else (auth, request errors) propagates from the
        attempt that raised it. ``reraise`` hands the last ``_Retry`` back to :meth:`_get_json`,
        which turns it into :class:`MassiveUnavailableError`. No warning is logged after the last
        attempt: tenacity checks ``stop`` before ``before_sleep``.
        """

        def log_attempt(state: RetryCallState) -> None:
            if page == 1:
                self.log.info("Fetching %s (attempt %d/%d)", what, state.attempt_number, attempts)
            else:
                self.log.info("Fetching %s, page %d (attempt %d/%d)", what, page, state.attempt_number, attempts)

        def log_wait(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            problem = self._redact(str(failure))
            self.log.warning("⚠ %s: %s, waiting %.1f s before retrying", what, problem, state.upcoming_sleep)

        return Retrying(
            sleep=self.sleep,
            stop=stop_after_attempt(attempts),
            wait=wait_retry_after(
                rate_limited=equal_jitter_backoff(self.rate_limited_base_delay, self.max_retry_delay),
                fallback=equal_jitter_backoff(self.retry_base_delay, self.max_retry_delay),
            ),
            retry=retry_if_exception_type(_Retry),
            before=log_attempt,
            before_sleep=log_wait,
            reraise=True,
        )

    def _get_json(
        self,
        url: str,
        params: Sequence[tuple[str, Any]],
        *,
        what: str,
        page: int = 1,
        allow_404: bool = False,
        attempts: int | None = None,
    ) -> dict[str, Any] | None:
        """GET ``url`` with bounded retries; return the decoded JSON object (``None`` for an allowed 404)."""
        attempts = attempts or self.max_attempts
        try:
            body = self._retrying(what, page, attempts)(self._attempt, url, params, what)
        except _Retry as last:
            # from None: the message already names the last failure; a chained requests traceback
            # would only lengthen every task log.
            raise MassiveUnavailableError(
                f"{what}: giving up after {attempts} attempts; last: {self._redact(last.problem)}"
            ) from None
        if body is None:
            if allow_404:
                return None
            raise MassiveRequestError(f"{what}: HTTP 404 (not found)")
        if not isinstance(body, dict):
            raise MassiveRequestError(f"{what}: response is a JSON {type(body).__name__}, not an object")
        if str(body.get("status", "OK")).upper() not in ("OK", "DELAYED"):
            detail = body.get("error") or body.get("message") or body.get("status")
            raise MassiveRequestError(f"{what}: API status {body.get('status')!r}: {self._redact(str(detail))}")
        return body

    def _next_page(self, next_url: str) -> tuple[str, list[tuple[str, str]]]:
        """Return the base-URL-relative request for ``next_url``, without any ``apiKey`` parameter."""
        parts = urlsplit(next_url)
        params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "apikey"]
        return self.url_from_endpoint(parts.path), params

    def _paginate(self, url: str, params: list[tuple[str, Any]], what: str) -> list[Any]:
        results: list[Any] = []
        seen: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
        page = 1
        while True:
            body = self._get_json(url, params, what=what, page=page)
            assert body is not None
            chunk = body.get("results")
            if chunk is not None and not isinstance(chunk, list):
                raise MassiveRequestError(f"{what}: 'results' is a {type(chunk).__name__}, not a list")
            results.extend(chunk or ())
            next_url = body.get("next_url")
            if not next_url:
                return results
            url, params = self._next_page(str(next_url))
            cursor = (urlsplit(url).path, tuple(params))
            if cursor in seen:
                raise MassivePaginationError(
                    f"{what}: next_url repeated a cursor on page {page + 1}; stopping instead of looping"
                )
            seen.add(cursor)
            page += 1
            if page > self.max_pages:
                raise MassivePaginationError(f"{what}: more than {self.max_pages} pages; stopping")

    # -- public API ------------------------------------------------------------------------------

    def get_bars(
        self,
        symbol: str,
        timespan: Timeframe | str,
        start: date | str,
        end: date | str,
        *,
        adjusted: bool = True,
        extended_hours: bool = False,
    ) -> ParsedBars:
        """Fetch every bar of ``symbol`` in ``[start, end]`` (America/New_York dates, inclusive).

        Returns valid bars plus the rejected items with reasons (see
        :func:`tickstock.bars.parse_aggregates`); no bars at all is a valid answer. Raises a
        :class:`MassiveError` subclass on any failure, never an empty result in its place.

        :param symbol: ticker (case-sensitive at Massive; upper case)
        :param timespan: hour, day, week or month
        :param start: first date (``from``; Massive snaps it to the period start)
        :param end: last date (``to``; Massive snaps it to the period end)
        :param adjusted: split-adjusted prices
        :param extended_hours: keep hourly bars outside 09:00 ET .. session close
        """
        timeframe = Timeframe(timespan)
        first, last = _as_date(start, "start"), _as_date(end, "end")
        what = f"{symbol} {timeframe.value} bars"
        params = [("adjusted", "true" if adjusted else "false"), ("sort", "asc"), ("limit", self.limit)]
        results: list[Any] = []
        for window_start, window_end in split_request_range(first, last, timeframe.value, self.limit):
            endpoint = (
                f"v2/aggs/ticker/{quote(symbol, safe='')}/range/1/{timeframe.value}/"
                f"{window_start.isoformat()}/{window_end.isoformat()}"
            )
            results.extend(self._paginate(self.url_from_endpoint(endpoint), list(params), what))
        self.log.info("✓ API returned %d %s bars for %s", len(results), timeframe.value, symbol)
        parsed = parse_aggregates(symbol, timeframe, results, extended_hours=extended_hours)
        if parsed.rejected or parsed.outside_session:
            self.log.info(
                "%s: %d valid, %d invalid, %d outside the regular session",
                what,
                len(parsed.bars),
                len(parsed.rejected),
                parsed.outside_session,
            )
        return parsed

    def get_ticker_details(self, symbol: str, *, as_of: date | None = None) -> dict[str, Any] | None:
        """Return the ticker's reference data (``results`` of /v3/reference/tickers), ``None`` if unknown.

        :param symbol: ticker
        :param as_of: point-in-time date; default the most recent
        """
        params = [("date", as_of.isoformat())] if as_of else []
        url = self.url_from_endpoint(f"v3/reference/tickers/{quote(symbol, safe='')}")
        body = self._get_json(url, params, what=f"{symbol} ticker details", allow_404=True)
        if body is None:
            self.log.info("⚠ Symbol %s not found (404)", symbol)
            return None
        results = body.get("results")
        return results if isinstance(results, dict) else None

    def get_grouped_daily(
        self,
        day: date | str,
        *,
        adjusted: bool = True,
        include_otc: bool = False,
        symbols: Collection[str] | None = None,
    ) -> ParsedBars:
        """Fetch the day bars of every US stock for one date (one request, no pagination).

        Bars are keyed like the range endpoint's (the 16:00 ET stamp becomes that date's ET
        midnight); a weekend or holiday returns no bars.

        :param symbols: parse only these tickers' items (``None`` = all; see ``parse_grouped_daily``)
        """
        day = _as_date(day, "day")
        url = self.url_from_endpoint(f"v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}")
        params = [
            ("adjusted", "true" if adjusted else "false"),
            ("include_otc", "true" if include_otc else "false"),
        ]
        body = self._get_json(url, params, what=f"grouped daily bars for {day}")
        assert body is not None
        parsed = parse_grouped_daily(body.get("results"), day=day, symbols=symbols)
        self.log.info("✓ API returned %d day bars for %s (grouped)", len(parsed.bars), day)
        return parsed

    def get_splits(self, start: date | str, end: date | str, *, limit: int = SPLITS_PAGE_LIMIT) -> list[Split]:
        """Every split (stock dividends included) executed from ``start`` through ``end``, all pages.

        ``/stocks/v1/splits`` on the same auth, retry, rate-budget and ``next_url`` path as bars:
        an error or a malformed row raises, it never reads as "no splits".
        """
        first, last = _as_date(start, "start"), _as_date(end, "end")
        what = f"splits executed {first}..{last}"
        params = [
            ("execution_date.gte", first.isoformat()),
            ("execution_date.lte", last.isoformat()),
            ("sort", "execution_date.asc"),
            ("limit", limit),
        ]
        rows = self._paginate(self.url_from_endpoint("stocks/v1/splits"), params, what)
        try:
            splits = parse_splits(rows)
        except InvalidSplit as exc:
            raise MassiveRequestError(f"{what}: {exc}") from None
        self.log.info("✓ API returned %d splits executed %s..%s", len(splits), first, last)
        return splits

    def test_connection(self) -> tuple[bool, str]:
        """Check base URL and API key with one cheap request, without retries.

        Ticker details of ``SPY`` exist on every plan and in the simulator; a 404 still proves the
        key was accepted (authentication is checked before the lookup).
        """
        try:
            url = self.url_from_endpoint("v3/reference/tickers/SPY")
            self._get_json(url, [], what="connection test (SPY ticker details)", allow_404=True, attempts=1)
        except Exception as err:
            return False, self._redact(str(err))
        return True, f"Connected to {self.base_url}; the API key was accepted"
