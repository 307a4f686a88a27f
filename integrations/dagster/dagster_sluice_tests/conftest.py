from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance
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


def write_storage_yaml(home: Path, sluice_url: str, lease_seconds: int = 30, token: bool = False) -> Path:
    """A Dagster home whose event log storage is SluiceEventLogStorage around Dagster's SQLite one;
    Dagster's own run coordinator, so runs reach Sluice at their first claim."""
    home.mkdir(parents=True, exist_ok=True)
    token_line = "    token: {env: SLUICE_TOKEN}\n" if token else ""
    path = home / "dagster.yaml"
    path.write_text(
        f"""event_log_storage:
  module: dagster_sluice
  class: SluiceEventLogStorage
  config:
    url: {sluice_url}
{token_line}    lease_seconds: {lease_seconds}
    event_log_storage:
      module: dagster._core.storage.event_log
      class: SqliteEventLogStorage
      config:
        base_dir: {home / "history"}
telemetry:
  enabled: false
"""
    )
    return path


@pytest.fixture
def storage_home(tmp_path: Path, sluice: SluiceServer) -> Path:
    home = tmp_path / "dagster_home"
    write_storage_yaml(home, sluice.url)
    return home


@pytest.fixture
def storage_instance(storage_home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.from_config(str(storage_home)) as instance:
        yield instance
