"""The run lifecycle and its reads, each call against a real server."""

from __future__ import annotations

import pytest

from sluice_client import Conflict, NotFound, RunStatus, SluiceClient, Step, Tag


def test_enqueue_with_everything_and_read_it_back(client: SluiceClient, name: str) -> None:
    run = client.enqueue_run(
        f"{name}-job",
        run_id=f"{name}-run",
        tags={"team": "data", "dagster/priority": "3"},
        steps=[Step("extract", pool=f"{name}-db"), Step("load", pool=f"{name}-db", depends_on=("extract",))],
        max_concurrent_steps=2,
        lease_seconds=60,
    )
    assert run.id == f"{name}-run"
    assert run.job_name == f"{name}-job"
    assert run.priority == 3  # from the dagster/priority tag
    assert run.tags == (Tag("team", "data"), Tag("dagster/priority", "3"))
    assert run.tag("team") == "data"
    assert run.tag_dict == {"team": "data", "dagster/priority": "3"}
    assert [step.key for step in run.steps] == ["extract", "load"]
    assert run.pools == (f"{name}-db",)
    assert run.max_concurrent_steps == 2
    assert run.lease_seconds == 60
    assert client.run(run.id) == run


def test_tags_as_pairs_and_an_explicit_priority(client: SluiceClient, name: str) -> None:
    run = client.enqueue_run(name, tags=[("k", "a"), ("k2", "b")], priority=-2)
    assert run.tags == (Tag("k", "a"), Tag("k2", "b"))
    assert run.priority == -2


def test_enqueueing_the_same_run_id_twice_answers_the_same_run(client: SluiceClient, name: str) -> None:
    first = client.enqueue_run(name, run_id=name)
    again = client.enqueue_run(name, run_id=name)
    assert again.id == first.id
    assert again.enqueued_at == first.enqueued_at
    assert [r.id for r in client.runs()].count(name) == 1


def test_lifecycle_started_heartbeat_finished(client: SluiceClient, name: str) -> None:
    run = client.enqueue_run(name, lease_seconds=30)
    assert run.status is RunStatus.STARTING
    started = client.mark_run_started(run.id)
    assert started.status is RunStatus.STARTED
    assert started.started_at is not None
    beat = client.heartbeat(run.id)
    # The log records a heartbeat at most every third of the lease; the lease deadline is live.
    assert beat.status is RunStatus.STARTED
    assert beat.deadline is not None and "lease" in beat.deadline.reason
    finished = client.mark_run_finished(run.id, RunStatus.SUCCESS)
    assert finished.status is RunStatus.SUCCESS
    assert finished.status.finished
    with pytest.raises(Conflict):
        client.mark_run_started(run.id)


def test_terminate_started_then_force(client: SluiceClient, name: str) -> None:
    run = client.enqueue_run(name)
    client.mark_run_started(run.id)
    canceling = client.terminate_run(run.id)
    assert canceling.status is RunStatus.CANCELING
    assert canceling.cancel_requested_at is not None
    forced = client.terminate_run(run.id, force=True)
    assert forced.status is RunStatus.CANCELED


def test_unknown_runs(client: SluiceClient, name: str) -> None:
    assert client.run(name) is None
    with pytest.raises(NotFound) as raised:
        client.mark_run_started(name)
    assert raised.value.code == "NOT_FOUND"
    with pytest.raises(NotFound):
        client.why(name)


def test_queue_runs_and_why(client: SluiceClient, name: str) -> None:
    client.set_tag_concurrency_limits([{"key": name, "limit": 1}])
    try:
        holder = client.enqueue_run(name, tags={name: "x"})
        low = client.enqueue_run(name, tags={name: "x"}, priority=1)
        high = client.enqueue_run(name, tags={name: "x"}, priority=5)
        queued = [run.id for run in client.queue() if run.tag(name) is not None]
        assert queued == [high.id, low.id]
        assert holder.status is RunStatus.STARTING
        why = client.why(low.id)
        assert why.status is RunStatus.QUEUED
        assert why.blocked_by and why.blocked_by[0].key == name
        assert why.waits and why.waits[0].end is None
        assert [d.kind.value for d in why.decisions] == ["BLOCKED"]
        mine = {run.id for run in client.runs(statuses=[RunStatus.QUEUED])}
        assert {low.id, high.id} <= mine
        assert holder.id not in mine
        client.mark_run_finished(holder.id, "SUCCESS")
        after = client.why(high.id)
        assert after.status is RunStatus.STARTING
        assert after.waits[0].end is not None
    finally:
        client.set_tag_concurrency_limits([])
        for run in client.runs(statuses=["QUEUED", "STARTING"]):
            if run.tag(name) is not None:
                client.terminate_run(run.id, force=True)


def test_runs_pages_through_every_run(client: SluiceClient, name: str) -> None:
    ids = [client.enqueue_run(name).id for _ in range(7)]
    for run_id in ids:
        client.terminate_run(run_id, force=True)
    listed = [run.id for run in client.runs(page_size=3) if run.job_name == name]
    assert listed == ids
