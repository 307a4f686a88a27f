"""A Dagster run's steps as Sluice declares them: key, pool, the steps each waits for, priority.

Read from the run's execution plan snapshot, the same record Dagster's own queue reads when it
computes a run's op-concurrency information (its pools and which steps are root steps). Sluice
derives the root steps from `depends_on`, so the root-step hold at OP granularity and pools at
RUN granularity decide on exactly the steps this run will execute.
"""

from __future__ import annotations

import logging

from dagster import DagsterInstance, DagsterRun
from dagster._core.storage.tags import GLOBAL_CONCURRENCY_TAG, PRIORITY_TAG
from sluice_client import Step

from .tags import MAX_NAME_LENGTH

#: Sluice refuses a run declaring more steps than this; such a run is enqueued without steps.
MAX_STEPS = 1000

_log = logging.getLogger("dagster_sluice")


def steps_for_run(instance: DagsterInstance, run: DagsterRun) -> list[Step] | None:
    """The steps this run executes, or None when its plan is unknown (a run made without one)."""
    if not run.execution_plan_snapshot_id:
        return None
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    to_execute = set(plan.step_keys_to_execute)
    steps: list[Step] = []
    for snap in plan.steps:
        if snap.key not in to_execute:
            continue
        tags = snap.tags or {}
        # Dagster 1.10 added `pool`; older plans named the pool with the op's concurrency-key tag.
        pool = getattr(snap, "pool", None) or tags.get(GLOBAL_CONCURRENCY_TAG)
        steps.append(
            Step(
                key=snap.key,
                pool=pool,
                depends_on=tuple(sorted(plan.step_deps.get(snap.key, set()) & to_execute)),
                priority=_step_priority(tags.get(PRIORITY_TAG)),
            )
        )
    if len(steps) > MAX_STEPS or any(_too_long(s) for s in steps):
        _log.warning(
            "run %s: its %d steps are more than Sluice declares per run (or a name is too long); "
            "enqueued without steps, so its pools do not hold the run back",
            run.run_id,
            len(steps),
        )
        return None
    return steps


def _step_priority(raw: str | None) -> int:
    """An op's `dagster/priority` tag orders its step among steps waiting for the same pool."""
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return 0


def _too_long(step: Step) -> bool:
    return len(step.key) > MAX_NAME_LENGTH or len(step.pool or "") > MAX_NAME_LENGTH
