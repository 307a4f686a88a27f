"""Every query and mutation the clients send: its document, its variables, how its answer is read.

The sync and async clients share these, so the two never drift apart: each client method builds
an ``Operation`` and hands it to its transport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from .errors import error_from_union
from .models import (
    ConcurrencyConfig,
    Json,
    Pool,
    PoolGranularity,
    Run,
    RunStatus,
    Step,
    StepSlot,
    TagConcurrencyLimit,
    Why,
)

T = TypeVar("T")

REASON = "kind message limit inUse pool key value perUniqueValue"
CLAIM = f"runId stepKey pool granted released queuePosition retryAfterSeconds reasons {{ {REASON} }}"
RUN = f"""id jobName status priority tags {{ key value }} steps {{ key pool priority }} pools
  enqueuedAt admittedAt startedAt finishedAt cancelRequestedAt lastHeartbeatAt finishReason failureReason
  leaseSeconds maxConcurrentSteps blockedBy {{ {REASON} }} ignoredTags {{ key reason }}
  stepClaims {{ {CLAIM} }} deadline {{ at reason status }}"""
DECISION = f"position at kind message runId stepKey pool reasons {{ {REASON} }}"
POOL = "name limit explicitLimit inUse pending promised activeRunIds"
CONFIG = """maxConcurrentRuns defaultPoolLimit poolGranularity
  tagConcurrencyLimits { key value limit applyLimitPerUniqueValue }
  rootStepHold { enabled runBuffer startedRunAllotmentSeconds }"""
ERRORS = "... on Error { message } ... on ValidationError { field }"

RUN_RESULT = f"{{ __typename ... on RunPayload {{ run {{ {RUN} }} }} {ERRORS} }}"
CLAIM_RESULT = f"{{ __typename ... on StepSlotPayload {{ claim {{ {CLAIM} }} }} {ERRORS} }}"
CONFIG_RESULT = f"{{ __typename ... on ConfigPayload {{ config {{ {CONFIG} }} }} {ERRORS} }}"
POOL_RESULT = f"{{ __typename ... on PoolPayload {{ pool {{ {POOL} }} }} {ERRORS} }}"

#: Runs per page when ``runs()`` pages through.
RUNS_PAGE = 200


@dataclass(frozen=True)
class Operation(Generic[T]):
    document: str
    variables: Mapping[str, Any]
    read: Callable[[Json], T]


def _payload(data: Json, field: str, inner: str) -> Json:
    """The payload of a mutation's result union, or its error member raised as an exception."""
    member: Json = data[field]
    if member.get("__typename", "").endswith("Payload"):
        return member[inner]
    raise error_from_union(member)


def _run_mutation(field: str, args: str, params: str, variables: Mapping[str, Any]) -> Operation[Run]:
    document = f"mutation({params}) {{ {field}({args}) {RUN_RESULT} }}"
    return Operation(document, variables, lambda data: Run.parse(_payload(data, field, "run")))


def _config_mutation(
    field: str, args: str, params: str, variables: Mapping[str, Any]
) -> Operation[ConcurrencyConfig]:
    document = f"mutation({params}) {{ {field}({args}) {CONFIG_RESULT} }}"
    return Operation(
        document, variables, lambda data: ConcurrencyConfig.parse(_payload(data, field, "config"))
    )


TagsArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


def tags_input(tags: TagsArg) -> list[dict[str, str]] | None:
    if tags is None:
        return None
    pairs: Iterable[tuple[str, str]] = (
        cast(Mapping[str, str], tags).items() if isinstance(tags, Mapping) else tags
    )
    return [{"key": key, "value": value} for key, value in pairs]


def step_input(step: Step) -> dict[str, Any]:
    return {
        "key": step.key,
        "pool": step.pool,
        "priority": step.priority,
        "dependsOn": list(step.depends_on),
    }


def enqueue_run(
    job_name: str,
    *,
    run_id: str | None,
    tags: TagsArg,
    steps: Sequence[Step] | None,
    priority: int | None,
    max_concurrent_steps: int | None,
    lease_seconds: int | None,
) -> Operation[Run]:
    run_input: dict[str, Any] = {"jobName": job_name}
    optional = {
        "runId": run_id,
        "tags": tags_input(tags),
        "steps": None if steps is None else [step_input(step) for step in steps],
        "priority": priority,
        "maxConcurrentSteps": max_concurrent_steps,
        "leaseSeconds": lease_seconds,
    }
    run_input.update({key: value for key, value in optional.items() if value is not None})
    return _run_mutation("enqueueRun", "input: $input", "$input: EnqueueRunInput!", {"input": run_input})


def mark_run_started(run_id: str) -> Operation[Run]:
    return _run_mutation("markRunStarted", "runId: $runId", "$runId: ID!", {"runId": run_id})


def mark_run_finished(run_id: str, status: RunStatus | str) -> Operation[Run]:
    return _run_mutation(
        "markRunFinished",
        "runId: $runId, status: $status",
        "$runId: ID!, $status: RunStatus!",
        {"runId": run_id, "status": RunStatus(status).value if isinstance(status, RunStatus) else status},
    )


def heartbeat(run_id: str) -> Operation[Run]:
    return _run_mutation("heartbeat", "runId: $runId", "$runId: ID!", {"runId": run_id})


def terminate_run(run_id: str, force: bool) -> Operation[Run]:
    return _run_mutation(
        "terminateRun",
        "runId: $runId, force: $force",
        "$runId: ID!, $force: Boolean",
        {"runId": run_id, "force": force},
    )


def free_step_slots(run_id: str, step_key: str | None) -> Operation[Run]:
    return _run_mutation(
        "freeStepSlots",
        "runId: $runId, stepKey: $stepKey",
        "$runId: ID!, $stepKey: String",
        {"runId": run_id, "stepKey": step_key},
    )


def claim_step_slot(run_id: str, step_key: str, pool: str | None) -> Operation[StepSlot]:
    document = (
        "mutation($runId: ID!, $stepKey: String!, $pool: String) "
        f"{{ claimStepSlot(runId: $runId, stepKey: $stepKey, pool: $pool) {CLAIM_RESULT} }}"
    )
    return Operation(
        document,
        {"runId": run_id, "stepKey": step_key, "pool": pool},
        lambda data: StepSlot.parse(_payload(data, "claimStepSlot", "claim")),
    )


def release_step_slot(run_id: str, step_key: str) -> Operation[StepSlot]:
    document = (
        "mutation($runId: ID!, $stepKey: String!) "
        f"{{ releaseStepSlot(runId: $runId, stepKey: $stepKey) {CLAIM_RESULT} }}"
    )
    return Operation(
        document,
        {"runId": run_id, "stepKey": step_key},
        lambda data: StepSlot.parse(_payload(data, "releaseStepSlot", "claim")),
    )


def run(run_id: str) -> Operation[Run | None]:
    document = f"query($id: ID!) {{ run(id: $id) {{ {RUN} }} }}"
    return Operation(
        document, {"id": run_id}, lambda data: None if data["run"] is None else Run.parse(data["run"])
    )


def why(run_id: str) -> Operation[Why | None]:
    document = (
        f"query($id: ID!) {{ run(id: $id) {{ id status blockedBy {{ {REASON} }} "
        f"waits {{ from to reasons {{ {REASON} }} }} decisions {{ {DECISION} }} }} }}"
    )
    return Operation(
        document, {"id": run_id}, lambda data: None if data["run"] is None else Why.parse(data["run"])
    )


def runs_page(
    statuses: Sequence[RunStatus | str] | None, after: str | None, first: int = RUNS_PAGE
) -> Operation[tuple[list[Run], str | None]]:
    document = (
        "query($statuses: [RunStatus!], $after: String, $first: Int) "
        "{ runs(statuses: $statuses, after: $after, first: $first) "
        f"{{ edges {{ node {{ {RUN} }} }} pageInfo {{ endCursor hasNextPage }} }} }}"
    )

    def read(data: Json) -> tuple[list[Run], str | None]:
        page = data["runs"]
        runs = [Run.parse(edge["node"]) for edge in page["edges"]]
        info = page["pageInfo"]
        return runs, info["endCursor"] if info["hasNextPage"] else None

    status_values = None if statuses is None else [RunStatus(s).value for s in statuses]
    return Operation(document, {"statuses": status_values, "after": after, "first": first}, read)


def queue() -> Operation[list[Run]]:
    document = f"query {{ queue {{ {RUN} }} }}"
    return Operation(document, {}, lambda data: [Run.parse(item) for item in data["queue"]])


def concurrency_config() -> Operation[ConcurrencyConfig]:
    document = f"query {{ concurrencyConfig {{ {CONFIG} }} }}"
    return Operation(document, {}, lambda data: ConcurrencyConfig.parse(data["concurrencyConfig"]))


def pool(name: str) -> Operation[Pool | None]:
    document = f"query($name: String!) {{ pool(name: $name) {{ {POOL} }} }}"
    return Operation(
        document, {"name": name}, lambda data: None if data["pool"] is None else Pool.parse(data["pool"])
    )


def pools() -> Operation[list[Pool]]:
    document = f"query {{ pools {{ {POOL} }} }}"
    return Operation(document, {}, lambda data: [Pool.parse(item) for item in data["pools"]])


def set_pool_limit(name: str, limit: int) -> Operation[Pool]:
    document = (
        f"mutation($pool: String!, $limit: Int!) {{ setPoolLimit(pool: $pool, limit: $limit) {POOL_RESULT} }}"
    )
    return Operation(
        document,
        {"pool": name, "limit": limit},
        lambda data: Pool.parse(_payload(data, "setPoolLimit", "pool")),
    )


def delete_pool_limit(name: str) -> Operation[Pool]:
    document = f"mutation($pool: String!) {{ deletePoolLimit(pool: $pool) {POOL_RESULT} }}"
    return Operation(
        document, {"pool": name}, lambda data: Pool.parse(_payload(data, "deletePoolLimit", "pool"))
    )


def set_max_concurrent_runs(limit: int) -> Operation[ConcurrencyConfig]:
    return _config_mutation("setMaxConcurrentRuns", "limit: $limit", "$limit: Int!", {"limit": limit})


def set_default_pool_limit(limit: int | None) -> Operation[ConcurrencyConfig]:
    return _config_mutation("setDefaultPoolLimit", "limit: $limit", "$limit: Int", {"limit": limit})


def set_pool_granularity(granularity: PoolGranularity | str) -> Operation[ConcurrencyConfig]:
    value = granularity.value if isinstance(granularity, PoolGranularity) else granularity
    return _config_mutation(
        "setPoolGranularity",
        "granularity: $granularity",
        "$granularity: PoolGranularity!",
        {"granularity": value},
    )


def set_tag_concurrency_limits(
    limits: Sequence[TagConcurrencyLimit | Mapping[str, Any]],
) -> Operation[ConcurrencyConfig]:
    values = [limit.as_input() if isinstance(limit, TagConcurrencyLimit) else dict(limit) for limit in limits]
    return _config_mutation(
        "setTagConcurrencyLimits",
        "limits: $limits",
        "$limits: [TagConcurrencyLimitInput!]!",
        {"limits": values},
    )


def change_concurrency_config(change: Mapping[str, Any]) -> Operation[ConcurrencyConfig]:
    return _config_mutation(
        "changeConcurrencyConfig", "change: $change", "$change: ConfigChangeInput!", {"change": dict(change)}
    )


def log_position() -> Operation[str]:
    """The log's last position now ('-1' for an empty log): where a stream from now starts."""
    return Operation("query { snapshot { position } }", {}, lambda data: str(data["snapshot"]["position"]))
