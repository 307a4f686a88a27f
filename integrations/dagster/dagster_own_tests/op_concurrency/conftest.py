"""The fixtures of Dagster's own op-concurrency tests, with SluiceEventLogStorage in place of the
SQLite test storage Dagster's conftest selects: every claim, release and slot count those tests
make goes to a real Sluice server; Dagster's SQLite event log storage, wrapped, keeps the events."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import PythonFileTarget
from dagster_tests.execution_tests.engine_tests import test_op_concurrency as dagster_own
from sluice_client.testing import SluiceServer


@pytest.fixture
def instance(sluice: SluiceServer) -> Iterator[dg.DagsterInstance]:
    # ignore_cleanup_errors: the multiprocess executor's step processes can still be closing
    # their files in the folder while it is removed, as Dagster's own fixture notes.
    with (
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as temp_dir,
        dg.instance_for_test(
            overrides={
                "event_log_storage": {
                    "module": "dagster_sluice",
                    "class": "SluiceEventLogStorage",
                    "config": {
                        "url": sluice.url,
                        "event_log_storage": {
                            "module": "dagster._core.storage.event_log",
                            "class": "SqliteEventLogStorage",
                            "config": {"base_dir": temp_dir},
                        },
                    },
                },
                "concurrency": {"pools": {"granularity": "op"}},
            }
        ) as _instance,
    ):
        yield _instance


@pytest.fixture
def workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceRequestContext]:
    with WorkspaceProcessContext(
        instance,
        PythonFileTarget(
            python_file=dagster_own.__file__,
            attribute="concurrency_repo",
            working_directory=None,
            location_name="test",
        ),
    ) as workspace_process_context:
        yield workspace_process_context.create_request_context()
