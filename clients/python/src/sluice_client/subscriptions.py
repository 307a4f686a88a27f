"""The two streams a program follows: decisions, and runs' status changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import Decision, Json, Run, RunStatus, RunStatusChange, parse_time
from .operations import DECISION
from .streams import Subscription

DECISIONS = (
    "subscription($after: String, $runId: ID, $pool: String) "
    f"{{ dequeueDecisions(after: $after, runId: $runId, pool: $pool) {{ {DECISION} }} }}"
)
EVENTS = "subscription($after: String) { events(after: $after) { position at type data } }"


def decisions(run_id: str | None, pool: str | None) -> Subscription[Decision]:
    def request(after: str | None) -> tuple[str, Mapping[str, Any]]:
        return DECISIONS, {"after": after, "runId": run_id, "pool": pool}

    return Subscription(
        request=request,
        read=lambda data: Decision.parse(data["dequeueDecisions"]),
        position=lambda data: str(data["dequeueDecisions"]["position"]),
    )


def _status_of(event_type: str, data: Json) -> tuple[RunStatus, str | None] | None:
    """The status an event gives its run, as Sluice's own runStatusChanges reads it."""
    if event_type == "RunEnqueued":
        return RunStatus.QUEUED, None
    if event_type == "RunAdmitted":
        return RunStatus.STARTING, None
    if event_type == "RunStarted":
        return RunStatus.STARTED, None
    if event_type == "RunCancellationRequested":
        return RunStatus.CANCELING, None
    if event_type == "RunFinished":
        return RunStatus(data["status"]), data.get("reason")
    return None


def run_status_changes(run_id: str | None) -> Subscription[RunStatusChange]:
    """Status changes read from the log's event stream, which resumes exactly from a position."""

    def request(after: str | None) -> tuple[str, Mapping[str, Any]]:
        return EVENTS, {"after": after}

    def read(data: Json) -> RunStatusChange | None:
        event = data["events"]
        payload: Json = event["data"]
        if run_id is not None and payload.get("runId") != run_id:
            return None
        status = _status_of(event["type"], payload)
        if status is None:
            return None
        at = parse_time(event["at"])
        assert at is not None
        return RunStatusChange(
            run_id=payload["runId"],
            status=status[0],
            at=at,
            position=str(event["position"]),
            reason=status[1],
        )

    return Subscription(
        request=request,
        read=read,
        position=lambda data: str(data["events"]["position"]),
        last=lambda change: run_id is not None and change.status.finished,
    )


def final_change(run: Run, position: str) -> RunStatusChange:
    """The change that finished a run, for a stream of one run that had finished before it began."""
    return RunStatusChange(
        run_id=run.id,
        status=run.status,
        at=run.finished_at or run.enqueued_at,
        position=position,
        reason=run.finish_reason,
    )
