"""Enqueueing a Dagster run in Sluice: shared by the coordinator and the launcher's reconciliation."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun
from sluice_client import SluiceClient
from sluice_client.models import Run

from .steps import steps_for_run
from .tags import tags_for_sluice


def enqueue_in_sluice(client: SluiceClient, instance: DagsterInstance, run: DagsterRun) -> Run:
    """Enqueues the run under Dagster's run id: a second call for the same run appends nothing
    and answers the run as Sluice holds it (which may be admitted, or already ended)."""
    return client.enqueue_run(
        run.job_name,
        run_id=run.run_id,
        tags=tags_for_sluice(run.tags),
        steps=steps_for_run(instance, run),
    )
