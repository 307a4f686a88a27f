"""`dagster instance concurrency set/get`, Dagster's real CLI, on an instance whose event log
storage is SluiceEventLogStorage: the limit is Sluice's, recorded as a limit change whose actor is
the token's name, and `get` reads it back (with the slots in use)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sluice_client import SluiceClient
from sluice_client.testing import SluiceServer

from .conftest import write_storage_yaml
from .harness import REPO_ROOT

LIMIT_CHANGES = '{ limitChanges(pool: "warehouse") { edges { node { actor description } } } }'


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SluiceServer]:
    with SluiceServer(repo=REPO_ROOT, data_dir=tmp_path / "sluice", tokens={"ops-desk": "admin"}) as server:
        yield server


def dagster_cli(home: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    return subprocess.run(
        [dagster, "instance", "concurrency", *args],
        env={**os.environ, "DAGSTER_HOME": str(home), "SLUICE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_set_changes_sluices_limit_recorded_with_the_tokens_name_and_get_reads_it(
    tmp_path: Path, secured: SluiceServer
) -> None:
    home = tmp_path / "dagster_home"
    write_storage_yaml(home, secured.url, token=True)
    token = secured.tokens["ops-desk"]

    done = dagster_cli(home, token, "set", "warehouse", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Set concurrency limit for warehouse to 3." in done.stdout

    with SluiceClient(secured.url, token=token) as client:
        pool = client.pool("warehouse")
        assert pool is not None and pool.explicit_limit == 3
        changes = [edge["node"] for edge in client.execute(LIMIT_CHANGES, {})["limitChanges"]["edges"]]
    assert changes[-1]["actor"] == "ops-desk"
    assert "warehouse" in changes[-1]["description"] and "3" in changes[-1]["description"]

    got = dagster_cli(home, token, "get", "warehouse")
    assert got.returncode == 0, got.stderr[-3000:]
    assert '"warehouse": 0 / 3 slots occupied' in got.stdout
    every = dagster_cli(home, token, "get", "--all")
    assert '"warehouse": 0 / 3 slots occupied' in every.stdout


def test_set_without_an_admin_token_is_refused_and_changes_nothing(
    tmp_path: Path, secured: SluiceServer
) -> None:
    home = tmp_path / "dagster_home"
    write_storage_yaml(home, secured.url, token=True)
    refused = dagster_cli(home, "not-a-token", "set", "warehouse", "3")
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr or "401" in refused.stderr or "token" in refused.stderr.lower()
    with SluiceClient(secured.url, token=secured.tokens["ops-desk"]) as client:
        assert client.pool("warehouse") is None
