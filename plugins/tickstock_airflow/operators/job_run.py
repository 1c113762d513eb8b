"""Create one run of a DAG per job, with conf taken verbatim from an untrusted message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


class TriggerJobRunOperator(TriggerDagRunOperator):
    """``TriggerDagRunOperator`` whose ``conf`` and ``trigger_run_id`` are never Jinja-rendered.

    The conf comes from a job message; Airflow renders mapped keyword arguments too, so a field
    such as ``"source": "{{ 7 * 7 }}"`` would otherwise reach the run as ``"49"`` (and any
    template could read variables or connections). Only the target DAG id stays templated.
    """

    template_fields: Sequence[str] = ("trigger_dag_id",)
