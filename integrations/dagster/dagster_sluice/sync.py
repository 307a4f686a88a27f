"""Keeping Dagster's run record and Sluice's in step, one run at a time.

Both directions are idempotent: sending a status Sluice already has, or ending a run Dagster has
already ended, changes nothing. That is what lets the launcher reconcile everything again after a
restart without knowing what it did before it stopped.
"""

from __future__ import annotations

import logging

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from sluice_client import Conflict, NotFound, SluiceClient
from sluice_client.models import RunStatus

from .enqueue import enqueue_in_sluice
from .tags import SLUICE_RUN_URL_TAG

_log = logging.getLogger("dagster_sluice")

_FINISHED = {
    DagsterRunStatus.SUCCESS: RunStatus.SUCCESS,
    DagsterRunStatus.FAILURE: RunStatus.FAILURE,
    DagsterRunStatus.CANCELED: RunStatus.CANCELED,
}

#: Sluice statuses that mean Sluice ended the run (a terminate, a timeout, a lease that ran out).
#: SUCCESS is only ever reported to Sluice from Dagster's own record, so it is never acted on.
ENDED_BY_SLUICE = frozenset({RunStatus.CANCELING, RunStatus.CANCELED, RunStatus.FAILURE})


def is_queued_through_sluice(run: DagsterRun) -> bool:
    return SLUICE_RUN_URL_TAG in run.tags


def send_dagster_status(client: SluiceClient, instance: DagsterInstance, run: DagsterRun) -> None:
    """Tells Sluice the status Dagster records for the run."""
    status = run.status
    try:
        if status == DagsterRunStatus.QUEUED:
            # Enqueued here when it reached QUEUED another way than the coordinator, or while
            # Sluice could not be reached.
            enqueue_in_sluice(client, instance, run)
        elif not is_queued_through_sluice(run):
            return
        elif status == DagsterRunStatus.STARTED:
            client.mark_run_started(run.run_id)
        elif status == DagsterRunStatus.CANCELING:
            client.terminate_run(run.run_id)
        elif status in _FINISHED:
            _finish(client, run.run_id, _FINISHED[status])
    except NotFound:
        _log.debug("run %s is not in Sluice; its status %s stays Dagster's", run.run_id, status.value)
    except Conflict as error:
        # Sluice already has a later status (it ended the run itself, or heard this before).
        _log.debug("Sluice keeps its own status for run %s: %s", run.run_id, error.message)


def _finish(client: SluiceClient, run_id: str, status: RunStatus) -> None:
    try:
        client.mark_run_finished(run_id, status)
    except Conflict:
        # A run Dagster ended while Sluice still held it QUEUED (canceled from the queue by
        # something other than the coordinator): it leaves Sluice's queue the only way it can.
        current = client.run(run_id)
        if current is not None and current.status == RunStatus.QUEUED:
            client.terminate_run(run_id, force=True)


def end_in_dagster(instance: DagsterInstance, run_id: str, status: RunStatus, reason: str | None) -> None:
    """Ends in Dagster a run Sluice ended (terminated from its dashboard or CLI, or timed out)."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished or status not in ENDED_BY_SLUICE:
        return
    why = f"Sluice ended the run: {reason}" if reason else f"Sluice marked the run {status.value}"
    if run.status == DagsterRunStatus.QUEUED:
        _end_without_worker(instance, run, status, why)
        return
    if run.status == DagsterRunStatus.CANCELING:
        if status != RunStatus.CANCELING:
            # Sluice's cancel timeout: as Dagster's own run monitoring does, the run ends CANCELED.
            instance.report_run_canceled(run, message=why)
        return
    instance.report_engine_event(why, run, cls=None)
    terminated = False
    try:
        terminated = instance.run_launcher.terminate(run_id)
    except Exception:  # the run worker's code server is gone: nothing left to stop
        _log.exception("terminating run %s in Dagster failed", run_id)
    if not terminated:
        current = instance.get_run_by_id(run_id)
        if current is not None and not current.is_finished:
            _end_without_worker(instance, current, status, why)


def _end_without_worker(instance: DagsterInstance, run: DagsterRun, status: RunStatus, why: str) -> None:
    if status == RunStatus.FAILURE:
        instance.report_run_failed(run, message=why)
    else:
        if run.status != DagsterRunStatus.CANCELING:
            instance.report_run_canceling(run, message=why)
        instance.report_run_canceled(run, message=why)
