"""Job status for TickStockAppV2, kept in Redis.

TickStockAppV2 polls the hash ``tickstock.jobs.status:{job_id}`` and listens on the channel
``tickstock.jobs.status``. Many mapped Airflow tasks report into the same job at once, so every
change is one Lua script: counters are incremented server-side, the ``results`` JSON is rebuilt
from them, the TTL is renewed and the new state is PUBLISHed, all atomically. No task ever
read-modify-writes the hash from Python, so no update is lost.

Hash fields: ``job_id``, ``status``, ``progress`` (0-100), ``total_symbols``, ``message``,
``results`` (JSON: symbols_loaded, symbols_failed, hourly_bars, daily_bars, weekly_bars,
monthly_bars, errors[]), ``updated_at`` (ISO-8601 UTC), plus ``run_id`` / ``source`` /
``job_type`` when known. Internal counters are kept under ``r:<name>`` and ``batches_*``.

A job moves ``queued`` → ``processing`` → ``completed`` / ``completed_with_errors`` /
``failed``. Writers that act on a view that may be stale by the time they write (the listener
reports ``queued`` after asking Airflow whether the run has started, and the run may start in
between) pass ``if_status_in`` to :meth:`JobStatusStore.update`: the check and the write are then
the same Lua script, so a late ``queued`` can never replace ``processing``. The run's own tasks
write unconditionally, because a run cleared in Airflow really does start again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    import redis

log = logging.getLogger(__name__)

STATUS_KEY_PREFIX = "tickstock.jobs.status:"
STATUS_CHANNEL = "tickstock.jobs.status"
DEFAULT_TTL = timedelta(days=7)
RESULT_COUNTERS = (
    "symbols_loaded",
    "symbols_failed",
    "hourly_bars",
    "daily_bars",
    "weekly_bars",
    "monthly_bars",
    "hourly_requests",
    "daily_requests",
    "weekly_requests",
    "monthly_requests",
    "grouped_daily_requests",
    "ticker_details_requests",
)
MAX_ERRORS_KEPT = 200


class JobState(StrEnum):
    """The ``status`` values TickStockAppV2 understands."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"


#: Statuses a ``queued`` report may replace: none yet, or ``queued`` itself. Once the run's first
#: task has written ``processing`` (or the run has already finished, ``failed`` included), a
#: ``queued`` would move the job backwards and, for a finished run, leave it "queued" for good.
BEFORE_PROCESSING: frozenset[JobState | None] = frozenset({None, JobState.QUEUED})


# KEYS: status hash, error list. ARGV: fields JSON, counter increments JSON, counter values JSON,
# new errors JSON, batches-done increment, ttl seconds, channel, now (ISO), counter names JSON,
# max errors kept, key prefix, replace-errors flag, statuses the write may replace (JSON list,
# "" = no status yet; an empty ARGV means unconditional), the splits list JSON ("" = unchanged).
# Returns {1, new public state} after a write, or {0, current public state} when the current
# status is not one of the allowed ones: then nothing is written, renewed or published.
_UPDATE_LUA = """
local key, errkey = KEYS[1], KEYS[2]
local function public_state()
  local public = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local name = all[i]
    local value = all[i + 1]
    if name == 'results' or name == 'progress' or name == 'total_symbols' then
      public[#public + 1] = cjson.encode(name) .. ':' .. value  -- already JSON / a number
    elseif string.sub(name, 1, 2) ~= 'r:' and string.sub(name, 1, 8) ~= 'batches_' then
      public[#public + 1] = cjson.encode(name) .. ':' .. cjson.encode(value)
    end
  end
  return '{' .. table.concat(public, ',') .. '}'
end
if ARGV[13] ~= '' then
  local current = redis.call('HGET', key, 'status') or ''
  local allowed = false
  for _, status in ipairs(cjson.decode(ARGV[13])) do
    if status == current then allowed = true end
  end
  if not allowed then return {0, public_state()} end
end
local fields = cjson.decode(ARGV[1])
local incr = cjson.decode(ARGV[2])
local set = cjson.decode(ARGV[3])
local errors = cjson.decode(ARGV[4])
local batches = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
for name, value in pairs(fields) do redis.call('HSET', key, name, tostring(value)) end
for name, value in pairs(incr) do redis.call('HINCRBY', key, 'r:' .. name, value) end
for name, value in pairs(set) do redis.call('HSET', key, 'r:' .. name, value) end
if ARGV[14] ~= '' then redis.call('HSET', key, 'r:splits', ARGV[14]) end
if ARGV[12] == '1' then redis.call('DEL', errkey) end
for _, err in ipairs(errors) do redis.call('RPUSH', errkey, err) end
redis.call('LTRIM', errkey, 0, tonumber(ARGV[10]) - 1)
if batches > 0 then
  local done = redis.call('HINCRBY', key, 'batches_done', batches)
  local total = tonumber(redis.call('HGET', key, 'batches_total') or '0')
  if total > 0 and fields['progress'] == nil then
    redis.call('HSET', key, 'progress', math.min(99, math.floor(100 * done / total)))
  end
end
local parts = {}
for _, name in ipairs(cjson.decode(ARGV[9])) do
  parts[#parts + 1] = cjson.encode(name) .. ':' .. (redis.call('HGET', key, 'r:' .. name) or '0')
end
local splits = redis.call('HGET', key, 'r:splits')
if splits then parts[#parts + 1] = '"splits":' .. splits end  -- already JSON
local errs = {}
for _, err in ipairs(redis.call('LRANGE', errkey, 0, -1)) do errs[#errs + 1] = cjson.encode(err) end
parts[#parts + 1] = '"errors":[' .. table.concat(errs, ',') .. ']'
redis.call('HSET', key, 'results', '{' .. table.concat(parts, ',') .. '}', 'updated_at', ARGV[8])
redis.call('HSETNX', key, 'job_id', string.sub(key, string.len(ARGV[11]) + 1))
redis.call('EXPIRE', key, ttl)
redis.call('EXPIRE', errkey, ttl)
local payload = public_state()
redis.call('PUBLISH', ARGV[7], payload)
return {1, payload}
"""


def status_key(job_id: str) -> str:
    """Return the Redis hash key of ``job_id``'s status."""
    return f"{STATUS_KEY_PREFIX}{job_id}"


def _decode(payload: Mapping[str, str]) -> dict[str, Any]:
    state: dict[str, Any] = dict(payload)
    for name in ("progress", "total_symbols"):
        if name in state:
            state[name] = int(state[name])
    if "results" in state:
        state["results"] = json.loads(state["results"])
    return state


class JobStatus(dict[str, Any]):
    """A job's public state as :meth:`JobStatusStore.update` left it, and whether it wrote.

    Still the plain dict callers compare, log and serialise; ``applied`` is an attribute rather
    than a key so the state stays exactly what TickStockAppV2 sees. It comes from the same Lua
    script as the write: asking Redis again afterwards could already see the next writer.
    """

    def __init__(self, state: Mapping[str, Any], *, applied: bool) -> None:
        super().__init__(state)
        #: ``False`` when an ``if_status_in`` condition refused the write
        self.applied = applied


class JobStatusStore:
    """Read and atomically update job statuses in Redis.

    :param client: a Redis client (``decode_responses`` may be on or off)
    :param ttl: how long a status is kept after its last update (7 days)
    """

    def __init__(self, client: redis.Redis, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self._client = client
        self._ttl = ttl
        self._script = client.register_script(_UPDATE_LUA)

    def update(
        self,
        job_id: str,
        *,
        status: JobState | str | None = None,
        progress: int | None = None,
        message: str | None = None,
        total_symbols: int | None = None,
        batches_total: int | None = None,
        fields: Mapping[str, str] | None = None,
        increments: Mapping[str, int] | None = None,
        results: Mapping[str, int] | None = None,
        errors: Sequence[str] = (),
        replace_errors: bool = False,
        splits: Sequence[Mapping[str, Any]] | None = None,
        batches_done: int = 0,
        if_status_in: Collection[JobState | str | None] | None = None,
    ) -> JobStatus:
        """Apply one change atomically, publish it, and return the job's new public state.

        The returned :class:`JobStatus` is a dict; its ``applied`` attribute is false only when
        ``if_status_in`` refused the change.

        :param increments: result counters to add to (e.g. ``{"daily_bars": 504}``)
        :param results: result counters to set to absolute values
        :param errors: messages appended to ``results.errors``
        :param replace_errors: replace the error list instead (the final summary knows them all)
        :param splits: ``results.splits``, the splits a run saw (symbol, date, ratio, rows rewritten)
        :param batches_done: finished mapped batches; moves ``progress`` towards 99 until a
            final update sets it to 100
        :param if_status_in: apply the change only if the current status is one of these
            (``None``: the job has no status yet), checked inside the same script as the write,
            e.g. :data:`BEFORE_PROCESSING` for a ``queued`` report. Otherwise nothing is written,
            renewed or published (subscribers never see a status move backwards) and the current
            state is returned with ``applied`` false (an empty one for an unknown job).
        """
        if not job_id:
            raise ValueError("job_id is required for a job status")
        for name in (*(increments or {}), *(results or {})):
            if name not in RESULT_COUNTERS:
                raise ValueError(f"unknown result counter {name!r}; expected one of {', '.join(RESULT_COUNTERS)}")
        condition = ""
        if if_status_in is not None:
            if not if_status_in:
                raise ValueError("if_status_in is empty: no write could ever apply")
            condition = json.dumps(sorted("" if s is None else JobState(s).value for s in if_status_in))
        patch: dict[str, str | int] = dict(fields or {})
        if status is not None:
            patch["status"] = JobState(status).value
        if progress is not None:
            patch["progress"] = max(0, min(100, progress))
        if message is not None:
            patch["message"] = message
        if total_symbols is not None:
            patch["total_symbols"] = total_symbols
        if batches_total is not None:
            patch["batches_total"] = batches_total
        applied, payload = self._script(
            keys=[status_key(job_id), f"{status_key(job_id)}:errors"],
            args=[
                json.dumps(patch),
                json.dumps(dict(increments or {})),
                json.dumps(dict(results or {})),
                json.dumps(list(errors)),
                batches_done,
                int(self._ttl.total_seconds()),
                STATUS_CHANNEL,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
                json.dumps(list(RESULT_COUNTERS)),
                MAX_ERRORS_KEPT,
                STATUS_KEY_PREFIX,
                "1" if replace_errors else "0",
                condition,
                "" if splits is None else json.dumps(list(splits)),
            ],
        )
        if isinstance(payload, bytes):
            payload = payload.decode()
        state = JobStatus(json.loads(payload), applied=bool(applied))
        if not state.applied:
            log.info(
                "job %s: update to status %s refused: the job is already %s (allowed: %s)",
                job_id,
                patch.get("status", "(unchanged)"),
                state.get("status", "without a status"),
                condition,
            )
        return state

    def start(
        self,
        job_id: str,
        *,
        total_symbols: int,
        batches_total: int,
        message: str,
        fields: Mapping[str, str] | None = None,
    ) -> JobStatus:
        """Report a run's start: ``processing`` at 0 %, with this run's counters from zero.

        The same job id is started again when a run is cleared in Airflow or retried from the
        planner; without the reset, ``batches_done`` and the bar counters of the previous run
        would carry over (progress at 99 % from the first batch, bar counts doubled until the
        final summary replaces them).
        """
        return self.update(
            job_id,
            status=JobState.PROCESSING,
            progress=0,
            total_symbols=total_symbols,
            batches_total=batches_total,
            message=message,
            fields={**(fields or {}), "batches_done": "0"},
            results=dict.fromkeys(RESULT_COUNTERS, 0),
            replace_errors=True,
        )

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the job's public state, or ``None`` when it is unknown or expired."""
        raw = self._client.hgetall(status_key(job_id))
        if not raw:
            return None
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        public = {k: v for k, v in text.items() if not k.startswith(("r:", "batches_"))}
        return _decode(public)
