"""Dagster's own queue against Sluice's, side by side in one run, on the same jobs.

- `dagster`: QueuedRunCoordinator with `dagster-daemon run` (default settings; only the run limit
  each scenario needs is set).
- `sluice`: SluiceRunCoordinator with `dagster-sluice launcher` and a Sluice server (its own
  default store, a SQLite file).

Both use Dagster's own MockedRunLauncher (from dagster._core.test_utils), which records a launch
and starts no process: what is measured is the queue (submit, decide, launch), not how fast this
machine starts Python processes. A run's STARTING time is the timestamp of Dagster's own
RUN_STARTING event; the bench ends runs by recording RUN_SUCCESS in Dagster, as a run worker does.

Each side runs on each of Dagster's two storages in turn (`--storage`):
- `sqlite`: Dagster's default, a SQLite database per run for its events. The first event of a
  run creates that database (tables, indexes, alembic's stamp: about 130 ms of `submit_run` on
  this machine), and one process writes events one at a time (the storage holds a lock per
  process). Both sides pay this before a run can be STARTING.
- `postgres`: Dagster's PostgreSQL storage (dagster-postgres), what a production deployment of
  the daemon runs on; one database per side on a throwaway cluster the bench starts and stops
  (Debian's binaries under /usr/lib/postgresql, PostgreSQL's default settings).

Measured per side and storage:
- submit-to-STARTING latency (p50, p99) of runs that can start at once: from the call of
  `DagsterInstance.submit_run` (the run already created, as the UI creates it first) to Dagster's
  RUN_STARTING event; also the `submit_run` call alone and what is left after it returns;
- release-to-next-launch latency: one run at a time, the running one ends, how long until the
  next one is STARTING;
- launches per second draining queued runs once the limit is lifted;
- memory (RSS) of each side's processes: the daemon and its code server; the launcher, its code
  server and the Sluice server (the PostgreSQL server, which both share, is not counted).

Run: `npm run bench:dagster` (both storages; `npm run bench:dagster -- --storage postgres` for
one), or `python integrations/dagster/bench/coordinator_bench.py --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter  # noqa: E402
from dagster._core.workspace.context import WorkspaceProcessContext  # noqa: E402
from sluice_client import SluiceClient  # noqa: E402
from sluice_client.testing import SluiceServer  # noqa: E402

from dagster_sluice_tests.harness import (  # noqa: E402
    REPO_ROOT,
    WORKSPACE_FILE,
    create_run,
    in_process_workspace,
    submit,
)
from dagster_sluice_tests.postgres import PostgresCluster  # noqa: E402

MOCK_LAUNCHER = """run_launcher:
  module: dagster._core.test_utils
  class: MockedRunLauncher
telemetry:
  enabled: false
"""


class Side:
    """One queue under test: how to set its run limit, start it, and which processes it is.

    ``storage``: the dagster.yaml lines naming Dagster's storage ("" for its default, SQLite).
    """

    name = ""

    def __init__(self, home: Path, storage: str = "") -> None:
        self.home = home
        self.storage = storage
        self.procs: list[subprocess.Popen[bytes]] = []

    def set_max_runs(self, limit: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for proc in self.procs:
            _stop(proc)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]


class DagsterSide(Side):
    name = "dagster"

    def _write(self, limit: int) -> None:
        (self.home / "dagster.yaml").write_text(
            "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
            f"  config:\n    max_concurrent_runs: {limit}\n" + MOCK_LAUNCHER + self.storage
        )

    def open(self) -> DagsterSide:
        self.home.mkdir(parents=True, exist_ok=True)
        self._write(0)
        return self

    def set_max_runs(self, limit: int) -> None:
        # Dagster reads its run limit at start-up: the daemon is restarted with the new one.
        for proc in self.procs:
            _stop(proc)
        self.procs = []
        self._write(limit)
        self.procs.append(_spawn(["dagster-daemon", "run", "-w", str(WORKSPACE_FILE)], self.home, "daemon"))


class SluiceSide(Side):
    name = "sluice"

    def open(self) -> SluiceSide:
        self.server = SluiceServer(repo=REPO_ROOT, data_dir=self.home / "sluice").start()
        self.client = SluiceClient(self.server.url)
        self.client.set_max_concurrent_runs(0)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(
            "run_coordinator:\n  module: dagster_sluice\n  class: SluiceRunCoordinator\n"
            f"  config:\n    url: {self.server.url}\n" + MOCK_LAUNCHER + self.storage
        )
        self.procs.append(
            _spawn(["dagster-sluice", "launcher", "-w", str(WORKSPACE_FILE)], self.home, "launcher")
        )
        time.sleep(15)  # the launcher's code server starts; launches need it
        return self

    def set_max_runs(self, limit: int) -> None:
        self.client.set_max_concurrent_runs(limit)

    def close(self) -> None:
        super().close()
        self.client.close()
        self.server.stop()

    def pids(self) -> list[int]:
        server = self.server._process  # the node process serving Sluice
        return super().pids() + ([server.pid] if server is not None else [])


def _spawn(command: list[str], home: Path, name: str) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).parent / command[0])
    log = (home / f"{name}.log").open("ab")
    return subprocess.Popen(
        [exe, *command[1:]],
        cwd=WORKSPACE_FILE.parent,
        env=dict(os.environ, DAGSTER_HOME=str(home)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo, seen = 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def _starting_at(instance: DagsterInstance, run_id: str) -> float | None:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_STARTING).records
    return records[0].event_log_entry.timestamp if records else None


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout} s")
        time.sleep(0.02)


def _started(instance: DagsterInstance, run_ids: list[str]) -> int:
    # A count, not the runs: reading 200 runs back fifty times a second took most of a core from
    # the two sides being measured. Times come from Dagster's events, not from this wait.
    queued = instance.get_runs_count(filters=RunsFilter(run_ids=run_ids, statuses=[DagsterRunStatus.QUEUED]))
    return len(run_ids) - queued


def _succeed(instance: DagsterInstance, run_ids: list[str]) -> None:
    """Ends runs as a run worker would: RUN_SUCCESS in Dagster's event log."""
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        event = DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)
        instance.report_dagster_event(event, run_id=run_id)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(
    side: Side, instance: DagsterInstance, ws: WorkspaceProcessContext, args: argparse.Namespace
) -> dict:
    result: dict[str, float] = {}

    # Drain: runs queued while nothing may start, then the limit is lifted.
    queued = [submit(instance, ws, "quick_job").run_id for _ in range(args.drain_runs)]
    side.set_max_runs(-1)
    _wait(lambda: _started(instance, queued) == len(queued), 600, f"{side.name}: draining")
    times = sorted(t for t in (_starting_at(instance, r) for r in queued) if t is not None)
    result["drain_launches_per_s"] = (len(times) - 1) / max(times[-1] - times[0], 1e-6)
    _succeed(instance, queued)

    # Submit to STARTING, runs that can start at once.
    latencies: list[float] = []
    calls: list[float] = []
    submitted: list[tuple[str, float]] = []
    for _ in range(args.latency_runs):
        run = create_run(instance, ws, "quick_job")
        request = ws.create_request_context()
        at = time.time()
        instance.submit_run(run.run_id, request)
        calls.append(time.time() - at)
        submitted.append((run.run_id, at))
        time.sleep(args.spacing)
    _wait(
        lambda: _started(instance, [r for r, _ in submitted]) == len(submitted), 120, f"{side.name}: latency"
    )
    returned: list[float] = []
    for (run_id, at), call in zip(submitted, calls, strict=True):
        started = _starting_at(instance, run_id)
        assert started is not None
        latencies.append(started - at)
        returned.append(started - at - call)
    result["submit_to_starting_p50_ms"] = _percentile(latencies, 50) * 1000
    result["submit_to_starting_p99_ms"] = _percentile(latencies, 99) * 1000
    # The submit_run call alone: mostly Dagster writing the run's first event to its storage (with
    # SQLite, creating the run's own event database), a floor both sides share.
    result["submit_call_p50_ms"] = _percentile(calls, 50) * 1000
    # From submit_run's return to STARTING: what is left once that floor is paid.
    result["return_to_starting_p50_ms"] = _percentile(returned, 50) * 1000
    _succeed(instance, [r for r, _ in submitted])

    # Release to next launch: one run at a time.
    side.set_max_runs(1)
    chain = [submit(instance, ws, "quick_job").run_id for _ in range(args.release_runs + 1)]
    _wait(lambda: _started(instance, chain) == 1, 120, f"{side.name}: first of the chain")
    releases: list[float] = []
    for _ in range(args.release_runs):
        running = next(r for r in chain if _starting_at(instance, r) is not None and _is_live(instance, r))
        time.sleep(0.3)
        released = time.time()
        _succeed(instance, [running])
        before = _started(instance, chain)
        _wait(lambda before=before: _started(instance, chain) > before, 120, f"{side.name}: next launch")
        following = max(t for t in (_starting_at(instance, r) for r in chain) if t is not None)
        releases.append(following - released)
    result["release_to_launch_p50_ms"] = _percentile(releases, 50) * 1000
    result["release_to_launch_p99_ms"] = _percentile(releases, 99) * 1000
    result["rss_mb"] = _rss_mb(side.pids())
    _succeed(instance, [r for r in chain if _is_live(instance, r)])
    return result


def _is_live(instance: DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status.value in ("STARTING", "STARTED")


STORAGES = ("sqlite", "postgres")

ROWS = [
    ("submit_to_starting_p50_ms", True),
    ("submit_to_starting_p99_ms", True),
    ("submit_call_p50_ms", True),
    ("return_to_starting_p50_ms", True),
    ("release_to_launch_p50_ms", True),
    ("release_to_launch_p99_ms", True),
    ("drain_launches_per_s", False),
    ("rss_mb", True),
]


def run_storage(storage: str, args: argparse.Namespace, tmp: Path) -> dict[str, dict]:
    """Both sides on one storage: Dagster's default SQLite, or a PostgreSQL database each on a
    throwaway cluster the bench starts (the same cluster, so both pay the same server)."""
    cluster = PostgresCluster().start() if storage == "postgres" else None
    results: dict[str, dict] = {}
    try:
        for side_class in (SluiceSide, DagsterSide):
            yaml = ""
            if cluster is not None:
                url = cluster.create_database(side_class.name)
                yaml = f"storage:\n  postgres:\n    postgres_url: {url}\n"
            side = side_class(tmp / storage / side_class.name, yaml).open()
            try:
                with (
                    DagsterInstance.from_config(str(side.home)) as instance,
                    in_process_workspace(instance) as ws,
                ):
                    # This process submits runs as Dagster's webserver does when a person clicks
                    # Launch, and holds its connections as the webserver does (its defaults:
                    # 15 s statement timeout, hourly recycling, 20 overflow connections).
                    instance.optimize_for_webserver(
                        statement_timeout=15000, pool_recycle=3600, max_overflow=20
                    )
                    results[side.name] = measure(side, instance, ws, args)
            finally:
                side.close()
            print(json.dumps({storage: {side.name: results[side.name]}}), file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drain-runs", type=int, default=200)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--release-runs", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between latency submissions")
    parser.add_argument(
        "--storage",
        choices=(*STORAGES, "both"),
        default="both",
        help="Dagster's storage for both sides: its default SQLite, PostgreSQL, or one after the other",
    )
    args = parser.parse_args()

    storages = STORAGES if args.storage == "both" else (args.storage,)
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="coordinator-bench-") as tmp:
        for storage in storages:
            results[storage] = run_storage(storage, args, Path(tmp))

    header = "".join(f"{f'{st} dagster':>17}{'sluice':>9}{'ratio':>8}" for st in storages)
    print(f"{'':28}{header}")
    for key, better_low in ROWS:
        line = f"{key:28}"
        for storage in storages:
            d, s = results[storage]["dagster"][key], results[storage]["sluice"][key]
            # STARTING can be recorded before submit_run returns (the launcher is that quick):
            # a time at or below zero has no ratio.
            ratio = f"{(d / s if better_low else s / d):7.1f}x" if d > 0 and s > 0 else f"{'n/a':>8}"
            line += f"{d:17.1f}{s:9.1f}{ratio}"
        print(line)
    print("ratio: how many times better Sluice is (below 1: worse)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
