"""Runs sharing pool `warehouse` (limit 1) through SluiceEventLogStorage, each in its own run
worker process, on Dagster's in-process and multiprocess executors: Dagster's own step events
show no two steps of the pool running at once, every run ends SUCCESS in Dagster and in Sluice,
and the pool is empty at the end."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance
from sluice_client import SluiceClient

from .harness import TESTS_DIR

POOL_STEPS = {"load_orders", "load_customers", "load_items"}
RUNS = 2


def start_run_worker(home: Path, job: str, executor: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster_sluice_tests.op_slot_jobs", job, executor],
        cwd=TESTS_DIR.parent,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pool_step_intervals(instance: DagsterInstance, run_id: str) -> list[tuple[float, float, str]]:
    """(start, end, step) of each pool step, from the run's STEP_START and STEP_SUCCESS events."""
    starts: dict[str, float] = {}
    intervals: list[tuple[float, float, str]] = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key not in POOL_STEPS:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            intervals.append((starts[event.step_key], entry.timestamp, f"{run_id}/{event.step_key}"))
    return intervals


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_runs_sharing_a_pool_never_run_two_of_its_steps_at_once(
    executor: str, storage_home: Path, storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    # Dagster's SQLite storages create their databases on first use; two run workers starting at
    # once on a fresh DAGSTER_HOME race to create the same tables. Opening the instance here first
    # creates them, as a deployment's first `dagster` command would.
    storage_instance.get_runs(limit=1)
    sluice_client.set_pool_limit("warehouse", 1)
    workers = [start_run_worker(storage_home, "warehouse_loads", executor) for _ in range(RUNS)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-4000:]
    run_ids = [out.split()[0] for out, _ in outputs]

    with DagsterInstance.from_config(str(storage_home)) as instance:
        intervals = sorted(i for run_id in run_ids for i in pool_step_intervals(instance, run_id))
    assert len(intervals) == RUNS * len(POOL_STEPS)
    for (_, end, step), (start, _, next_step) in itertools.pairwise(intervals):
        assert end <= start, (
            f"{step} ran until {datetime.fromtimestamp(end)}, "
            f"but {next_step} started at {datetime.fromtimestamp(start)}"
        )

    pool = sluice_client.pool("warehouse")
    assert pool is not None and (pool.in_use, pool.pending) == (0, 0)
    for run_id in run_ids:
        run = sluice_client.run(run_id)
        assert run is not None and run.status.value == "SUCCESS"
