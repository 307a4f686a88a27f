"""Dagster's own `TestQueuedRunCoordinator`, run with `SluiceRunCoordinator` in place of Dagster's
queue, against a real Sluice server: the subclassing its docstring invites. The tests themselves
are Dagster's, imported from the release installed here (see fetch.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import DagsterInstance
from dagster_tests.core_tests.run_coordinator_tests import test_queued_run_coordinator as dagster_own
from sluice_client import SluiceClient
from sluice_client.testing import SluiceServer

from dagster_sluice import SluiceRunCoordinator
from dagster_sluice.config import SluiceSettings


class TestSluiceRunCoordinator(dagster_own.TestQueuedRunCoordinator):
    @pytest.fixture
    def coordinator(  # pyright: ignore[reportIncompatibleMethodOverride]
        self, request: pytest.FixtureRequest, instance: DagsterInstance, sluice: SluiceServer
    ) -> Iterator[SluiceRunCoordinator]:
        run_coordinator = SluiceRunCoordinator(SluiceSettings(url=sluice.url))
        run_coordinator.register_instance(instance)
        yield run_coordinator
        run_coordinator.dispose()
        # Beyond Dagster's own assertions: each run the test left in Dagster is held by Sluice
        # as Dagster holds it (a run handed over already QUEUED is enqueued too: the launcher
        # starts only the runs Sluice admits).
        expected = ("CANCELED",) if request.node.name == "test_cancel_run" else ("QUEUED", "STARTING")
        with SluiceClient(sluice.url) as client:
            for run in instance.get_runs():
                held = client.run(run.run_id)
                assert held is not None, f"Sluice does not know run {run.run_id}"
                assert held.status.value in expected, (run.status, held.status)
