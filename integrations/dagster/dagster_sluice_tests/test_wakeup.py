"""The launcher's run storage loop wakes when Dagster's PostgreSQL event log stores an event.

Against a throwaway PostgreSQL cluster (Debian's binaries; under CI=true a missing one fails the
test instead of skipping it) and Dagster's own PostgreSQL storage (dagster-postgres).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance

from dagster_sluice.wakeup import RunEventWakeup, postgres_url_of

from .postgres import PostgresCluster, postgres_bin_dir

#: Far longer than any wait the test allows: a loop that waited it out was never woken.
_INTERVAL = 600.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    if os.environ.get("CI") != "true":
        if postgres_bin_dir() is None:
            pytest.skip("no PostgreSQL here: /usr/lib/postgresql/*/bin/initdb is missing")
        if importlib.util.find_spec("dagster_postgres") is None:
            pytest.skip("dagster-postgres is not installed (it comes with the dev extras)")
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _instance(home: Path, storage: str) -> DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(home))


def test_postgres_url_only_for_postgres_storage(cluster: PostgresCluster, tmp_path: Path) -> None:
    url = cluster.create_database("url_of")
    storage = f"storage:\n  postgres:\n    postgres_url: {url}\n"
    with _instance(tmp_path / "pg", storage) as instance:
        assert postgres_url_of(instance) == url.replace("postgresql+psycopg2://", "postgresql://")
    with _instance(tmp_path / "sqlite", "") as instance:
        assert postgres_url_of(instance) is None


def test_a_stored_event_wakes_the_loop(cluster: PostgresCluster, tmp_path: Path) -> None:
    url = cluster.create_database("wakeup")
    storage = f"storage:\n  postgres:\n    postgres_url: {url}\n"
    stop = threading.Event()
    with _instance(tmp_path / "home", storage) as instance:
        pg_url = postgres_url_of(instance)
        assert pg_url is not None
        wakeup = RunEventWakeup(pg_url, stop)
        wakeup.start()
        try:
            assert wakeup.listening.wait(60), "the wakeup never listened"
            woke = threading.Event()
            waiter = threading.Thread(target=lambda: (wakeup.wait(_INTERVAL), woke.set()), daemon=True)
            waiter.start()
            event = DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name="a_job")
            instance.report_dagster_event(event, run_id="0f0e3f4c-5a8b-4b3e-9a53-0b1d2c3e4f50")
            assert woke.wait(60), "the loop slept through Dagster's event notification"
        finally:
            stop.set()


def test_the_loop_still_wakes_on_its_timer_without_notifications(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("timer")
    stop = threading.Event()
    wakeup = RunEventWakeup(url.replace("postgresql+psycopg2://", "postgresql://"), stop)
    wakeup.start()
    try:
        assert wakeup.listening.wait(60)
        woke = threading.Event()
        waiter = threading.Thread(target=lambda: (wakeup.wait(0.05), woke.set()), daemon=True)
        waiter.start()
        assert woke.wait(60)
    finally:
        stop.set()
