"""What Dagster's own tests need here: Dagster's defensive checks turned on (as its own test suite
does), and a real Sluice server for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster._utils.env import environ
from sluice_client.testing import SluiceServer

from dagster_sluice_tests.harness import REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def enable_defensive_checks() -> Iterator[None]:
    with environ({"DAGSTER_RECORD_DEFENSIVE_CHECKS": "true"}):
        yield


@pytest.fixture
def sluice(tmp_path: Path) -> Iterator[SluiceServer]:
    """A real Sluice server (the checkout's own `sluice serve`) on a free port, empty log."""
    with SluiceServer(repo=REPO_ROOT, data_dir=tmp_path / "sluice") as server:
        yield server
