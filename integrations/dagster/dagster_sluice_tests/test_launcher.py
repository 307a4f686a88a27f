"""The launcher end to end: real Sluice, real Dagster, real runs in subprocesses.

Runs are submitted through the instance (SluiceRunCoordinator), launched by `dagster-sluice
launcher` through Dagster's DefaultRunLauncher (each run a process the code server starts), and
checked against Dagster's own records: run start and end times, step events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from sluice_client import DecisionKind, RunStatus, SluiceClient
from sluice_client.testing import SluiceServer

from dagster_sluice.tags import SLUICE_RUN_URL_TAG

from .harness import (
    REPO_ROOT,
    LauncherProcess,
    create_run,
    in_process_workspace,
    statuses,
    submit,
    wait_until,
    write_dagster_yaml,
)

SLUICE_LIMITS = """concurrency:
  runs:
    max_concurrent_runs: {max_runs}
    tag_concurrency_limits:
      - key: team
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    granularity: op
run_monitoring:
  start_timeout_seconds: 90
"""


@dataclass
class Deployment:
    instance: DagsterInstance
    workspace: WorkspaceProcessContext
    client: SluiceClient
    launcher: LauncherProcess
    home: Path


def _deployment(tmp_path: Path, max_runs: int) -> Iterator[Deployment]:
    config = tmp_path / "sluice.yaml"
    config.write_text(SLUICE_LIMITS.format(max_runs=max_runs))
    home = tmp_path / "dagster_home"
    with SluiceServer(repo=REPO_ROOT, data_dir=tmp_path / "sluice", config=config) as server:
        write_dagster_yaml(home, server.url)
        client = SluiceClient(server.url)
        client.set_pool_limit("warehouse", 1)
        launcher = LauncherProcess(home, tmp_path / "launcher.log")
        with DagsterInstance.from_config(str(home)) as instance, in_process_workspace(instance) as workspace:
            # Dagster's own storage enforces the pool while steps run, as it does without Sluice.
            instance.event_log_storage.set_concurrency_slots("warehouse", 1)
            launcher.start()
            try:
                yield Deployment(instance, workspace, client, launcher, home)
            except BaseException:
                print(launcher.log_tail())
                raise
            finally:
                launcher.stop()
                client.close()


@pytest.fixture
def two_runs(tmp_path: Path) -> Iterator[Deployment]:
    yield from _deployment(tmp_path, max_runs=2)


@pytest.fixture
def four_runs(tmp_path: Path) -> Iterator[Deployment]:
    yield from _deployment(tmp_path, max_runs=4)


def _all_finished(instance: DagsterInstance, run_ids: list[str]) -> bool:
    return all(
        s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
        for s in statuses(instance, run_ids).values()
    )


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda edge: (edge[0], edge[1]),
    )
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def _in_sluice(client: SluiceClient, run_id: str) -> RunStatus | None:
    run = client.run(run_id)
    return None if run is None else run.status


def _workers_started(instance: DagsterInstance, run_id: str) -> int:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    return sum((r.event_log_entry.message or "").startswith("Started process for run") for r in records)


def _event_count(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> int:
    return len(instance.get_records_for_run(run_id, of_type=event_type).records)


def test_twelve_runs_stay_within_every_limit(two_runs: Deployment) -> None:
    d = two_runs
    plan = [
        ("warehouse_job", "a"),
        ("quick_job", "b"),
        ("warehouse_job", "b"),
        ("quick_job", "a"),
        ("warehouse_job", "c"),
        ("quick_job", "c"),
        ("warehouse_job", "a"),
        ("quick_job", "b"),
        ("warehouse_job", "b"),
        ("quick_job", "a"),
        ("warehouse_job", "c"),
        ("quick_job", "c"),
    ]
    runs = [submit(d.instance, d.workspace, job, {"team": team}) for job, team in plan]
    run_ids = [run.run_id for run in runs]
    assert all(run.status == DagsterRunStatus.QUEUED for run in runs)

    wait_until(lambda: _all_finished(d.instance, run_ids), 300, "all 12 runs to finish")
    assert set(statuses(d.instance, run_ids).values()) == {DagsterRunStatus.SUCCESS}
    # Sluice hears every end: each run's capacity is given back.
    wait_until(
        lambda: all(_in_sluice(d.client, r) == RunStatus.SUCCESS for r in run_ids),
        30,
        "Sluice to record every run SUCCESS",
    )

    # Dagster's own run records: never more than 2 runs, never two runs of one team, at once.
    records = d.instance.get_run_records()
    by_id = {record.dagster_run.run_id: record for record in records}
    spans = {r: (by_id[r].start_time or 0.0, by_id[r].end_time or 0.0) for r in run_ids}
    assert _most_at_once(list(spans.values())) <= 2
    for team in "abc":
        team_runs = [r for r, (_, t) in zip(run_ids, plan, strict=True) if t == team]
        assert _most_at_once([spans[r] for r in team_runs]) <= 1, f"team {team} over its limit"

    # Dagster's step events: never two steps of the warehouse pool at once.
    warehouse_steps: list[tuple[float, float]] = []
    for run_id in run_ids:
        started = {
            rec.event_log_entry.step_key: rec.event_log_entry.timestamp
            for rec in d.instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
        }
        ended = {
            rec.event_log_entry.step_key: rec.event_log_entry.timestamp
            for rec in d.instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_SUCCESS).records
        }
        if "load_warehouse" in started:
            warehouse_steps.append((started["load_warehouse"], ended["load_warehouse"]))
    assert len(warehouse_steps) == 6
    assert _most_at_once(warehouse_steps) <= 1

    # Each run launched once: one STARTING, one run worker.
    for run_id in run_ids:
        assert _event_count(d.instance, run_id, DagsterEventType.RUN_STARTING) == 1
        assert _workers_started(d.instance, run_id) == 1

    # Sluice answers why each run waited: 12 runs through 2 places, so most of them did, and
    # every wait names the limits that held the run.
    waited = 0
    for run_id in run_ids:
        why = d.client.why(run_id)
        assert why.status == RunStatus.SUCCESS
        assert any(decision.kind == DecisionKind.ADMITTED for decision in why.decisions)
        for wait in why.waits:
            assert wait.reasons and all(reason.message for reason in wait.reasons)
        waited += bool(why.waits)
    assert waited >= 5


def test_terminate_in_sluice_and_cancel_in_dagster(two_runs: Deployment) -> None:
    d = two_runs
    first = submit(d.instance, d.workspace, "slow_job", {"team": "a"}).run_id
    second = submit(d.instance, d.workspace, "slow_job", {"team": "b"}).run_id
    third = submit(d.instance, d.workspace, "slow_job", {"team": "c"}).run_id  # waits: 2 runs at most
    wait_until(
        lambda: set(statuses(d.instance, [first, second]).values()) == {DagsterRunStatus.STARTED},
        120,
        "both runs to start",
    )
    assert _in_sluice(d.client, third) == RunStatus.QUEUED

    # Terminate from Sluice (its dashboard or CLI): the run worker is stopped in Dagster.
    d.client.terminate_run(first)
    wait_until(
        lambda: statuses(d.instance, [first])[first] == DagsterRunStatus.CANCELED,
        60,
        "Dagster to cancel the run Sluice terminated",
    )
    wait_until(
        lambda: _in_sluice(d.client, first) == RunStatus.CANCELED,
        30,
        "Sluice to record it CANCELED",
    )

    # The freed place goes to the third run.
    wait_until(lambda: statuses(d.instance, [third])[third] == DagsterRunStatus.STARTED, 120, "the third run")

    # Cancel in Dagster (the UI's Terminate on a started run): Sluice ends it too.
    d.instance.run_launcher.terminate(second)
    wait_until(
        lambda: _in_sluice(d.client, second) == RunStatus.CANCELED,
        60,
        "Sluice to record the run Dagster canceled",
    )
    # And through the coordinator, as Dagster's UI does for a queued run and the GraphQL API for any.
    assert d.instance.run_coordinator.cancel_run(third)
    wait_until(
        lambda: _in_sluice(d.client, third) == RunStatus.CANCELED,
        60,
        "Sluice to record the third run canceled",
    )
    assert statuses(d.instance, [second, third]) == {
        second: DagsterRunStatus.CANCELED,
        third: DagsterRunStatus.CANCELED,
    }


def test_launcher_killed_mid_queue_loses_nothing_and_launches_nothing_twice(four_runs: Deployment) -> None:
    d = four_runs
    run_ids = [submit(d.instance, d.workspace, "quick_job", {"team": f"t{i % 6}"}).run_id for i in range(50)]

    def finished() -> int:
        return sum(s == DagsterRunStatus.SUCCESS for s in statuses(d.instance, run_ids).values())

    wait_until(lambda: finished() >= 12, 300, "a dozen runs to finish", every=0.5)
    d.launcher.kill9()
    d.launcher.start()

    wait_until(lambda: _all_finished(d.instance, run_ids), 1500, "all 50 runs to end", every=1.0)
    for run_id in run_ids:
        # One run worker per run: the code server records each process it starts for a run. (A
        # kill between Dagster's two writes of a launch, the STARTING event and the run's status,
        # can leave two STARTING events for one launch: a record, not a second run worker.)
        assert _workers_started(d.instance, run_id) == 1, f"{run_id}: not exactly one run worker"
        assert _event_count(d.instance, run_id, DagsterEventType.RUN_START) == 1
    final = statuses(d.instance, run_ids)
    assert DagsterRunStatus.QUEUED not in final.values()
    assert set(final.values()) == {DagsterRunStatus.SUCCESS}, final
    wait_until(
        lambda: all(_in_sluice(d.client, r) == RunStatus.SUCCESS for r in run_ids),
        60,
        "Sluice to record every run SUCCESS",
    )


def test_a_run_queued_in_dagster_but_never_in_sluice_is_enqueued_and_runs(two_runs: Deployment) -> None:
    """The coordinator's process stopped between Dagster's QUEUED record and Sluice's enqueue (or
    Sluice could not be reached): the launcher finds the run still QUEUED and enqueues it."""
    d = two_runs
    run = create_run(d.instance, d.workspace, "quick_job")
    # What SluiceRunCoordinator.submit_run records in Dagster before it calls Sluice.
    d.instance.add_run_tags(run.run_id, {SLUICE_RUN_URL_TAG: "http://sluice.invalid/runs/" + run.run_id})
    d.instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)
    assert _in_sluice(d.client, run.run_id) is None

    wait_until(lambda: _in_sluice(d.client, run.run_id) is not None, 120, "the launcher to enqueue the run")
    wait_until(lambda: _all_finished(d.instance, [run.run_id]), 300, "the run to end")
    assert statuses(d.instance, [run.run_id])[run.run_id] == DagsterRunStatus.SUCCESS
    assert _workers_started(d.instance, run.run_id) == 1
