"""`SluiceEventLogStorage`: Dagster's event log, with op concurrency decided by Sluice.

It wraps the event log storage Dagster would use anyway (SQLite, PostgreSQL, any other), which
keeps storing every event, and answers Dagster's concurrency methods from Sluice: steps claim
and release Sluice's step slots while they run on any executor, and `dagster instance concurrency
set/get` and Dagster's UI pool pages read and write Sluice's pool limits (each edit recorded by
Sluice as a limit change, with the token's name as its actor).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml
from dagster import DagsterEventType, DagsterInstance, Field, IntSource, Noneable, StringSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.config import PoolConfig, PoolGranularity
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.event_log.base import EventLogStorage, PoolLimit
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils.concurrency import ConcurrencyClaimStatus, ConcurrencyKeyInfo
from typing_extensions import Self

from .config import SluiceSettings
from .op_slots import OpSlots

#: Dagster's run-ending events, and the status each reports.
_RUN_ENDS = {
    DagsterEventType.RUN_SUCCESS: DagsterRunStatus.SUCCESS,
    DagsterEventType.RUN_FAILURE: DagsterRunStatus.FAILURE,
    DagsterEventType.RUN_CANCELED: DagsterRunStatus.CANCELED,
}


class SluiceEventLogStorage(EventLogStorage, ConfigurableClass):
    """Select it in dagster.yaml, naming the storage it wraps::

    event_log_storage:
      module: dagster_sluice
      class: SluiceEventLogStorage
      config:
        url: http://127.0.0.1:4000
        token: {env: SLUICE_TOKEN}
        event_log_storage:
          module: dagster._core.storage.event_log
          class: SqliteEventLogStorage
          config:
            base_dir: /opt/dagster/history
    """

    def __init__(
        self,
        inner: EventLogStorage,
        settings: SluiceSettings,
        lease_seconds: int = 60,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inner = inner
        self._inst_data = inst_data
        self.settings = settings
        self._slots = OpSlots(settings.client(), lease_seconds)
        #: Pools Dagster initialized to the default limit that Sluice has not seen yet (see get_pool_limits).
        self._initialized: set[str] = set()
        super().__init__()

    @property
    def inner(self) -> EventLogStorage:
        """The wrapped storage, which stores every event."""
        return self._inner

    # -- ConfigurableClass -------------------------------------------------------------------

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "url": Field(
                StringSource, description="Sluice's GraphQL endpoint (a URL without a path gets /graphql)."
            ),
            "token": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description=(
                    "A Sluice token: a worker's lets runs claim and release slots; `dagster instance "
                    "concurrency set`, deleting a limit and freeing a run's slots need an admin's. "
                    "`{env: SLUICE_TOKEN}` reads it from the environment."
                ),
            ),
            "timeout_seconds": Field(IntSource, is_required=False, default_value=10),
            "lease_seconds": Field(
                IntSource,
                is_required=False,
                default_value=60,
                description=(
                    "The lease of a run this storage enqueues in Sluice at its first claim (a run "
                    "Sluice did not know). The run worker renews it every third; once a worker is "
                    "gone for this long, Sluice ends its run and frees its slots."
                ),
            ),
            "event_log_storage": Field(
                {"module": str, "class": str, "config": Field(dict, is_required=False, default_value={})},
                description="The event log storage that stores the events, as Dagster's own key takes it.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        inner_config = config_value["event_log_storage"]
        inner = ConfigurableClassData(
            inner_config["module"], inner_config["class"], yaml.dump(inner_config.get("config") or {})
        ).rehydrate(as_type=EventLogStorage)
        settings = SluiceSettings(
            url=config_value["url"],
            token=config_value.get("token"),
            timeout_seconds=float(config_value.get("timeout_seconds", 10)),
        )
        return cls(inner, settings, int(config_value.get("lease_seconds", 60)), inst_data=inst_data)

    # -- the instance and the life of the storage ---------------------------------------------

    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        self._inner.register_instance(instance)

    def dispose(self) -> None:
        self._slots.close()
        self._inner.dispose()

    def optimize_for_webserver(self, statement_timeout: int, pool_recycle: int, max_overflow: int) -> None:
        # EventLogStorage's own is a no-op: without this, a long-running process (the webserver,
        # the launcher) would keep opening a connection per query to the wrapped storage.
        self._inner.optimize_for_webserver(
            statement_timeout=statement_timeout, pool_recycle=pool_recycle, max_overflow=max_overflow
        )

    def store_event(self, event: EventLogEntry) -> None:
        self._inner.store_event(event)
        ended = _RUN_ENDS.get(event.dagster_event.event_type) if event.dagster_event else None
        if ended is not None:
            self._slots.run_ended(event.run_id, ended)

    def __getattr__(self, name: str) -> Any:
        # What the wrapped storage offers beyond EventLogStorage (e.g. a SQL storage's connections).
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    # -- op concurrency, from Sluice ----------------------------------------------------------

    @property
    def supports_global_concurrency_limits(self) -> bool:
        return True

    def get_pool_config(self) -> PoolConfig:
        config = self._slots.client.concurrency_config()
        hold = config.root_step_hold
        return PoolConfig(
            pool_granularity=PoolGranularity(config.pool_granularity.value.lower()),
            default_pool_limit=config.default_pool_limit,
            op_granularity_run_buffer=None if hold is None else hold.run_buffer,
        )

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        # Sluice applies its default limit to every pool without one of its own: nothing to write.
        default = self._slots.client.concurrency_config().default_pool_limit
        if default is None:
            self._initialized.discard(concurrency_key)
            return False
        self._initialized.add(concurrency_key)
        return True

    def set_concurrency_slots(self, concurrency_key: str, num: int) -> None:
        self._slots.client.set_pool_limit(concurrency_key, num)

    def delete_concurrency_limit(self, concurrency_key: str) -> None:
        self._slots.client.delete_pool_limit(concurrency_key)

    def get_concurrency_keys(self) -> set[str]:
        return {pool.name for pool in self._slots.client.pools() if pool.explicit_limit is not None}

    def get_pool_limits(self) -> Sequence[PoolLimit]:
        return self._slots.pool_limits(self._initialized)

    def get_concurrency_info(self, concurrency_key: str) -> ConcurrencyKeyInfo:
        default = self._slots.client.concurrency_config().default_pool_limit
        return self._slots.concurrency_info(concurrency_key, default)

    def claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None
    ) -> ConcurrencyClaimStatus:
        # Sluice orders waiting steps by the run's priority plus the step's, both declared with the
        # run, which is what Dagster passes here: `priority` adds nothing.
        return self._slots.claim(self._instance_or_none(), concurrency_key, run_id, step_key)

    def check_concurrency_claim(
        self, concurrency_key: str, run_id: str, step_key: str
    ) -> ConcurrencyClaimStatus:
        return self._slots.check(concurrency_key, run_id, step_key)

    def get_concurrency_run_ids(self) -> set[str]:
        return self._slots.run_ids()

    def free_concurrency_slots_for_run(self, run_id: str) -> None:
        self._slots.free_run(run_id)

    def free_concurrency_slot_for_step(self, run_id: str, step_key: str) -> None:
        self._slots.release(run_id, step_key)

    def _instance_or_none(self) -> DagsterInstance | None:
        return self._instance if self.has_instance else None


# Everything else EventLogStorage declares is the wrapped storage's: each method and property not
# defined above is forwarded, so the wrapper follows Dagster's interface as it grows. Written as a
# loop rather than by hand because the interface has about ninety members.
def _forward_method(name: str) -> Callable[..., Any]:
    def forward(self: SluiceEventLogStorage, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    forward.__name__ = name
    return forward


def _forward_property(name: str) -> property:
    return property(lambda self: getattr(self._inner, name))


for _name, _member in vars(EventLogStorage).items():
    if _name.startswith("__") or _name in vars(SluiceEventLogStorage) or _name == "_abc_impl":
        continue
    if isinstance(_member, property):
        setattr(SluiceEventLogStorage, _name, _forward_property(_name))
    elif callable(_member):
        setattr(SluiceEventLogStorage, _name, _forward_method(_name))
abc.update_abstractmethods(SluiceEventLogStorage)
