"""A run worker killed with -9 while its step holds a pool slot gives the slot back: the worker
renewed its run's lease in Sluice; once it is gone the lease runs out, Sluice ends the run as
FAILURE (UNEXPECTED_TERMINATION) and the slot goes to the next run's steps."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sluice_client import SluiceClient
from sluice_client.testing import SluiceServer

from .conftest import write_storage_yaml
from .test_storage_op_concurrency import start_run_worker

T = TypeVar("T")
LEASE_SECONDS = 4


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 180.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_run_worker_gives_its_slot_back_when_its_lease_runs_out(
    tmp_path: Path, sluice: SluiceServer, sluice_client: SluiceClient
) -> None:
    home = tmp_path / "dagster_home"
    write_storage_yaml(home, sluice.url, lease_seconds=LEASE_SECONDS)
    sluice_client.set_pool_limit("warehouse", 1)

    worker = start_run_worker(home, "long_hold", "in_process")
    try:

        def holder() -> str | None:
            pool = sluice_client.pool("warehouse")
            return pool.active_run_ids[0] if pool and pool.in_use == 1 else None

        run_id = eventually("the worker's step to hold the slot", holder)
        # The worker keeps its lease while it runs: still holding after two lease periods.
        time.sleep(2 * LEASE_SECONDS)
        assert holder() == run_id
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()

    def freed() -> bool:
        pool = sluice_client.pool("warehouse")
        return pool is not None and pool.in_use == 0

    eventually("the slot to be freed", freed, timeout=LEASE_SECONDS + 30)
    run = sluice_client.run(run_id)
    assert run is not None
    assert (run.status.value, run.failure_reason) == ("FAILURE", "UNEXPECTED_TERMINATION")

    # The next run of the pool gets the slot and finishes.
    after = start_run_worker(home, "warehouse_loads", "in_process")
    out, err = after.communicate(timeout=600)
    assert after.returncode == 0, err[-4000:]
    next_run = sluice_client.run(out.split()[0])
    assert next_run is not None and next_run.status.value == "SUCCESS"
