"""SluiceRunCoordinator against a real Sluice server and a real Dagster instance.

Dagster's own `TestQueuedRunCoordinator` runs against it in dagster_own_tests; these are what
queueing in Sluice adds: the run is in Sluice's queue under Dagster's run id with its tags,
steps and pools, a second submit enqueues nothing more, and a cancel in Dagster ends it there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.test_utils import create_run_for_test, environ, instance_for_test
from sluice_client import RunStatus, SluiceClient
from sluice_client.testing import SluiceServer, free_port

from dagster_sluice import SluiceRunCoordinator
from dagster_sluice.steps import steps_for_run
from dagster_sluice.tags import SLUICE_RUN_URL_TAG

from .harness import REPO_ROOT, in_process_workspace, remote_job
from .repo import warehouse_job


def _overrides(url: str, **config: Any) -> dict[str, Any]:
    return {
        "run_coordinator": {
            "module": "dagster_sluice",
            "class": "SluiceRunCoordinator",
            "config": {"url": url, **config},
        }
    }


@pytest.fixture(scope="module")
def sluice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceServer]:
    """One server for the module (starting one takes seconds); each test sets the limits it needs."""
    with SluiceServer(repo=REPO_ROOT, data_dir=tmp_path_factory.mktemp("sluice")) as server:
        yield server


@pytest.fixture(autouse=True)
def _room_for_runs(sluice_client: SluiceClient) -> None:
    sluice_client.set_max_concurrent_runs(10)


@pytest.fixture
def instance(sluice: SluiceServer) -> Iterator[DagsterInstance]:
    with instance_for_test(overrides=_overrides(sluice.url)) as instance:
        yield instance


def _origins(instance: DagsterInstance, job_name: str) -> dict[str, Any]:
    """A job's origins, which Dagster requires of every queued run (Dagster's own test does the same)."""
    with in_process_workspace(instance) as workspace:
        job = remote_job(workspace, job_name)
        return {"remote_job_origin": job.get_remote_origin(), "job_code_origin": job.get_python_origin()}


@pytest.fixture
def foo_origin(instance: DagsterInstance) -> dict[str, Any]:
    return _origins(instance, "quick_job")


@pytest.fixture
def coordinator(instance: DagsterInstance) -> SluiceRunCoordinator:
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, SluiceRunCoordinator)
    return coordinator


def _submit(coordinator: SluiceRunCoordinator, run: DagsterRun) -> DagsterRun:
    # The coordinator reads nothing from the workspace: Sluice decides, the launcher launches.
    return coordinator.submit_run(SubmitRunContext(run, workspace=cast(Any, None)))


def _enqueue_events(instance: DagsterInstance, run_id: str) -> int:
    return len(instance.get_records_for_run(run_id, of_type=DagsterEventType.PIPELINE_ENQUEUED).records)


class TestSluiceRunCoordinator:
    def test_config_reads_token_from_environment(self, sluice: SluiceServer) -> None:
        overrides = _overrides(sluice.url, token={"env": "SLUICE_TEST_TOKEN"}, timeout_seconds=3)
        with environ({"SLUICE_TEST_TOKEN": "s3cret"}), instance_for_test(overrides=overrides) as instance:
            coordinator = instance.run_coordinator
            assert isinstance(coordinator, SluiceRunCoordinator)
            assert coordinator.settings.token == "s3cret"
            assert coordinator.settings.timeout_seconds == 3
            assert coordinator.settings.graphql_url == sluice.url

    def test_submit_run(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        run = create_run_for_test(
            instance,
            job_name="foo",
            **foo_origin,
            status=DagsterRunStatus.NOT_STARTED,
            tags={"team": "data", "dagster/priority": "5"},
        )
        returned = _submit(coordinator, run)
        assert returned.run_id == run.run_id
        assert returned.status == DagsterRunStatus.QUEUED
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.QUEUED
        assert stored.tags[SLUICE_RUN_URL_TAG].endswith(f"/runs/{run.run_id}")

        in_sluice = sluice_client.run(run.run_id)
        assert in_sluice is not None
        assert in_sluice.job_name == "foo"
        assert in_sluice.tag("team") == "data"
        assert in_sluice.priority == 5
        # Sluice admits it at once (no limits are set), but only the launcher launches: the
        # coordinator leaves it QUEUED in Dagster.
        assert in_sluice.status == RunStatus.STARTING

    def test_submit_run_checks_status(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        run = create_run_for_test(instance, job_name="foo", **foo_origin, status=DagsterRunStatus.QUEUED)
        _submit(coordinator, run)
        # Dagster's record is not touched again...
        assert _enqueue_events(instance, run.run_id) == 0
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.QUEUED
        # ...and Sluice, which may not have heard of it, holds it once.
        assert sluice_client.run(run.run_id) is not None

    def test_submit_run_twice_enqueues_once(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        sluice_client.set_max_concurrent_runs(0)
        run = create_run_for_test(instance, job_name="foo", **foo_origin, status=DagsterRunStatus.NOT_STARTED)
        _submit(coordinator, run)
        again = instance.get_run_by_id(run.run_id)
        assert again is not None
        _submit(coordinator, again)
        assert _enqueue_events(instance, run.run_id) == 1
        assert [r.id for r in sluice_client.runs() if r.id == run.run_id] == [run.run_id]
        queued = sluice_client.run(run.run_id)
        assert queued is not None and queued.status == RunStatus.QUEUED

    def test_submit_finished_run_is_a_no_op(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        run = create_run_for_test(instance, job_name="foo", **foo_origin, status=DagsterRunStatus.SUCCESS)
        assert _submit(coordinator, run).status == DagsterRunStatus.SUCCESS
        assert sluice_client.run(run.run_id) is None

    def test_cancel_queued_run(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        sluice_client.set_max_concurrent_runs(0)
        run = create_run_for_test(instance, job_name="foo", **foo_origin, status=DagsterRunStatus.NOT_STARTED)
        _submit(coordinator, run)
        assert coordinator.cancel_run(run.run_id)
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.CANCELED
        in_sluice = sluice_client.run(run.run_id)
        assert in_sluice is not None and in_sluice.status == RunStatus.CANCELED

    def test_cancel_of_a_run_admitted_but_not_launched_ends_it_in_sluice(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        run = create_run_for_test(instance, job_name="foo", **foo_origin, status=DagsterRunStatus.NOT_STARTED)
        _submit(coordinator, run)
        admitted = sluice_client.run(run.run_id)
        assert admitted is not None and admitted.status == RunStatus.STARTING
        assert coordinator.cancel_run(run.run_id)
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.CANCELED
        # Not left CANCELING, holding a place under the run limit until a timeout: Dagster holds
        # it CANCELED and no run worker was ever started for it.
        in_sluice = sluice_client.run(run.run_id)
        assert in_sluice is not None and in_sluice.status == RunStatus.CANCELED

    def test_cancel_unknown_run(self, coordinator: SluiceRunCoordinator) -> None:
        assert coordinator.cancel_run("no-such-run") is False

    def test_steps_pools_and_root_steps(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        run = instance.create_run_for_job(
            warehouse_job, status=DagsterRunStatus.NOT_STARTED, **_origins(instance, "warehouse_job")
        )
        steps = steps_for_run(instance, run)
        assert steps is not None
        by_key = {step.key: step for step in steps}
        assert by_key["load_warehouse"].pool == "warehouse"
        assert by_key["load_warehouse"].depends_on == ()
        assert by_key["report"].pool is None
        assert by_key["report"].depends_on == ("load_warehouse",)

        _submit(coordinator, run)
        in_sluice = sluice_client.run(run.run_id)
        assert in_sluice is not None
        assert in_sluice.pools == ("warehouse",)
        assert [s.key for s in in_sluice.steps] == ["load_warehouse", "report"]

    def test_tags_sluice_cannot_hold_do_not_refuse_the_run(
        self,
        instance: DagsterInstance,
        coordinator: SluiceRunCoordinator,
        sluice_client: SluiceClient,
        foo_origin: dict[str, Any],
    ) -> None:
        tags = {"config": "x" * 300, "empty": "", "team": "ml"}
        run = create_run_for_test(
            instance, job_name="foo", **foo_origin, status=DagsterRunStatus.NOT_STARTED, tags=tags
        )
        _submit(coordinator, run)
        in_sluice = sluice_client.run(run.run_id)
        assert in_sluice is not None
        assert in_sluice.tag("team") == "ml"
        assert in_sluice.tag("config") is None and in_sluice.tag("empty") is None

    def test_sluice_unreachable_leaves_the_run_queued(self) -> None:
        with instance_for_test(overrides=_overrides(f"http://127.0.0.1:{free_port()}/graphql")) as instance:
            coordinator = instance.run_coordinator
            assert isinstance(coordinator, SluiceRunCoordinator)
            origin = _origins(instance, "quick_job")
            run = create_run_for_test(instance, job_name="foo", **origin, status=DagsterRunStatus.NOT_STARTED)
            assert _submit(coordinator, run).status == DagsterRunStatus.QUEUED
            messages = [
                record.event_log_entry.message
                for record in instance.get_records_for_run(
                    run.run_id, of_type=DagsterEventType.ENGINE_EVENT
                ).records
            ]
            assert any("Sluice could not be reached" in message for message in messages)
