from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sluice_client import SluiceClient
from sluice_client.testing import SluiceServer

from .harness import REPO_ROOT


@pytest.fixture
def sluice(tmp_path: Path) -> Iterator[SluiceServer]:
    """A real Sluice server (the checkout's own `sluice serve`) on a free port, empty log."""
    with SluiceServer(repo=REPO_ROOT, data_dir=tmp_path / "sluice") as server:
        yield server


@pytest.fixture
def sluice_client(sluice: SluiceServer) -> Iterator[SluiceClient]:
    with SluiceClient(sluice.url) as client:
        yield client
