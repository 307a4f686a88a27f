"""Dagster's op-concurrency calls answered by Sluice's step slots.

A step claims a slot of its pool with `claimStepSlot`; claiming again while it waits (Dagster
asks again after each backoff) answers the same claim, so a re-claim never queues the step
twice. A run Sluice does not know yet (Dagster's own run coordinator launched it, or it was
executed in process) is enqueued in Sluice at its first claim, with Dagster's run id, tags and
steps, and a lease: this process keeps the lease alive with heartbeats while the run goes on,
and reports the run's end. If the process dies (`kill -9`), the heartbeats stop, the lease runs
out, Sluice ends the run as FAILURE and gives its slots to the steps waiting for them. Until Sluice
admits such a run, its steps wait as if their pool were full (Sluice's run limits apply to it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import datetime
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.event_log.base import PoolLimit
from dagster._utils.concurrency import (
    ClaimedSlotInfo,
    ConcurrencyClaimStatus,
    ConcurrencyKeyInfo,
    ConcurrencySlotStatus,
    PendingStepInfo,
)
from sluice_client import Conflict, NotFound, SluiceClient, SluiceError
from sluice_client.models import RunStatus, StepSlot, parse_time

from .steps import steps_for_run
from .tags import tags_for_sluice

_log = logging.getLogger("dagster_sluice")

#: How long a step waits before asking again while its run is still queued in Sluice.
QUEUED_RUN_BACKOFF_SECONDS = 1.0

POOL_CLAIMS = """query($name: String!) { pool(name: $name) {
  name limit explicitLimit inUse pending
  claims { runId stepKey granted priority claimedAt grantedAt } } }"""

POOLS = "{ pools { name limit explicitLimit } concurrencyConfig { defaultPoolLimit } }"


class OpSlots:
    """The Sluice side of one event log storage: claims, releases, limits, and the leases of the
    runs it enqueued itself."""

    def __init__(self, client: SluiceClient, lease_seconds: int) -> None:
        self.client = client
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        #: Runs this process enqueued in Sluice, whose lease it keeps and whose end it reports.
        self._leased: set[str] = set()
        self._stop = threading.Event()
        self._heartbeats: threading.Thread | None = None

    # -- claims ------------------------------------------------------------------------------

    def claim(
        self, instance: DagsterInstance | None, pool: str, run_id: str, step_key: str
    ) -> ConcurrencyClaimStatus:
        try:
            slot = self.client.claim_step_slot(run_id, step_key, pool)
        except NotFound:
            if instance is None or not self._enqueue(instance, run_id):
                raise
            return self._claim_when_admitted(pool, run_id, step_key)
        except Conflict:
            # Sluice knows the run but it is not admitted yet (still QUEUED), or it has ended.
            return self._claim_when_admitted(pool, run_id, step_key)
        return claim_status(pool, slot)

    def _claim_when_admitted(self, pool: str, run_id: str, step_key: str) -> ConcurrencyClaimStatus:
        run = self.client.run(run_id)
        if run is None or run.status.finished:
            raise Conflict(
                "CONFLICT", f"run {run_id} has ended in Sluice: step {step_key} cannot claim a slot of {pool}"
            )
        if run.status == RunStatus.QUEUED:
            return ConcurrencyClaimStatus(
                concurrency_key=pool,
                slot_status=ConcurrencySlotStatus.BLOCKED,
                sleep_interval=QUEUED_RUN_BACKOFF_SECONDS,
            )
        if run.status == RunStatus.STARTING and run_id in self._leased:
            self.client.mark_run_started(run_id)
        return claim_status(pool, self.client.claim_step_slot(run_id, step_key, pool))

    def _enqueue(self, instance: DagsterInstance, run_id: str) -> bool:
        dagster_run = instance.get_run_by_id(run_id)
        if dagster_run is None:
            return False
        run = self.client.enqueue_run(
            dagster_run.job_name,
            run_id=run_id,
            tags=tags_for_sluice(dagster_run.tags),
            steps=steps_for_run(instance, dagster_run),
            lease_seconds=self.lease_seconds,
        )
        if run.lease_seconds is not None:
            with self._lock:
                self._leased.add(run_id)
            self._start_heartbeats()
        return True

    def check(self, pool: str, run_id: str, step_key: str) -> ConcurrencyClaimStatus:
        run = self.client.run(run_id)
        claim = None if run is None else next((c for c in run.step_claims if c.step_key == step_key), None)
        if claim is None or claim.released:
            return ConcurrencyClaimStatus(concurrency_key=pool, slot_status=ConcurrencySlotStatus.BLOCKED)
        return claim_status(pool, claim)

    def release(self, run_id: str, step_key: str) -> None:
        # A run Sluice never knew, or one that has ended, holds nothing to give back.
        with contextlib.suppress(NotFound, Conflict):
            self.client.release_step_slot(run_id, step_key)

    def free_run(self, run_id: str) -> None:
        with contextlib.suppress(NotFound, Conflict):
            self.client.free_step_slots(run_id)

    # -- the runs this process enqueued ------------------------------------------------------

    def run_ended(self, run_id: str, status: DagsterRunStatus) -> None:
        """Reports the end of a run this process enqueued (the coordinator's launcher reports the others)."""
        with self._lock:
            if run_id not in self._leased:
                return
            self._leased.discard(run_id)
        final = {
            DagsterRunStatus.SUCCESS: RunStatus.SUCCESS,
            DagsterRunStatus.CANCELED: RunStatus.CANCELED,
        }.get(status, RunStatus.FAILURE)
        try:
            self.client.mark_run_finished(run_id, final)
        except Conflict:
            # Still QUEUED in Sluice (no step was admitted), or already ended there.
            with contextlib.suppress(SluiceError):
                self.client.terminate_run(run_id, force=True)
        except SluiceError as error:
            _log.warning("could not report the end of run %s to Sluice: %s", run_id, error)

    def _start_heartbeats(self) -> None:
        with self._lock:
            if self._heartbeats is not None:
                return
            self._heartbeats = threading.Thread(target=self._beat, name="sluice-heartbeats", daemon=True)
            self._heartbeats.start()

    def _beat(self) -> None:
        # Every third of the lease: a run renewed at least every two thirds of it never expires.
        while not self._stop.wait(self.lease_seconds / 3):
            with self._lock:
                runs = list(self._leased)
            for run_id in runs:
                try:
                    self.client.heartbeat(run_id)
                except (NotFound, Conflict):
                    with self._lock:
                        self._leased.discard(run_id)
                except SluiceError as error:
                    _log.warning("heartbeat for run %s failed: %s", run_id, error)

    def close(self) -> None:
        self._stop.set()

    # -- pools and limits --------------------------------------------------------------------

    def pool_limits(self, initialized: set[str]) -> list[PoolLimit]:
        data = self.client.execute(POOLS, {})
        default = data["concurrencyConfig"]["defaultPoolLimit"]
        limits = [
            PoolLimit(name=p["name"], limit=p["limit"], from_default=p["explicitLimit"] is None)
            for p in data["pools"]
            if p["limit"] is not None
        ]
        known = {limit.name for limit in limits}
        # Pools Sluice has not seen yet still have the default limit there: name those Dagster asked about.
        if default is not None:
            limits += [
                PoolLimit(name=n, limit=default, from_default=True) for n in sorted(initialized - known)
            ]
        return limits

    def concurrency_info(self, pool: str, default_limit: int | None) -> ConcurrencyKeyInfo:
        found: dict[str, Any] | None = self.client.execute(POOL_CLAIMS, {"name": pool})["pool"]
        if found is None:
            return ConcurrencyKeyInfo(
                concurrency_key=pool,
                slot_count=default_limit or 0,
                claimed_slots=[],
                pending_steps=[],
                limit=default_limit,
                using_default_limit=default_limit is not None,
            )
        claims = found["claims"]
        return ConcurrencyKeyInfo(
            concurrency_key=pool,
            slot_count=found["limit"] or 0,
            claimed_slots=[
                ClaimedSlotInfo(run_id=c["runId"], step_key=c["stepKey"]) for c in claims if c["granted"]
            ],
            # As Dagster's own storages list them: every claim, with an assigned time once granted.
            pending_steps=[
                PendingStepInfo(
                    run_id=c["runId"],
                    step_key=c["stepKey"],
                    enqueued_timestamp=_time(c["claimedAt"]),
                    assigned_timestamp=parse_time(c["grantedAt"]),
                    priority=c["priority"],
                )
                for c in claims
            ],
            limit=found["limit"],
            using_default_limit=found["explicitLimit"] is None and found["limit"] is not None,
        )

    def run_ids(self) -> set[str]:
        data = self.client.execute("{ pools { claims { runId } } }", {})
        return {c["runId"] for p in data["pools"] for c in p["claims"]}


def claim_status(pool: str, slot: StepSlot) -> ConcurrencyClaimStatus:
    return ConcurrencyClaimStatus(
        concurrency_key=pool,
        slot_status=ConcurrencySlotStatus.CLAIMED if slot.granted else ConcurrencySlotStatus.BLOCKED,
        sleep_interval=None if slot.granted else slot.retry_after_seconds,
    )


def _time(value: str | None) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("Sluice answered a claim without the time it was made")
    return parsed
