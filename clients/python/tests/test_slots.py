"""Step slots: claim, re-claim, release, free, and the slot() context manager."""

from __future__ import annotations

import threading
import time

import pytest

from sluice_client import Conflict, SluiceClient, SluiceTimeout, Step


def started_run(client: SluiceClient, name: str, *pools: str) -> str:
    run = client.enqueue_run(name, steps=[Step(f"s{i}", pool=pool) for i, pool in enumerate(pools)])
    client.mark_run_started(run.id)
    return run.id


def test_claim_wait_reclaim_release(client: SluiceClient, name: str) -> None:
    client.set_pool_limit(name, 1)
    first = started_run(client, f"{name}-a", name)
    second = started_run(client, f"{name}-b", name)
    granted = client.claim_step_slot(first, "s0")
    assert granted.granted and not granted.waiting
    waiting = client.claim_step_slot(second, "s0")
    assert waiting.waiting
    assert waiting.reasons[0].pool == name
    assert (waiting.queue_position, waiting.retry_after_seconds) == (1, 1.0)
    assert (granted.queue_position, granted.retry_after_seconds) == (None, None)
    # Claiming again is idempotent: the same claims, never a second slot.
    assert client.claim_step_slot(first, "s0") == granted
    assert client.claim_step_slot(second, "s0").waiting
    pool = client.pool(name)
    assert pool is not None and (pool.in_use, pool.pending) == (1, 1)
    released = client.release_step_slot(first, "s0")
    assert released.released
    assert client.claim_step_slot(second, "s0").granted


def test_claim_adds_an_undeclared_step_and_free_step_slots(client: SluiceClient, name: str) -> None:
    run_id = started_run(client, name)
    claim = client.claim_step_slot(run_id, "extra", pool=name)
    assert claim.granted and claim.pool == name
    run = client.free_step_slots(run_id)
    assert all(c.released for c in run.step_claims)
    pool = client.pool(name)
    assert pool is not None and pool.in_use == 0


def test_a_queued_run_cannot_claim(client: SluiceClient, name: str) -> None:
    client.set_tag_concurrency_limits([{"key": name, "limit": 0}])
    try:
        run = client.enqueue_run(name, tags={name: "x"}, steps=[Step("s0")])
        with pytest.raises(Conflict):
            client.claim_step_slot(run.id, "s0")
        client.terminate_run(run.id)
    finally:
        client.set_tag_concurrency_limits([])


def test_slot_waits_until_granted_and_releases(client: SluiceClient, name: str) -> None:
    client.set_pool_limit(name, 1)
    holder = started_run(client, f"{name}-a", name)
    waiter = started_run(client, f"{name}-b", name)
    client.claim_step_slot(holder, "s0")
    timer = threading.Timer(0.5, lambda: client.release_step_slot(holder, "s0"))
    timer.start()
    try:
        with client.slot(name, run_id=waiter, step_key="s0") as slot:
            assert slot.granted
            pool = client.pool(name)
            assert pool is not None and pool.active_run_ids == (waiter,)
    finally:
        timer.join()
    pool = client.pool(name)
    assert pool is not None and pool.in_use == 0


def test_slot_releases_on_an_exception(client: SluiceClient, name: str) -> None:
    run_id = started_run(client, name)
    with pytest.raises(RuntimeError, match="boom"), client.slot(name, run_id=run_id) as slot:
        assert slot.granted
        raise RuntimeError("boom")
    pool = client.pool(name)
    assert pool is not None and pool.in_use == 0
    run = client.run(run_id)
    assert run is not None and all(c.released for c in run.step_claims)


def test_slot_wait_timeout_withdraws_the_claim(client: SluiceClient, name: str) -> None:
    client.set_pool_limit(name, 1)
    holder = started_run(client, f"{name}-a", name)
    waiter = started_run(client, f"{name}-b", name)
    client.claim_step_slot(holder, "s0")
    started = time.monotonic()
    with pytest.raises(SluiceTimeout), client.slot(name, run_id=waiter, step_key="s0", wait_timeout=0.5):
        pytest.fail("the slot was never free")
    assert time.monotonic() - started < 10
    pool = client.pool(name)
    assert pool is not None and (pool.in_use, pool.pending) == (1, 0)


def test_slot_takes_the_run_from_the_environment(
    client: SluiceClient, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = started_run(client, name)
    monkeypatch.setenv("SLUICE_RUN_ID", run_id)
    with client.slot(name) as slot:
        assert slot.run_id == run_id and slot.step_key.startswith(f"{name}-")
