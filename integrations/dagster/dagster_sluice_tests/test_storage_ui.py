"""Dagster's UI pool pages through SluiceEventLogStorage: the queries and mutations of Dagster's own
GraphQL schema (dagster-graphql, what the webserver serves) read and write Sluice's limits and
show Sluice's slot holders and waiting steps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceRequestContext
from dagster_graphql.test.utils import execute_dagster_graphql
from sluice_client import SluiceClient

from .harness import in_process_workspace
from .op_slot_jobs import warehouse_loads

POOLS_PAGE = """{ instance {
  supportsConcurrencyLimits
  concurrencyLimits {
    concurrencyKey slotCount limit usingDefaultLimit activeSlotCount pendingStepCount
    claimedSlots { runId stepKey }
    pendingSteps { runId stepKey enqueuedTimestamp assignedTimestamp priority }
  } } }"""

SET_LIMIT = (
    """mutation($key: String!, $limit: Int!) { setConcurrencyLimit(concurrencyKey: $key, limit: $limit) }"""
)
DELETE_LIMIT = """mutation($key: String!) { deleteConcurrencyLimit(concurrencyKey: $key) }"""
FREE_SLOTS = """mutation($runId: String!, $stepKey: String) {
  freeConcurrencySlots(runId: $runId, stepKey: $stepKey) }"""


@pytest.fixture
def ui(storage_instance: DagsterInstance) -> Iterator[WorkspaceRequestContext]:
    with in_process_workspace(storage_instance) as process_context:
        yield process_context.create_request_context()


def dagster_graphql(context: WorkspaceRequestContext, query: str, **variables: Any) -> Mapping[str, Any]:
    result = execute_dagster_graphql(context, query, variables=variables)
    assert not result.errors, result.errors
    return result.data


def test_the_pool_pages_show_and_edit_sluices_pools(
    ui: WorkspaceRequestContext, storage_instance: DagsterInstance, sluice_client: SluiceClient
) -> None:
    assert dagster_graphql(ui, SET_LIMIT, key="warehouse", limit=1)["setConcurrencyLimit"] is True
    pool = sluice_client.pool("warehouse")
    assert pool is not None and pool.explicit_limit == 1

    sluice_client.change_concurrency_config({"rootStepHold": {"enabled": False}})
    storage = storage_instance.event_log_storage
    a = storage_instance.create_run_for_job(job_def=warehouse_loads)
    b = storage_instance.create_run_for_job(job_def=warehouse_loads)
    assert storage.claim_concurrency_slot("warehouse", a.run_id, "load_orders").is_claimed
    assert not storage.claim_concurrency_slot("warehouse", b.run_id, "load_items").is_claimed

    [page] = dagster_graphql(ui, POOLS_PAGE)["instance"]["concurrencyLimits"]
    assert dagster_graphql(ui, POOLS_PAGE)["instance"]["supportsConcurrencyLimits"] is True
    assert page["concurrencyKey"] == "warehouse"
    assert (page["slotCount"], page["limit"], page["usingDefaultLimit"]) == (1, 1, False)
    assert (page["activeSlotCount"], page["pendingStepCount"]) == (1, 1)
    assert page["claimedSlots"] == [{"runId": a.run_id, "stepKey": "load_orders"}]
    waiting = [s for s in page["pendingSteps"] if s["assignedTimestamp"] is None]
    assert [(s["runId"], s["stepKey"], s["priority"]) for s in waiting] == [(b.run_id, "load_items", 0)]
    assert waiting[0]["enqueuedTimestamp"] > 0

    # "Free slots" on a run's row: Sluice hands the slot to the waiting step.
    assert dagster_graphql(ui, FREE_SLOTS, runId=a.run_id, stepKey=None)["freeConcurrencySlots"] is True
    pool = sluice_client.pool("warehouse")
    assert pool is not None and pool.active_run_ids == (b.run_id,)

    assert dagster_graphql(ui, DELETE_LIMIT, key="warehouse")["deleteConcurrencyLimit"] is True
    pool = sluice_client.pool("warehouse")
    assert pool is not None and pool.explicit_limit is None
    assert dagster_graphql(ui, POOLS_PAGE)["instance"]["concurrencyLimits"] == []
