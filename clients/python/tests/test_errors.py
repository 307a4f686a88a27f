"""Typed errors: tokens missing, wrong or of too small a role, an unreachable server, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sluice_client import (
    Conflict,
    Forbidden,
    InvalidInput,
    Reconnect,
    SluiceClient,
    SluiceConnectionError,
    SluiceError,
    Unauthorized,
)
from sluice_client.testing import SluiceServer, free_port


@pytest.fixture(scope="module")
def secured() -> Iterator[SluiceServer]:
    with SluiceServer(tokens={"ops": "admin", "worker": "worker", "dash": "viewer"}) as running:
        yield running


def test_no_token(secured: SluiceServer) -> None:
    with pytest.raises(Unauthorized) as raised:
        SluiceClient(secured.url).concurrency_config()
    assert raised.value.code == "UNAUTHENTICATED"


def test_a_wrong_token(secured: SluiceServer) -> None:
    with pytest.raises(Unauthorized):
        SluiceClient(secured.url, token="sluice_not-a-token").enqueue_run("x")


def test_roles(secured: SluiceServer) -> None:
    viewer = SluiceClient(secured.url, token=secured.tokens["dash"])
    worker = SluiceClient(secured.url, token=secured.tokens["worker"])
    admin = SluiceClient(secured.url, token=secured.tokens["ops"])
    assert viewer.concurrency_config().max_concurrent_runs >= -1
    with pytest.raises(Forbidden) as raised:
        viewer.enqueue_run("x")
    assert raised.value.code == "FORBIDDEN"
    run = worker.enqueue_run("x")
    with pytest.raises(Forbidden):
        worker.set_pool_limit("p", 1)
    assert admin.set_pool_limit("p", 1).limit == 1
    worker.terminate_run(run.id, force=True)


def test_a_stream_without_a_token_is_refused_not_retried(secured: SluiceServer) -> None:
    # after given: no HTTP query first, so the refusal comes from the websocket's connection_init.
    stream = SluiceClient(secured.url, reconnect=Reconnect(max_attempts=None)).decisions(after="0")
    with pytest.raises(Unauthorized):
        next(stream)


def test_a_stream_with_a_token(secured: SluiceServer) -> None:
    client = SluiceClient(secured.url, token=secured.tokens["worker"])
    stream = client.decisions()
    try:
        run = client.enqueue_run("streamed")
        assert next(stream).run_id == run.id
    finally:
        stream.close()


def test_an_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    with pytest.raises(SluiceConnectionError) as raised:
        SluiceClient(url, timeout=2).run("x")
    assert raised.value.code == "CONNECTION_ERROR"
    stream = SluiceClient(url, reconnect=Reconnect(initial_delay=0.01, max_attempts=2)).decisions(after="0")
    with pytest.raises(SluiceConnectionError):
        next(stream)


def test_bad_input_and_conflicts_are_typed(client: SluiceClient, name: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        client.enqueue_run(name, max_concurrent_steps=0)
    assert raised.value.field is not None
    with pytest.raises(InvalidInput):
        client.mark_run_finished(name, "EXPLODED")
    with pytest.raises(InvalidInput):
        client.execute("{ noSuchField }")
    run = client.enqueue_run(name)
    with pytest.raises(InvalidInput) as finish:
        client.mark_run_finished(run.id, "QUEUED")
    assert finish.value.field == "status"
    client.mark_run_finished(run.id, "SUCCESS")
    with pytest.raises(Conflict):
        client.mark_run_started(run.id)
    with pytest.raises(SluiceError):
        client.claim_step_slot(run.id, "")
