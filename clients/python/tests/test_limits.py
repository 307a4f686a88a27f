"""Limits: read and edit every one, and bad values refused with a typed error that changes nothing."""

from __future__ import annotations

import pytest

from sluice_client import InvalidInput, PoolGranularity, SluiceClient, TagConcurrencyLimit


def test_config_edits(client: SluiceClient, name: str) -> None:
    before = client.concurrency_config()
    try:
        assert client.set_max_concurrent_runs(7).max_concurrent_runs == 7
        limits = client.set_tag_concurrency_limits(
            [
                TagConcurrencyLimit(name, 2),
                TagConcurrencyLimit(f"{name}-v", 1, apply_limit_per_unique_value=True),
            ]
        ).tag_concurrency_limits
        assert limits == (
            TagConcurrencyLimit(name, 2),
            TagConcurrencyLimit(f"{name}-v", 1, apply_limit_per_unique_value=True),
        )
        assert client.set_default_pool_limit(4).default_pool_limit == 4
        assert client.set_default_pool_limit(None).default_pool_limit is None
        assert client.set_pool_granularity("RUN").pool_granularity is PoolGranularity.RUN
        assert client.set_pool_granularity(PoolGranularity.OP).pool_granularity is PoolGranularity.OP
        changed = client.change_concurrency_config({"maxConcurrentRuns": 3, "rootStepHold": {"runBuffer": 1}})
        assert changed.max_concurrent_runs == 3
        assert changed.root_step_hold is not None and changed.root_step_hold.run_buffer == 1
        assert client.concurrency_config() == changed
    finally:
        client.change_concurrency_config(
            {
                "maxConcurrentRuns": before.max_concurrent_runs,
                "tagConcurrencyLimits": [t.as_input() for t in before.tag_concurrency_limits],
                "rootStepHold": {"runBuffer": 0},
            }
        )


def test_pool_limits(client: SluiceClient, name: str) -> None:
    assert client.pool(name) is None
    pool = client.set_pool_limit(name, 2)
    assert (pool.name, pool.limit, pool.explicit_limit, pool.in_use) == (name, 2, 2, 0)
    assert client.pool(name) == pool
    assert name in [p.name for p in client.pools()]
    deleted = client.delete_pool_limit(name)
    assert deleted.explicit_limit is None


@pytest.mark.parametrize("limit", [-1, 10_000_000])
def test_an_invalid_pool_limit_is_refused_and_changes_nothing(
    client: SluiceClient, name: str, limit: int
) -> None:
    client.set_pool_limit(name, 3)
    with pytest.raises(InvalidInput) as raised:
        client.set_pool_limit(name, limit)
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.field == "limit"
    pool = client.pool(name)
    assert pool is not None and pool.limit == 3


def test_a_bad_enum_value_is_invalid_input(client: SluiceClient) -> None:
    with pytest.raises(InvalidInput):
        client.set_pool_granularity("SOMETIMES")


def test_an_invalid_tag_limit_names_its_field(client: SluiceClient) -> None:
    with pytest.raises(InvalidInput) as raised:
        client.set_tag_concurrency_limits([{"key": "", "limit": 1}])
    assert raised.value.field is not None
