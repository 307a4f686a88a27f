"""Dagster's own op-concurrency tests (runs sharing a pool on the in-process, multiprocess and
step-delegating executors, failures, retries, blocked-step messages, asset checks), imported from
the Dagster release installed here and run as they are, against SluiceEventLogStorage (see this
folder's conftest)."""

from dagster_tests.execution_tests.engine_tests.test_op_concurrency import *  # noqa: F403  # pyright: ignore[reportWildcardImportFromLibrary]
