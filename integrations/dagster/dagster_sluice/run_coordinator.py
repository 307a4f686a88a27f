"""`SluiceRunCoordinator`: Dagster's run queue, decided by Sluice.

`submit_run` records the run QUEUED in Dagster and enqueues it in Sluice with its tags and steps;
Sluice decides when it may start (run limits, tag limits, pools, the root-step hold) and the
launcher (`dagster-sluice launcher`) starts it through the instance's run launcher the moment
Sluice admits it. Dagster's own queue daemon does not run for this coordinator: it only runs for
a `QueuedRunCoordinator`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from dagster import DagsterEvent, DagsterRun, DagsterRunStatus
from dagster._config.config_schema import UserConfigSchema
from dagster._core.events import EngineEventData
from dagster._core.run_coordinator.base import RunCoordinator, SubmitRunContext
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from sluice_client import Conflict, NotFound, RunStatus, SluiceClient, SluiceConnectionError, SluiceError
from typing_extensions import Self

from .config import SluiceSettings, sluice_config_schema
from .enqueue import enqueue_in_sluice
from .tags import SLUICE_RUN_URL_TAG

_log = logging.getLogger("dagster_sluice")


class SluiceRunCoordinator(RunCoordinator, ConfigurableClass):
    """Queues Dagster runs in Sluice. Select it in dagster.yaml::

    run_coordinator:
      module: dagster_sluice
      class: SluiceRunCoordinator
      config:
        url: http://127.0.0.1:4000
        token: {env: SLUICE_TOKEN}
    """

    def __init__(self, settings: SluiceSettings, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self.settings = settings
        self._client: SluiceClient | None = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return sluice_config_schema()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(SluiceSettings.from_config(config_value), inst_data=inst_data)

    @property
    def client(self) -> SluiceClient:
        # Made on first use: Dagster builds the coordinator with every instance, also in
        # processes (run workers, code servers) that never queue a run.
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        instance = self._instance
        if run.status == DagsterRunStatus.NOT_STARTED:
            # The link first, so a person who sees the run QUEUED in Dagster can follow it to
            # why it waits; then QUEUED in Dagster before Sluice can admit it, because the
            # launcher launches only runs Dagster holds QUEUED.
            instance.add_run_tags(run.run_id, {SLUICE_RUN_URL_TAG: self.settings.run_url(run.run_id)})
            instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)
        elif run.status != DagsterRunStatus.QUEUED:
            _log.warning("submit_run: run %s is already %s; nothing to queue", run.run_id, run.status.value)
            return self._reload(run.run_id)

        try:
            # What Sluice is told (job, tags as written, the plan's steps) is what the run was
            # created with; the QUEUED event and the link tag change none of it, so the run is
            # not read again before the enqueue.
            enqueue_in_sluice(self.client, instance, run)
        except SluiceConnectionError as error:
            # The run stays QUEUED in Dagster; the launcher enqueues every QUEUED run Sluice does
            # not know when it next reconciles, so a short outage of Sluice loses no submission.
            instance.report_engine_event(
                f"Sluice could not be reached ({error.message}); the run stays QUEUED and the "
                "launcher enqueues it in Sluice once it can.",
                run,
                EngineEventData(),
                cls=self.__class__,
            )
        return self._reload(run.run_id)

    def cancel_run(self, run_id: str) -> bool:
        instance = self._instance
        run = instance.get_run_by_id(run_id)
        if run is None:
            return False
        # Sluice first: a run it has not admitted yet never will be, and one it has is marked
        # CANCELING there, still holding its capacity until Dagster reports it CANCELED.
        try:
            self.client.terminate_run(run_id)
        except (NotFound, Conflict):
            pass  # never queued in Sluice, or already ended there
        except SluiceError as error:
            _log.warning("cancel_run: Sluice did not terminate run %s: %s", run_id, error)
        if run.status == DagsterRunStatus.QUEUED:
            instance.report_run_canceling(run, message="Canceling run from the queue.")
            instance.report_run_canceled(run)
            # Sluice may have admitted it a moment ago (CANCELING there, holding capacity): the run
            # never launched and Dagster now holds it CANCELED, so it ends in Sluice too, rather
            # than when the launcher next reads Dagster's statuses or not at all without one.
            self._finish_in_sluice(run_id, RunStatus.CANCELED)
            return True
        if run.is_finished:
            return False
        return instance.run_launcher.terminate(run_id)

    def _finish_in_sluice(self, run_id: str, status: RunStatus) -> None:
        try:
            self.client.mark_run_finished(run_id, status)
        except (NotFound, Conflict):
            pass  # never queued in Sluice, or already ended there
        except SluiceError as error:
            _log.warning("cancel_run: Sluice did not record run %s %s: %s", run_id, status.value, error)

    def dispose(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _reload(self, run_id: str) -> DagsterRun:
        run = self._instance.get_run_by_id(run_id)
        if run is None:
            raise RuntimeError(f"run {run_id} vanished from Dagster's run storage")
        return run
