"""SluiceEventLogStorage's concurrency methods, called as Dagster calls them, against a real Sluice
server; the wrapped SQLite storage still stores and answers the events."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun
from dagster._core.instance.config import PoolGranularity
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus
from sluice_client import SluiceClient

from dagster_sluice import SluiceEventLogStorage

from .op_slot_jobs import warehouse_loads

POOL = "warehouse"


def storage_of(instance: DagsterInstance) -> SluiceEventLogStorage:
    storage = instance.event_log_storage
    assert isinstance(storage, SluiceEventLogStorage)
    return storage


def dagster_run(instance: DagsterInstance) -> DagsterRun:
    """A run recorded in Dagster only, as Dagster's own coordinator would leave it for its worker."""
    return instance.create_run_for_job(job_def=warehouse_loads)


def test_wraps_the_storage_it_names_and_stores_events_there(storage_instance: DagsterInstance) -> None:
    storage = storage_of(storage_instance)
    assert isinstance(storage.inner, SqliteEventLogStorage)
    assert storage.supports_global_concurrency_limits
    result = warehouse_loads.execute_in_process(instance=storage_instance)
    assert result.success
    # The events went to the wrapped SQLite storage, read back through the wrapper and directly.
    through_wrapper = storage_instance.all_logs(result.run_id)
    assert len(through_wrapper) == len(storage.inner.get_logs_for_run(result.run_id))
    assert any(
        e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS" for e in through_wrapper
    )


def test_limits_are_sluices(storage_instance: DagsterInstance, sluice_client: SluiceClient) -> None:
    storage = storage_of(storage_instance)
    storage.set_concurrency_slots(POOL, 2)
    assert sluice_client.pool(POOL).explicit_limit == 2  # type: ignore[union-attr]
    sluice_client.set_pool_limit("db", 5)
    assert storage.get_concurrency_keys() == {POOL, "db"}
    assert {(p.name, p.limit, p.from_default) for p in storage.get_pool_limits()} == {
        (POOL, 2, False),
        ("db", 5, False),
    }
    storage.delete_concurrency_limit("db")
    assert sluice_client.pool("db").explicit_limit is None  # type: ignore[union-attr]
    assert storage.get_concurrency_keys() == {POOL}


def test_pool_config_and_the_default_limit_come_from_sluice(
    storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    storage = storage_of(storage_instance)
    sluice_client.set_default_pool_limit(3)
    config = storage.get_pool_config()
    assert config.pool_granularity == PoolGranularity.OP
    assert config.default_pool_limit == 3
    # A pool Sluice has not seen yet has the default limit there; Dagster asks to initialize it first.
    assert storage.initialize_concurrency_limit_to_default("fresh")
    assert [(p.limit, p.from_default) for p in storage.get_pool_limits() if p.name == "fresh"] == [(3, True)]
    info = storage.get_concurrency_info("fresh")
    assert (info.limit, info.slot_count, info.using_default_limit) == (3, 3, True)
    sluice_client.set_pool_granularity("RUN")
    assert storage.get_pool_config().pool_granularity == PoolGranularity.RUN


def test_a_run_sluice_does_not_know_is_enqueued_at_its_first_claim(
    storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    storage = storage_of(storage_instance)
    sluice_client.set_pool_limit(POOL, 1)
    run = dagster_run(storage_instance)
    status = storage.claim_concurrency_slot(POOL, run.run_id, "load_orders", priority=0)
    assert status.slot_status == ConcurrencySlotStatus.CLAIMED
    in_sluice = sluice_client.run(run.run_id)
    assert in_sluice is not None
    assert in_sluice.job_name == "warehouse_loads"
    assert in_sluice.status.value == "STARTED"
    assert in_sluice.lease_seconds == 30
    assert {s.key: s.pool for s in in_sluice.steps} == {
        "load_orders": POOL,
        "load_customers": POOL,
        "load_items": POOL,
        "summarize": None,
    }


def test_claims_wait_reclaims_are_idempotent_and_a_release_hands_the_slot_on(
    storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    storage = storage_of(storage_instance)
    sluice_client.set_pool_limit(POOL, 1)
    # Both runs admitted, so their steps contend for the one slot (the root-step hold would keep b queued).
    sluice_client.change_concurrency_config({"rootStepHold": {"enabled": False}})
    a, b = dagster_run(storage_instance), dagster_run(storage_instance)
    assert storage.claim_concurrency_slot(POOL, a.run_id, "load_orders").is_claimed
    for _ in range(3):
        assert not storage.claim_concurrency_slot(POOL, b.run_id, "load_orders").is_claimed
    pool = sluice_client.pool(POOL)
    assert pool is not None and (pool.in_use, pool.pending) == (1, 1)

    info = storage.get_concurrency_info(POOL)
    assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(a.run_id, "load_orders")]
    assert [(p.run_id, p.assigned_timestamp is None) for p in info.pending_steps] == [
        (a.run_id, False),
        (b.run_id, True),
    ]
    assert info.pending_step_count == 1 and info.slot_count == 1
    assert storage.get_concurrency_run_ids() == {a.run_id, b.run_id}
    assert (
        storage.check_concurrency_claim(POOL, b.run_id, "load_orders").slot_status
        == ConcurrencySlotStatus.BLOCKED
    )

    storage.free_concurrency_slot_for_step(a.run_id, "load_orders")
    assert storage.check_concurrency_claim(POOL, b.run_id, "load_orders").is_claimed
    assert storage.claim_concurrency_slot(POOL, b.run_id, "load_orders").is_claimed
    # Freeing a run's slots (Dagster's UI, its monitoring daemon) empties the pool.
    storage.free_concurrency_slots_for_run(b.run_id)
    pool = sluice_client.pool(POOL)
    assert pool is not None and (pool.in_use, pool.pending) == (0, 0)
    # Releasing what is not held, or for a run Sluice never knew, is a no-op as in Dagster.
    storage.free_concurrency_slot_for_step(b.run_id, "load_orders")
    storage.free_concurrency_slot_for_step("never-seen", "x")


def test_a_step_of_a_run_sluice_holds_queued_is_blocked_with_a_backoff(
    storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    storage = storage_of(storage_instance)
    sluice_client.set_max_concurrent_runs(0)
    run = dagster_run(storage_instance)
    status = storage.claim_concurrency_slot(POOL, run.run_id, "load_orders")
    assert status.slot_status == ConcurrencySlotStatus.BLOCKED
    assert status.sleep_interval is not None and status.sleep_interval > 0
    queued = sluice_client.run(run.run_id)
    assert queued is not None and queued.status.value == "QUEUED"
    sluice_client.set_max_concurrent_runs(1)
    assert storage.claim_concurrency_slot(POOL, run.run_id, "load_orders").is_claimed
