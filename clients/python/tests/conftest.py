"""Every test talks to a real `sluice serve` started from this checkout by SluiceServer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sluice_client import SluiceClient
from sluice_client.testing import SluiceServer


@pytest.fixture(scope="session")
def server() -> Iterator[SluiceServer]:
    """One server for the tests that share it; each works in its own runs, tags and pools.

    No run limit and no root-step hold, so runs the other tests leave admitted hold nobody back;
    a test that needs a limit sets one on a tag or pool named for itself.
    """
    with SluiceServer() as running:
        with SluiceClient(running.url) as admin:
            admin.change_concurrency_config({"maxConcurrentRuns": -1, "rootStepHold": {"enabled": False}})
        yield running


@pytest.fixture
def client(server: SluiceServer) -> Iterator[SluiceClient]:
    with SluiceClient(server.url) as opened:
        yield opened


@pytest.fixture
def name() -> str:
    """A fresh name, so tests sharing a server never see each other's runs or pools."""
    return f"t{uuid.uuid4().hex[:10]}"
