from __future__ import annotations

import json
import re

import pytest

from tickstock.intake import DEAD_LETTER_STREAM, STREAM, JobStream, submit_job
from tickstock.job_status import JobState, JobStatusStore
from tickstock.jobs import (
    HASHED_RUN_ID_PREFIX,
    InvalidJob,
    claim_jobs,
    parse_job_message,
    recover_job_id,
    run_id_for,
    settle_jobs,
)

AIRFLOW_RUN_ID = re.compile(r"^[A-Za-z0-9_.~:+-]+$")


def message(**fields: object) -> str:
    base = {"job_id": "job-1", "job_type": "csv_universe_load", "symbols": ["SCHG", "VUG"], "years": 0.005479}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


class TestParseJobMessage:
    def test_tickstock_message_becomes_universe_load_conf(self):
        job = parse_job_message(message(symbols=["schg", "VUG", "schg"], source="admin_ui"))
        assert job.job_id == "job-1"
        assert job.run_id == "redis__job-1"
        assert job.conf == {
            "symbols": ["SCHG", "VUG"],
            "days": 2,  # 0.005479 years
            "timeframes": ["hour", "day", "week", "month"],
            "hourly_days": 2,
            "hourly_session": "regular",
            "adjusted": True,
            "job_id": "job-1",
            "source": "admin_ui",
        }
        json.dumps(job.conf)  # it travels through XCom and the REST API
        # a batch size is passed on only when the message sets one (else the DAG sizes batches)
        assert parse_job_message(message(batch_size=120)).conf["batch_size"] == 120

    def test_csv_file_maps_to_a_universe_name(self):
        job = parse_job_message(message(symbols=None, csv_file="core_etfs.csv", days=30, years=None))
        assert job.conf["universe"] == "core_etfs"
        assert job.conf["symbols"] == []
        assert job.conf["days"] == 30
        assert "SPY" in job.request.symbols  # expanded from the CSV during validation

    def test_optional_load_fields_pass_through_and_unknown_fields_are_ignored(self):
        job = parse_job_message(
            message(timeframes=["day"], as_of="2025-06-02", hourly_days=0, requested_by="ops", bytes=3)
        )
        assert job.conf["timeframes"] == ["day"]
        assert job.conf["as_of"] == "2025-06-02"
        assert job.conf["hourly_days"] == 0
        assert "requested_by" not in job.conf

    @pytest.mark.parametrize(
        ("raw", "field", "fragment"),
        [
            ('{"job_id": "j", "symbols": [', "message", "not valid JSON"),
            ("[1, 2]", "message", "JSON object"),
            (message(job_id=None), "job_id", "missing"),
            (message(job_id=""), "job_id", "printable"),
            (message(job_id=["x"]), "job_id", "expected text"),
            (message(job_type=None), "job_type", "missing"),
            (message(job_type="delete_everything"), "job_type", "unknown job type"),
            (message(symbols=[]), "symbols", "no symbols"),
            (message(symbols=None), "symbols", "no symbols"),
            (message(symbols=["AAPL", "AA PL"]), "symbols", "invalid ticker"),
            (message(symbols=["$SPY"]), "symbols", "invalid ticker"),
            (message(symbols=[42]), "symbols", "invalid ticker"),
            (message(symbols={"a": 1}), "symbols", "expected a list"),
            (message(years=None, days=0), "days", "out of range"),
            (message(years=None, days=7301), "days", "out of range"),
            (message(years=None, days=2.5), "days", "whole number"),
            (message(years=-1), "years", "positive"),
            (message(years=25), "years", "more than 7300 days"),
            (message(years="2"), "years", "positive"),
            (message(days=2), "days", "not both"),
            (message(symbols=None, csv_file="../secrets.csv"), "csv_file", "no paths"),
            (message(symbols=None, csv_file="/etc/passwd"), "csv_file", "no paths"),
            (message(symbols=None, csv_file="sub/core_etfs.csv"), "csv_file", "no paths"),
            (message(symbols=None, csv_file="core_etfs.txt"), "csv_file", "not a .csv"),
            (message(symbols=None, csv_file="nope.csv"), "csv_file", "unknown universe"),
            (message(symbols=None, csv_file=5), "csv_file", "expected a CSV file name"),
            (message(timeframes=["2h"]), "timeframes", "unknown timeframe"),
            (message(hourly_session="overnight"), "hourly_session", "not one of"),
            (message(adjusted="yes"), "adjusted", "true or false"),
            (message(as_of="yesterday"), "as_of", "not a date"),
            (message(batch_size=0), "batch_size", "out of range"),
        ],
    )
    def test_invalid_messages_name_the_problem(self, raw, field, fragment):
        with pytest.raises(InvalidJob) as info:
            parse_job_message(raw)
        assert info.value.field == field
        assert fragment in info.value.message

    def test_job_id_is_kept_for_reporting_when_readable(self):
        with pytest.raises(InvalidJob) as info:
            parse_job_message(message(job_id="keep-me", symbols=[]))
        assert info.value.job_id == "keep-me"
        with pytest.raises(InvalidJob) as info:
            parse_job_message('{"job_id": "trunc-1", "job_type": "csv_universe_load", "symb')
        assert info.value.job_id == "trunc-1"

    def test_not_utf8(self):
        with pytest.raises(InvalidJob, match="UTF-8"):
            parse_job_message(b"\xff\xfe{")


class TestRunIds:
    def test_plain_job_ids_are_kept(self):
        assert run_id_for("universe_load_1719.5") == "redis__universe_load_1719.5"

    def test_rewritten_ids_are_valid_and_collision_free(self):
        ids = ["a b", "a_b", "a/b", "a\u00e9b", "x" * 300, "x" * 301, "redis~abc"]
        run_ids = [run_id_for(job_id) for job_id in ids]
        assert len(set(run_ids)) == len(ids)
        for job_id, run_id in zip(ids, run_ids, strict=True):
            assert AIRFLOW_RUN_ID.match(run_id), run_id
            assert len(run_id) <= 250
            assert run_id == run_id_for(job_id)  # deterministic
        assert run_ids[1] == "redis__a_b"
        assert run_ids[0].startswith(HASHED_RUN_ID_PREFIX)

    def test_recover_job_id(self):
        assert recover_job_id('{"x": 1, "job_id" : "j\\"7", ') == 'j"7'
        assert recover_job_id("garbage") is None


@pytest.mark.integration
class TestClaimAndSettle:
    def test_invalid_entries_fail_their_job_and_are_dead_lettered(self, redis_client):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        submit_job(redis_client, message(job_id="bad", symbols=["$$$"]))
        submit_job(redis_client, "not json at all")
        assert claim_jobs(stream, store, limit=10) == []
        status = store.get("bad")
        assert status["status"] == "failed"
        assert "symbols: invalid ticker(s) '$$$'" in status["message"]
        assert status["results"]["errors"] == [status["message"]]
        dead = redis_client.xrange(DEAD_LETTER_STREAM)
        assert [entry["job_id"] for _id, entry in dead] == ["bad", ""]
        assert "not valid JSON" in dead[1][1]["reason"]
        assert stream.pending_count() == 0
        assert redis_client.xlen(STREAM) == 0

    def test_broken_copy_of_a_live_job_does_not_mark_it_failed(self, redis_client):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        store.update("live", status="processing")
        submit_job(redis_client, message(job_id="live", days=0, years=None))
        claim_jobs(stream, store, limit=10)
        assert store.get("live")["status"] == "processing"
        assert "status left unchanged" in redis_client.xrange(DEAD_LETTER_STREAM)[0][1]["reason"]

    def test_one_plan_per_job_id_and_ack_only_when_the_run_exists(self, redis_client):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        for job_id in ("a", "b", "a"):
            submit_job(redis_client, message(job_id=job_id))
        plans = claim_jobs(stream, store, limit=10)
        assert [p["job_id"] for p in plans] == ["a", "b"]
        assert len(plans[0]["entry_ids"]) == 2
        assert stream.pending_count() == 3

        runs = {"redis__a": "queued"}
        counts = settle_jobs(stream, store, plans, runs.get)
        assert counts == {"acknowledged": 1, "left_pending": 1, "dead_lettered": 0}
        assert stream.pending_count() == 1  # b: no run yet, so it is redelivered
        status = store.get("a")
        assert status["status"] == "queued"
        assert status["run_id"] == "redis__a"
        assert status["total_symbols"] == 2
        assert store.get("b") is None

        # Redelivered: b is claimed again (delivery 2); its run now exists and has started.
        plans = claim_jobs(stream, store, limit=10)
        assert [(p["job_id"], p["deliveries"]) for p in plans] == [("b", 2)]
        counts = settle_jobs(stream, store, plans, {"redis__b": "started"}.get)
        assert counts["acknowledged"] == 1
        assert store.get("b") is None  # a started run reports its own status
        assert stream.pending_count() == 0
        assert redis_client.xlen(STREAM) == 0

    def test_job_whose_run_is_never_created_is_dead_lettered_eventually(self, redis_client):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        submit_job(redis_client, message(job_id="stuck"))
        for attempt in range(1, 4):
            plans = claim_jobs(stream, store, limit=10)
            assert plans[0]["deliveries"] == attempt
            counts = settle_jobs(stream, store, plans, lambda _run_id: None, max_deliveries=3)
        assert counts["dead_lettered"] == 1
        assert store.get("stuck")["status"] == "failed"
        assert "after 3 attempts" in store.get("stuck")["message"]
        assert stream.pending_count() == 0


class RunStartsBeforeFirstWrite(JobStatusStore):
    """A store whose first write for ``job_id`` reaches Redis just after the run reported ``status``.

    This is the interleaving of a listener that looked (at Airflow or at the status) while the
    run had not started yet, and wrote after it had.
    """

    def __init__(self, client, job_id: str, status: JobState, report_run) -> None:
        super().__init__(client)
        self._report_run = report_run
        self._pending: tuple[str, JobState] | None = (job_id, status)

    def update(self, job_id, **changes):
        if self._pending and self._pending[0] == job_id:
            _, status = self._pending
            self._pending = None
            self._report_run(JobStatusStore(self._client), job_id, status)
        return super().update(job_id, **changes)


@pytest.mark.integration
class TestStatusNeverMovesBackwards:
    """The run can start between the listener's look and its write; its status must win."""

    @pytest.mark.parametrize(
        "run_reported",
        [JobState.PROCESSING, JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED],
    )
    def test_run_starting_after_the_check_keeps_its_status(self, redis_client, status_feed, report_run, run_reported):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        submit_job(redis_client, message(job_id="race"))
        plans = claim_jobs(stream, store, limit=10)
        asked = []

        def run_state(run_id: str) -> str:
            # Airflow answers "queued", and the run starts right after that answer.
            asked.append(run_id)
            report_run(JobStatusStore(redis_client), "race", run_reported)
            return "queued"

        counts = settle_jobs(stream, store, plans, run_state)

        assert asked == ["redis__race"]
        assert counts == {"acknowledged": 1, "left_pending": 0, "dead_lettered": 0}
        assert stream.pending_count() == 0
        final = store.get("race")
        assert final["status"] == run_reported.value
        published = [state["status"] for state in status_feed.published()]
        # Exactly what the run wrote, in order, and no "queued" after (or before) it.
        expected = ["processing"] if run_reported is JobState.PROCESSING else ["processing", run_reported.value]
        assert published == expected
        assert final["message"] != "Queued as Airflow run redis__race"

    def test_run_not_started_yet_is_reported_queued(self, redis_client, status_feed, report_run):
        stream, store = JobStream(redis_client), JobStatusStore(redis_client)
        submit_job(redis_client, message(job_id="calm", source="admin_ui"))
        plans = claim_jobs(stream, store, limit=10)
        settle_jobs(stream, store, plans, {"redis__calm": "queued"}.get)
        published = status_feed.published()
        assert [state["status"] for state in published] == ["queued"]
        assert published[0]["run_id"] == "redis__calm"
        assert published[0]["source"] == "admin_ui"
        # Then the run starts, reports processing, and a redelivered copy is settled again.
        report_run(store, "calm", JobState.PROCESSING)
        submit_job(redis_client, message(job_id="calm", source="admin_ui"))
        settle_jobs(stream, store, claim_jobs(stream, store, limit=10), {"redis__calm": "queued"}.get)
        assert store.get("calm")["status"] == "processing"
        assert [state["status"] for state in status_feed.published()] == ["processing"]

    @pytest.mark.parametrize("run_reported", [JobState.PROCESSING, JobState.COMPLETED])
    def test_broken_copy_rejected_as_the_run_starts_does_not_mark_it_failed(
        self, redis_client, status_feed, report_run, run_reported
    ):
        stream = JobStream(redis_client)
        store = RunStartsBeforeFirstWrite(redis_client, "live", run_reported, report_run)
        submit_job(redis_client, message(job_id="live", days=0, years=None))
        assert claim_jobs(stream, store, limit=10) == []
        assert store.get("live")["status"] == run_reported.value
        assert "failed" not in [state["status"] for state in status_feed.published()]
        dead = redis_client.xrange(DEAD_LETTER_STREAM)
        assert f"job live is already {run_reported.value}; status left unchanged" in dead[0][1]["reason"]
