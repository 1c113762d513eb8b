"""Create one run of a DAG per job, in a single task, with conf taken verbatim from a message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class TriggerJobRunsOperator(BaseOperator):
    """Create a run of ``trigger_dag_id`` for every ``{"run_id", "conf"}`` in ``runs``.

    ``TriggerDagRunOperator`` creates one run per task instance. Mapped over a burst of jobs
    that costs one task process per job (seconds each on a LocalExecutor, ~0.5 s even in
    ``dag.test``), which put the median publish → run latency far above its 5 s target. This
    operator sends the same Execution API request that ``TriggerDagRunOperator``'s task-runner
    hook sends (``TriggerDagRun`` over the supervisor channel), once per job, in one task.

    An existing run id is not an error: the job was redelivered and its run already exists.
    A job whose run cannot be created (e.g. its conf fails the target's Params) is reported in
    the result and left for the caller to retry; the other jobs still get their runs.

    ``runs`` is a template field only so that an ``XComArg`` is resolved; a resolved XCom is
    not rendered again, so message content such as ``"{{ 7 * 7 }}"`` reaches the run verbatim
    (``TriggerDagRunOperator`` mapped over the same XCom renders it to ``"49"``).

    :param trigger_dag_id: the DAG to create runs of (templated)
    :param runs: the runs to create: an ``XComArg`` of an upstream task (or a literal list)
    """

    template_fields: Sequence[str] = ("trigger_dag_id", "runs")

    def __init__(self, *, trigger_dag_id: str, runs: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.runs = runs

    def execute(self, context: Context) -> dict[str, list[str]]:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun

        result: dict[str, list[str]] = {"created": [], "existing": [], "failed": []}
        for run in self.runs or []:
            run_id = run["run_id"]
            try:
                response = task_runner.SUPERVISOR_COMMS.send(
                    TriggerDagRun(dag_id=self.trigger_dag_id, run_id=run_id, conf=run["conf"], logical_date=None)
                )
            except Exception:  # one bad job must not keep the others from their runs
                self.log.exception("Could not create %s run %s", self.trigger_dag_id, run_id)
                result["failed"].append(run_id)
                continue
            if isinstance(response, ErrorResponse):
                if response.error == ErrorType.DAGRUN_ALREADY_EXISTS:
                    result["existing"].append(run_id)
                else:
                    self.log.error("Could not create %s run %s: %s", self.trigger_dag_id, run_id, response)
                    result["failed"].append(run_id)
                continue
            result["created"].append(run_id)
        self.log.info(
            "%s runs: %d created, %d already existed, %d failed",
            self.trigger_dag_id,
            len(result["created"]),
            len(result["existing"]),
            len(result["failed"]),
        )
        return result
