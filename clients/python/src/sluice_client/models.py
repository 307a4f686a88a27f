"""What Sluice answers, as frozen dataclasses, and how each is read from its GraphQL shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

Json = Mapping[str, Any]


class RunStatus(str, Enum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    CANCELING = "CANCELING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED)


class DecisionKind(str, Enum):
    ADMITTED = "ADMITTED"
    BLOCKED = "BLOCKED"
    SLOT_GRANTED = "SLOT_GRANTED"
    SLOT_PENDING = "SLOT_PENDING"


class ConstraintKind(str, Enum):
    MAX_CONCURRENT_RUNS = "MAX_CONCURRENT_RUNS"
    POOL_LIMIT = "POOL_LIMIT"
    ROOT_STEP_POOLS = "ROOT_STEP_POOLS"
    RUN_STEP_LIMIT = "RUN_STEP_LIMIT"
    TAG_LIMIT = "TAG_LIMIT"


class PoolGranularity(str, Enum):
    OP = "OP"
    RUN = "RUN"


def parse_time(value: str | None) -> datetime | None:
    """Sluice's ISO-8601 UTC timestamps ('...Z'), which Python 3.10's fromisoformat does not take."""
    if value is None:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def _time(value: str) -> datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed


@dataclass(frozen=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True)
class Step:
    """A step of a run: what ``enqueue_run`` declares and ``Run.steps`` answers.

    ``depends_on``: keys of the steps it waits for; steps with none are the run's root steps
    (what the root-step hold looks at). Sluice does not answer it back, so read runs have ``()``.
    """

    key: str
    pool: str | None = None
    priority: int = 0
    depends_on: tuple[str, ...] = ()

    @staticmethod
    def parse(data: Json) -> Step:
        return Step(key=data["key"], pool=data.get("pool"), priority=data.get("priority") or 0)


@dataclass(frozen=True)
class Reason:
    """One limit as it held a run or a step back (Sluice's ``Constraint``)."""

    kind: ConstraintKind
    message: str
    limit: int
    in_use: int
    pool: str | None = None
    key: str | None = None
    value: str | None = None
    per_unique_value: bool = False

    @staticmethod
    def parse(data: Json) -> Reason:
        return Reason(
            kind=ConstraintKind(data["kind"]),
            message=data["message"],
            limit=data["limit"],
            in_use=data["inUse"],
            pool=data.get("pool"),
            key=data.get("key"),
            value=data.get("value"),
            per_unique_value=bool(data.get("perUniqueValue")),
        )


def _reasons(items: Sequence[Json] | None) -> tuple[Reason, ...]:
    return tuple(Reason.parse(item) for item in items or ())


@dataclass(frozen=True)
class StepSlot:
    """A step's claim as it stands: granted, waiting (with what holds it), or released."""

    run_id: str
    step_key: str
    pool: str | None
    granted: bool
    released: bool
    reasons: tuple[Reason, ...] = ()
    #: Where the claim waits in its pool (1: next), when the server tells it.
    queue_position: int | None = None
    #: How long the server suggests waiting before asking again, when it tells it.
    retry_after_seconds: float | None = None

    @property
    def waiting(self) -> bool:
        return not self.granted and not self.released

    @staticmethod
    def parse(data: Json) -> StepSlot:
        retry = data.get("retryAfterSeconds")
        return StepSlot(
            run_id=data["runId"],
            step_key=data["stepKey"],
            pool=data.get("pool"),
            granted=data["granted"],
            released=data["released"],
            reasons=_reasons(data.get("reasons")),
            queue_position=data.get("queuePosition"),
            retry_after_seconds=None if retry is None else float(retry),
        )


@dataclass(frozen=True)
class IgnoredTag:
    key: str
    reason: str


@dataclass(frozen=True)
class Deadline:
    at: datetime
    reason: str
    status: RunStatus


@dataclass(frozen=True)
class Run:
    id: str
    job_name: str
    status: RunStatus
    priority: int
    tags: tuple[Tag, ...]
    steps: tuple[Step, ...]
    pools: tuple[str, ...]
    enqueued_at: datetime
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    finish_reason: str | None = None
    failure_reason: str | None = None
    lease_seconds: int | None = None
    max_concurrent_steps: int | None = None
    #: What holds the run back now; empty unless it is QUEUED and held.
    blocked_by: tuple[Reason, ...] = ()
    ignored_tags: tuple[IgnoredTag, ...] = ()
    step_claims: tuple[StepSlot, ...] = ()
    deadline: Deadline | None = None

    def tag(self, key: str) -> str | None:
        """The value of the run's first tag with this key, or None."""
        return next((tag.value for tag in self.tags if tag.key == key), None)

    @property
    def tag_dict(self) -> dict[str, str]:
        return {tag.key: tag.value for tag in self.tags}

    @staticmethod
    def parse(data: Json) -> Run:
        deadline = data.get("deadline")
        return Run(
            id=data["id"],
            job_name=data["jobName"],
            status=RunStatus(data["status"]),
            priority=data["priority"],
            tags=tuple(Tag(t["key"], t["value"]) for t in data.get("tags") or ()),
            steps=tuple(Step.parse(s) for s in data.get("steps") or ()),
            pools=tuple(data.get("pools") or ()),
            enqueued_at=_time(data["enqueuedAt"]),
            admitted_at=parse_time(data.get("admittedAt")),
            started_at=parse_time(data.get("startedAt")),
            finished_at=parse_time(data.get("finishedAt")),
            cancel_requested_at=parse_time(data.get("cancelRequestedAt")),
            last_heartbeat_at=parse_time(data.get("lastHeartbeatAt")),
            finish_reason=data.get("finishReason"),
            failure_reason=data.get("failureReason"),
            lease_seconds=data.get("leaseSeconds"),
            max_concurrent_steps=data.get("maxConcurrentSteps"),
            blocked_by=_reasons(data.get("blockedBy")),
            ignored_tags=tuple(IgnoredTag(t["key"], t["reason"]) for t in data.get("ignoredTags") or ()),
            step_claims=tuple(StepSlot.parse(c) for c in data.get("stepClaims") or ()),
            deadline=None
            if deadline is None
            else Deadline(_time(deadline["at"]), deadline["reason"], RunStatus(deadline["status"])),
        )


@dataclass(frozen=True)
class Decision:
    """One admission or slot decision, as recorded. ``position`` is its cursor: resume after it."""

    position: str
    at: datetime
    kind: DecisionKind
    message: str
    run_id: str
    step_key: str | None = None
    pool: str | None = None
    reasons: tuple[Reason, ...] = ()

    @staticmethod
    def parse(data: Json) -> Decision:
        return Decision(
            position=data["position"],
            at=_time(data["at"]),
            kind=DecisionKind(data["kind"]),
            message=data["message"],
            run_id=data["runId"],
            step_key=data.get("stepKey"),
            pool=data.get("pool"),
            reasons=_reasons(data.get("reasons")),
        )


@dataclass(frozen=True)
class Wait:
    """One stretch of time a run spent held back; ``end`` is None while it still waits."""

    start: datetime
    end: datetime | None
    reasons: tuple[Reason, ...]

    @staticmethod
    def parse(data: Json) -> Wait:
        return Wait(
            start=_time(data["from"]), end=parse_time(data.get("to")), reasons=_reasons(data["reasons"])
        )


@dataclass(frozen=True)
class Why:
    """Why a run waited: what holds it now, every stretch it waited, every decision about it."""

    run_id: str
    status: RunStatus
    blocked_by: tuple[Reason, ...]
    waits: tuple[Wait, ...]
    decisions: tuple[Decision, ...]

    @staticmethod
    def parse(data: Json) -> Why:
        return Why(
            run_id=data["id"],
            status=RunStatus(data["status"]),
            blocked_by=_reasons(data.get("blockedBy")),
            waits=tuple(Wait.parse(w) for w in data.get("waits") or ()),
            decisions=tuple(Decision.parse(d) for d in data.get("decisions") or ()),
        )


@dataclass(frozen=True)
class RunStatusChange:
    """A run took a status. ``position`` is the log position that recorded it: resume after it."""

    run_id: str
    status: RunStatus
    at: datetime
    position: str
    reason: str | None = None


@dataclass(frozen=True)
class Pool:
    name: str
    #: The limit in force (its own, else the default); None: unlimited.
    limit: int | None
    #: The limit set for this pool itself, if any.
    explicit_limit: int | None
    in_use: int
    pending: int
    promised: int
    active_run_ids: tuple[str, ...] = ()

    @staticmethod
    def parse(data: Json) -> Pool:
        return Pool(
            name=data["name"],
            limit=data.get("limit"),
            explicit_limit=data.get("explicitLimit"),
            in_use=data["inUse"],
            pending=data["pending"],
            promised=data["promised"],
            active_run_ids=tuple(data.get("activeRunIds") or ()),
        )


@dataclass(frozen=True)
class TagConcurrencyLimit:
    """Runs with tag ``key`` (and ``value``, if given) at most ``limit`` at once; per value if asked."""

    key: str
    limit: int
    value: str | None = None
    apply_limit_per_unique_value: bool = False

    def as_input(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "limit": self.limit,
            "value": self.value,
            "applyLimitPerUniqueValue": self.apply_limit_per_unique_value,
        }


@dataclass(frozen=True)
class RootStepHold:
    enabled: bool
    run_buffer: int
    started_run_allotment_seconds: int


@dataclass(frozen=True)
class ConcurrencyConfig:
    #: -1: no limit.
    max_concurrent_runs: int
    default_pool_limit: int | None
    pool_granularity: PoolGranularity
    tag_concurrency_limits: tuple[TagConcurrencyLimit, ...] = field(default=())
    root_step_hold: RootStepHold | None = None

    @staticmethod
    def parse(data: Json) -> ConcurrencyConfig:
        hold = data.get("rootStepHold")
        return ConcurrencyConfig(
            max_concurrent_runs=data["maxConcurrentRuns"],
            default_pool_limit=data.get("defaultPoolLimit"),
            pool_granularity=PoolGranularity(data["poolGranularity"]),
            tag_concurrency_limits=tuple(
                TagConcurrencyLimit(
                    key=t["key"],
                    limit=t["limit"],
                    value=t.get("value"),
                    apply_limit_per_unique_value=bool(t.get("applyLimitPerUniqueValue")),
                )
                for t in data.get("tagConcurrencyLimits") or ()
            ),
            root_step_hold=None
            if hold is None
            else RootStepHold(hold["enabled"], hold["runBuffer"], hold["startedRunAllotmentSeconds"]),
        )
