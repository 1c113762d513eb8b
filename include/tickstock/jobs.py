"""TickStockAppV2 job messages turned into validated ``universe_load`` runs.

A job message is the JSON TickStockAppV2 publishes on ``tickstock.jobs.data_load``::

    {"job_id": "universe_load_1719", "job_type": "csv_universe_load",
     "symbols": ["SCHG", "VUG"], "years": 0.005479, "source": "admin_ui"}

:func:`parse_job_message` checks everything a message can get wrong *before* a run exists
(envelope, ``job_type``, the ``csv_file`` name) and hands the load fields to
:func:`tickstock.load_request.parse_load_request`, so a message is held to exactly the rules of
the Airflow trigger form. The result carries the conf for ``universe_load`` and a run id derived
from ``job_id`` alone: a message delivered twice maps to the same run id, and Airflow refuses a
second run with an existing id, which is what makes redelivery harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tickstock.intake import StreamEntry
from tickstock.job_status import BEFORE_PROCESSING, JobState
from tickstock.load_request import InvalidRequest, LoadRequest, normalise_symbols, parse_load_request

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tickstock.intake import JobStream
    from tickstock.job_status import JobStatusStore

log = logging.getLogger(__name__)

#: Job types that mean "load bars for these symbols"; anything else is rejected, not guessed at.
JOB_TYPES = ("csv_universe_load", "universe_load")
#: Message fields passed through to the load; other fields (timestamps, user names) are ignored.
LOAD_FIELDS = (
    "symbols",
    "days",
    "years",
    "timeframes",
    "hourly_days",
    "hourly_session",
    "adjusted",
    "as_of",
    "source",
    "batch_size",
)
MAX_JOB_ID_LENGTH = 200
RUN_ID_PREFIX = "redis__"
#: Prefix of run ids whose job_id had to be rewritten; disjoint from RUN_ID_PREFIX + any job_id.
HASHED_RUN_ID_PREFIX = "redis~"
# Airflow's default [core] allowed_run_id_pattern and the run_id column's length.
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]")
MAX_RUN_ID_LENGTH = 250
_JOB_ID_IN_TEXT = re.compile(r'"job_id"\s*:\s*"((?:[^"\\]|\\.){1,200})"')
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class InvalidJob(ValueError):
    """A job message that must not start a load.

    :param field: the offending field (``message`` when the envelope itself is broken)
    :param message: what is wrong, in words TickStockAppV2 can show to a user
    :param job_id: the job's id when it could be read, so the rejection can be reported
    """

    def __init__(self, field: str, message: str, job_id: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.job_id = job_id


@dataclass(frozen=True)
class LoadJob:
    """A job message that passed validation.

    :param job_id: TickStockAppV2's job id
    :param job_type: the message's ``job_type``
    :param run_id: the ``universe_load`` run id, a pure function of ``job_id``
    :param conf: the ``universe_load`` conf (JSON-serialisable, only keys its Params declare)
    :param request: the validated request, e.g. for the symbol count
    """

    job_id: str
    job_type: str
    run_id: str
    conf: dict[str, Any]
    request: LoadRequest


def run_id_for(job_id: str) -> str:
    """Return the ``universe_load`` run id of ``job_id``.

    A job id that Airflow accepts as it is becomes ``redis__<job_id>``. Any other id is
    sanitised and gets a hash of the original under a different prefix, so two job ids never
    share a run id (``a b`` and ``a_b`` differ) and a rewritten id can never equal a kept one.
    """
    plain = f"{RUN_ID_PREFIX}{job_id}"
    if not _RUN_ID_UNSAFE.search(job_id) and len(plain) <= MAX_RUN_ID_LENGTH:
        return plain
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:16]
    return f"{HASHED_RUN_ID_PREFIX}{digest}__{_RUN_ID_UNSAFE.sub('_', job_id)[:200]}"


def recover_job_id(text: str) -> str | None:
    """Find the ``job_id`` in a message that is not valid JSON, so its producer can be told.

    TickStockAppV2 polls the status of the id it sent; without this a truncated message would
    leave that job "pending" forever.
    """
    match = _JOB_ID_IN_TEXT.search(text)
    if not match:
        return None
    try:
        job_id = json.loads(f'"{match.group(1)}"')
    except json.JSONDecodeError:
        return None
    return job_id if _valid_job_id(job_id) else None


def _valid_job_id(job_id: str) -> bool:
    return bool(job_id.strip()) and len(job_id) <= MAX_JOB_ID_LENGTH and not _CONTROL_CHARS.search(job_id)


def _job_id(message: dict[str, Any]) -> str:
    raw = message.get("job_id")
    if raw is None:
        raise InvalidJob("job_id", "missing")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidJob("job_id", f"expected text, got {type(raw).__name__}")
    job_id = str(raw)
    if not _valid_job_id(job_id):
        raise InvalidJob("job_id", f"must be 1..{MAX_JOB_ID_LENGTH} printable characters, got {job_id[:40]!r}")
    return job_id


def universe_from_csv_file(csv_file: Any) -> str:
    """Map a message's ``csv_file`` to a universe name: a bare file name, never a path.

    ``core_etfs.csv`` and ``core_etfs`` both mean the universe ``core_etfs``; ``../x.csv``,
    ``/data/x.csv`` or ``sub/x.csv`` are rejected before any file is looked at.
    """
    if not isinstance(csv_file, str) or not csv_file.strip():
        raise InvalidJob("csv_file", f"expected a CSV file name, got {csv_file!r}")
    name = csv_file.strip()
    if "/" in name or "\\" in name or name.startswith(".") or ":" in name:
        raise InvalidJob("csv_file", f"{csv_file!r} is not a bare file name inside the universes folder (no paths)")
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() != "csv":
        raise InvalidJob("csv_file", f"{csv_file!r} is not a .csv file")
    return stem if dot else name


def parse_job_message(raw: str | bytes) -> LoadJob:
    """Validate one job message and return its ``universe_load`` run.

    :raises InvalidJob: naming the first problem found; ``job_id`` is set whenever it could be
        read, so the caller can mark that job failed
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJob("message", "not UTF-8 text") from None
    try:
        message = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidJob("message", f"not valid JSON ({exc.msg} at character {exc.pos})", recover_job_id(raw)) from None
    if not isinstance(message, dict):
        raise InvalidJob("message", f"expected a JSON object, got {type(message).__name__}")

    job_id = _job_id(message)
    job_type = message.get("job_type")
    if job_type is None:
        raise InvalidJob("job_type", f"missing; expected one of {', '.join(JOB_TYPES)}", job_id)
    if job_type not in JOB_TYPES:
        raise InvalidJob("job_type", f"unknown job type {job_type!r}; expected one of {', '.join(JOB_TYPES)}", job_id)

    params = {name: message[name] for name in LOAD_FIELDS if name in message}
    params["job_id"] = job_id
    universe_field = None
    if message.get("csv_file") not in (None, ""):
        if message.get("universe") not in (None, ""):
            raise InvalidJob("csv_file", "give csv_file or universe, not both", job_id)
        try:
            params["universe"] = universe_from_csv_file(message["csv_file"])
        except InvalidJob as exc:
            exc.job_id = job_id
            raise
        universe_field = "csv_file"
    elif message.get("universe") not in (None, ""):
        params["universe"] = message["universe"]
        universe_field = "universe"

    try:
        request = parse_load_request(params)
        explicit = list(dict.fromkeys(normalise_symbols(params.get("symbols") or [])))
    except InvalidRequest as exc:
        field = universe_field if exc.field == "universe" and universe_field else exc.field
        raise InvalidJob(field, exc.message, job_id) from None
    except (TypeError, ValueError) as exc:  # a shape parse_load_request did not anticipate
        raise InvalidJob("message", f"unreadable load fields ({exc})", job_id) from None

    return LoadJob(
        job_id=job_id,
        job_type=job_type,
        run_id=run_id_for(job_id),
        conf=_conf(request, explicit),
        request=request,
    )


def _conf(request: LoadRequest, explicit_symbols: list[str]) -> dict[str, Any]:
    """Build ``universe_load``'s conf: explicit symbols and the universe stay separate.

    Passing the universe by name (rather than its expanded symbols) lets the run show what was
    asked for; ``universe_load`` expands it with the same :func:`parse_load_request`.
    """
    conf: dict[str, Any] = {
        "symbols": explicit_symbols,
        "days": request.days,
        "timeframes": [tf.value for tf in request.timeframes],
        "hourly_days": request.hourly_days,
        "hourly_session": request.hourly_session,
        "adjusted": request.adjusted,
        "job_id": request.job_id,
    }
    if request.batch_size is not None:  # otherwise the DAG sizes batches to its workers
        conf["batch_size"] = request.batch_size
    if request.universe:
        conf["universe"] = request.universe.removesuffix(".csv")
    if request.as_of:
        conf["as_of"] = request.as_of.isoformat()
    if request.source:
        conf["source"] = request.source
    return conf


# --------------------------------------------------------------------------------------------
# The listener's two steps: claim → (Airflow creates the runs) → settle
# --------------------------------------------------------------------------------------------

#: Statuses a rejected message may replace with ``failed``: none yet, or ``failed``. Any other
#: means a valid copy of the job is queued, running or done, which a broken copy must not undo.
_REJECTABLE_STATES: frozenset[JobState | None] = frozenset({None, JobState.FAILED})
#: Claims of one job whose run Airflow still did not create before it is dead-lettered.
MAX_DELIVERIES = 5


def reject_entry(stream: JobStream, store: JobStatusStore, entry: StreamEntry, error: InvalidJob) -> None:
    """Report a rejected message as a failed job and move it to the dead-letter stream.

    The status is written first: if the process dies before the dead-letter move, the entry is
    redelivered and rejected again, which rewrites the same status. The write is conditional in
    the store, not after a read here: the job's run may start between a read and the write.
    """
    reason = f"Rejected job message: {error}"
    log.warning("entry %s rejected (job_id=%s): %s", entry.entry_id, error.job_id, error)
    if error.job_id:
        status = store.update(
            error.job_id,
            status=JobState.FAILED,
            message=reason,
            errors=[reason],
            if_status_in=_REJECTABLE_STATES,
        )
        if not status.applied:
            reason += f" (job {error.job_id} is already {status['status']}; status left unchanged)"
    stream.dead_letter(entry, reason=reason, job_id=error.job_id)


def claim_jobs(stream: JobStream, store: JobStatusStore, *, limit: int) -> list[dict[str, Any]]:
    """Claim up to ``limit`` entries, reject the invalid ones and plan one run per job id.

    :returns: JSON-serialisable plans (``run_id``, ``job_id``, ``conf``, ``entry_ids``, ...);
        several entries of the same job id share one plan and are acknowledged together
    """
    plans: dict[str, dict[str, Any]] = {}
    for entry in stream.claim(limit):
        if entry.data is None:
            stream.dead_letter(entry, reason="entry has no data field", job_id=None)
            continue
        try:
            job = parse_job_message(entry.data)
        except InvalidJob as exc:
            reject_entry(stream, store, entry, exc)
            continue
        plan = plans.setdefault(
            job.run_id,
            {
                "run_id": job.run_id,
                "job_id": job.job_id,
                "job_type": job.job_type,
                "conf": job.conf,
                "total_symbols": len(job.request.symbols),
                "entry_ids": [],
                "deliveries": 0,
            },
        )
        plan["entry_ids"].append(entry.entry_id)
        plan["deliveries"] = max(plan["deliveries"], entry.deliveries)
    log.info("claimed %d job(s) for universe_load", len(plans))
    return list(plans.values())


def settle_jobs(
    stream: JobStream,
    store: JobStatusStore,
    plans: Sequence[Mapping[str, Any]],
    run_state: Callable[[str], str | None],
    *,
    max_deliveries: int = MAX_DELIVERIES,
) -> dict[str, int]:
    """Acknowledge every planned job whose run exists; report it queued if it has not started.

    ``queued`` is written only while the job has no later status: the run can start between
    ``run_state`` and the write, and its first task then reports ``processing`` itself, which a
    late ``queued`` must not replace (the store checks and writes in one script).

    :param run_state: ``run_id`` → ``None`` when no such run exists, ``"queued"`` while it has not
        started, anything else once it has (then its own tasks own the status)
    :returns: counts of ``acknowledged``, ``left_pending`` and ``dead_lettered`` jobs
    """
    counts = {"acknowledged": 0, "left_pending": 0, "dead_lettered": 0}
    for plan in plans:
        run_id, job_id = plan["run_id"], plan["job_id"]
        state = run_state(run_id)
        if state is None:
            if plan["deliveries"] >= max_deliveries:
                reason = (
                    f"Airflow did not create universe_load run {run_id} after {plan['deliveries']} "
                    "attempts; see the listener's trigger_universe_load logs"
                )
                store.update(job_id, status=JobState.FAILED, message=reason, errors=[reason])
                for entry_id in plan["entry_ids"]:
                    stream.dead_letter(
                        StreamEntry(entry_id, json.dumps(plan["conf"]), plan["deliveries"]),
                        reason=reason,
                        job_id=job_id,
                    )
                counts["dead_lettered"] += 1
            else:
                # Not acknowledged: the next listener run claims it again and retries.
                log.warning("run %s does not exist; job %s stays pending", run_id, job_id)
                counts["left_pending"] += 1
            continue
        if state == "queued":
            store.update(
                job_id,
                status=JobState.QUEUED,
                progress=0,
                total_symbols=plan["total_symbols"],
                message=f"Queued as Airflow run {run_id}",
                fields={"run_id": run_id, "job_type": plan["job_type"], **_source(plan)},
                if_status_in=BEFORE_PROCESSING,
            )
        stream.ack(plan["entry_ids"])
        counts["acknowledged"] += 1
    log.info("settled jobs: %s", counts)
    return counts


def _source(plan: Mapping[str, Any]) -> dict[str, str]:
    source = plan["conf"].get("source")
    return {"source": source} if source else {}
