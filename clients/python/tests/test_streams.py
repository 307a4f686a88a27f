"""Decision and run-status streams: live items, and resuming after the server goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import islice

import pytest

from sluice_client import AsyncSluiceClient, DecisionKind, RunStatus, SluiceClient
from sluice_client.testing import SluiceServer


@pytest.fixture
def own_server() -> Iterator[SluiceServer]:
    """A server of this test's own, which it restarts."""
    with SluiceServer() as running:
        yield running


def recorded_decisions(client: SluiceClient) -> list[str]:
    """Every decision's position, from the paged `decisions` query (the log's own answer)."""
    data = client.execute("{ decisions(first: 1000) { edges { node { position } } } }")
    return [edge["node"]["position"] for edge in data["decisions"]["edges"]]


@pytest.mark.parametrize("stop", ["restart", "kill"])
def test_decisions_resume_after_the_server_goes_away(own_server: SluiceServer, stop: str) -> None:
    client = SluiceClient(own_server.url)
    stream = client.decisions()
    try:
        for _ in range(3):
            client.enqueue_run("before")
        seen = list(islice(stream, 3))
        if stop == "kill":
            own_server.kill()
            own_server.start()
        else:
            own_server.restart()
        # Made while the stream is disconnected: it must catch up on them when it reconnects.
        for _ in range(3):
            client.enqueue_run("after")
        seen += list(islice(stream, 3))
    finally:
        stream.close()
        client.close()
    assert [d.kind for d in seen] == [DecisionKind.ADMITTED] * 6
    positions = [d.position for d in seen]
    assert positions == recorded_decisions(SluiceClient(own_server.url))
    assert len(set(positions)) == 6


def test_decisions_after_a_position_and_filtered(client: SluiceClient, name: str) -> None:
    client.set_pool_limit(name, 1)
    first = client.enqueue_run(name)
    client.mark_run_started(first.id)
    client.claim_step_slot(first.id, "a", pool=name)
    client.claim_step_slot(first.id, "b", pool=name)
    history = client.why(first.id).decisions
    stream = client.decisions(after=history[0].position, run_id=first.id)
    try:
        got = list(islice(stream, 2))
    finally:
        stream.close()
    assert [(d.kind, d.step_key) for d in got] == [
        (DecisionKind.SLOT_GRANTED, "a"),
        (DecisionKind.SLOT_PENDING, "b"),
    ]
    by_pool = client.decisions(after=history[0].position, pool=name)
    try:
        assert all(d.pool == name for d in islice(by_pool, 2))
    finally:
        by_pool.close()


def test_run_status_changes_of_one_run_end_when_it_finishes(client: SluiceClient, name: str) -> None:
    run = client.enqueue_run(name)
    changes = client.run_status_changes(run_id=run.id)
    client.mark_run_started(run.id)
    client.terminate_run(run.id)
    client.mark_run_finished(run.id, "CANCELED")
    assert [c.status for c in changes] == [RunStatus.STARTED, RunStatus.CANCELING, RunStatus.CANCELED]
    # A run that has already finished: its final status, then the end, rather than a wait forever.
    assert [c.status for c in client.run_status_changes(run_id=run.id)] == [RunStatus.CANCELED]


def test_run_status_changes_of_every_run_resume_after_a_restart(own_server: SluiceServer) -> None:
    client = SluiceClient(own_server.url)
    changes = client.run_status_changes()
    try:
        first = client.enqueue_run("a")
        seen = list(islice(changes, 2))  # QUEUED, then STARTING
        own_server.restart()
        client.mark_run_started(first.id)
        client.mark_run_finished(first.id, "FAILURE")
        second = client.enqueue_run("b")
        seen += list(islice(changes, 4))
    finally:
        changes.close()
        client.close()
    assert [(c.run_id, c.status) for c in seen] == [
        (first.id, RunStatus.QUEUED),
        (first.id, RunStatus.STARTING),
        (first.id, RunStatus.STARTED),
        (first.id, RunStatus.FAILURE),
        (second.id, RunStatus.QUEUED),
        (second.id, RunStatus.STARTING),
    ]
    positions = [int(c.position) for c in seen]
    assert positions == sorted(set(positions))


def test_the_async_client(server: SluiceServer, name: str) -> None:
    async def scenario() -> None:
        async with AsyncSluiceClient(server.url) as client:
            stream = await client.decisions(run_id=f"{name}-run")
            run = await client.enqueue_run(name, run_id=f"{name}-run")
            decision = await anext(stream)
            assert (decision.kind, decision.run_id) == (DecisionKind.ADMITTED, run.id)
            await stream.aclose()
            await client.mark_run_started(run.id)
            async with client.slot(name, run_id=run.id) as slot:
                assert slot.granted
            fetched = await client.run(run.id)
            assert fetched is not None and all(c.released for c in fetched.step_claims)
            assert name in [pool.name for pool in await client.pools()]

    asyncio.run(scenario())
