"""Python client for Sluice: runs, limits, step slots, and resumable decision and status streams.

from sluice_client import SluiceClient
client = SluiceClient("http://127.0.0.1:4000/graphql", token=None)
run = client.enqueue_run("etl", tags={"team": "data"})
"""

from .aio import AsyncSluiceClient
from .client import SluiceClient
from .errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestTooLarge,
    SluiceConnectionError,
    SluiceError,
    SluiceTimeout,
    StoreUnavailable,
    SubscriberBehind,
    TooManySubscriptions,
    Unauthorized,
)
from .models import (
    ConcurrencyConfig,
    ConstraintKind,
    Deadline,
    Decision,
    DecisionKind,
    IgnoredTag,
    Pool,
    PoolGranularity,
    Reason,
    RootStepHold,
    Run,
    RunStatus,
    RunStatusChange,
    Step,
    StepSlot,
    Tag,
    TagConcurrencyLimit,
    Wait,
    Why,
)
from .streams import Reconnect

__all__ = [
    "AsyncSluiceClient",
    "ConcurrencyConfig",
    "Conflict",
    "ConstraintKind",
    "Deadline",
    "Decision",
    "DecisionKind",
    "Forbidden",
    "IgnoredTag",
    "InvalidInput",
    "NotFound",
    "Pool",
    "PoolGranularity",
    "Reason",
    "Reconnect",
    "RequestTooLarge",
    "RootStepHold",
    "Run",
    "RunStatus",
    "RunStatusChange",
    "SluiceClient",
    "SluiceConnectionError",
    "SluiceError",
    "SluiceTimeout",
    "Step",
    "StepSlot",
    "StoreUnavailable",
    "SubscriberBehind",
    "Tag",
    "TagConcurrencyLimit",
    "TooManySubscriptions",
    "Unauthorized",
    "Wait",
    "Why",
]
