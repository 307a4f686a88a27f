"""The launcher: starts each run the moment Sluice admits it, and keeps both records in step.

Three loops share one Dagster instance and one workspace:

- Sluice's decision stream: every ADMITTED decision launches the run through the instance's own
  run launcher (e.g. DefaultRunLauncher) with the workspace's code locations. No timer: a run
  starts as soon as the decision is recorded.
- Sluice's run status changes: a run Sluice ended (terminated from its dashboard or CLI, a start,
  cancel or run timeout, a lease that ran out) is terminated in Dagster.
- Dagster's run storage, read for runs whose status changed: STARTED and the terminal statuses go
  to Sluice (which frees their capacity and admits the next run in the same step), and runs
  Dagster holds QUEUED that Sluice does not know are enqueued (one the coordinator queued, which
  enqueued it itself, only once it has stayed QUEUED for a few seconds). Dagster's run storage
  has no change feed, so this one is read every `poll_interval_seconds` (0.1 s by default), and
  with PostgreSQL storage also as soon as Dagster notifies that it stored an event (`wakeup.py`).

A launch is recorded in Dagster before it happens: as `DagsterInstance.launch_run` and Dagster's
queue daemon do, the run moves from QUEUED to STARTING before the run launcher is called, and only
QUEUED runs are launched, so a second decision, a
reconnect that replays decisions, or a restart never launches a run twice. After the run launcher
has accepted the run, the launcher tags it `sluice/launched`. A launcher killed between the two
leaves a STARTING run without the tag: on restart it is launched again only when it certainly
never reached a run worker (DefaultRunLauncher tags a run with its code server's address before
it asks that server to start it, and the server lists the runs it runs); when that cannot be
known, it is left to the run worker, or to Sluice's start timeout, which ends it in both records.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.events import EngineEventData
from dagster._core.launcher import LaunchRunContext
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.workspace.context import IWorkspaceProcessContext
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import GetCurrentRunsResult
from dagster._serdes import deserialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from sluice_client import SluiceClient, SluiceError
from sluice_client.models import DecisionKind, RunStatus

from .config import SluiceSettings
from .enqueue import enqueue_in_sluice
from .sync import ENDED_BY_SLUICE, end_in_dagster, is_queued_through_sluice, send_dagster_status
from .tags import SLUICE_LAUNCHED_TAG
from .wakeup import RunEventWakeup, postgres_url_of

_log = logging.getLogger("dagster_sluice.launcher")

_IN_PROGRESS_IN_SLUICE = [RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING]
_IN_PROGRESS_IN_DAGSTER = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]

#: The statuses the run storage loop acts on (`send_dagster_status`). NOT_STARTED and STARTING are
#: left out in the query itself: while a queue drains, every run launched is STARTING, and reading
#: them back ten times a second cost the launcher more than the launches.
_SENT_TO_SLUICE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUCCESS,
    DagsterRunStatus.FAILURE,
    DagsterRunStatus.CANCELED,
]

#: How long a run the coordinator queued may stay QUEUED in Dagster before the launcher makes sure
#: Sluice has it too.
_QUEUED_GRACE = 5.0

#: How far back each read of Dagster's run storage looks past the newest change it has seen:
#: two writes in the same instant, or committed out of order, are still read.
_OVERLAP = timedelta(seconds=2)


class SluiceLauncher:
    """Follows Sluice and Dagster until `stop()`. One launcher per Dagster deployment."""

    def __init__(
        self,
        instance: DagsterInstance,
        workspace: IWorkspaceProcessContext,
        settings: SluiceSettings,
        *,
        launch_threads: int = 8,
    ) -> None:
        self._instance = instance
        self._workspace = workspace
        self._settings = settings
        self._client = settings.client()
        self._stop = threading.Event()
        self._launches = ThreadPoolExecutor(max_workers=launch_threads, thread_name_prefix="sluice-launch")
        # Runs being launched by this process now: a decision and the reconciliation may both ask.
        self._launching: set[str] = set()
        self._launching_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # With PostgreSQL storage, Dagster's own event notifications wake the run storage loop.
        self._wakeup: RunEventWakeup | None = None

    def start(self) -> None:
        # Streams follow the log from this position; the reconciliation below covers everything
        # before it. Anything seen by both is handled twice, which changes nothing.
        position: str | None = str(
            self._client.execute("query { snapshot { position } }")["snapshot"]["position"]
        )
        if position == "-1":
            # An empty log has no position to resume after: the streams start live, and a run
            # admitted before they connect is found STARTING in Sluice by the reconciliation.
            position = None
        self._spawn("sluice-decisions", lambda: self._follow_decisions(position))
        self._spawn("sluice-status", lambda: self._follow_sluice_status(position))
        since = self._reconcile()
        url = postgres_url_of(self._instance)
        if url is not None:
            self._wakeup = RunEventWakeup(url, self._stop)
            self._threads.append(self._wakeup.start())
        self._spawn("dagster-status", lambda: self._follow_dagster_status(since))

    def stop(self) -> None:
        self._stop.set()
        self._launches.shutdown(wait=True)
        self._client.close()

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                dead = [t.name for t in self._threads if not t.is_alive()]
                if dead:
                    raise RuntimeError(f"launcher loop(s) stopped: {', '.join(dead)}")
        finally:
            self.stop()

    # -- Sluice -> Dagster ------------------------------------------------------------------

    def _follow_decisions(self, position: str | None) -> None:
        client = self._settings.client()
        for decision in client.decisions(after=position):
            if self._stop.is_set():
                return
            if decision.kind == DecisionKind.ADMITTED:
                _log.debug("run %s admitted at %s", decision.run_id, decision.at.isoformat())
                self._launch_soon(decision.run_id)

    def _follow_sluice_status(self, position: str | None) -> None:
        client = self._settings.client()
        for change in client.run_status_changes(after=position):
            if self._stop.is_set():
                return
            if change.status in ENDED_BY_SLUICE:
                self._guard(
                    f"ending run {change.run_id} in Dagster",
                    end_in_dagster,
                    self._instance,
                    change.run_id,
                    change.status,
                    change.reason,
                )

    def _launch_soon(self, run_id: str) -> None:
        with self._launching_lock:
            if run_id in self._launching:
                return
            self._launching.add(run_id)
        self._launches.submit(self._launch, run_id)

    def _launch(self, run_id: str) -> None:
        try:
            run = self._instance.get_run_by_id(run_id)
            if run is None:
                return  # a run another Sluice client enqueued: not this deployment's
            if run.status == DagsterRunStatus.QUEUED:
                self._launch_queued(run)
            elif run.status == DagsterRunStatus.STARTING and SLUICE_LAUNCHED_TAG not in run.tags:
                self._relaunch_if_never_started(run)
        except Exception:
            _log.exception("launching run %s failed", run_id)
        finally:
            with self._launching_lock:
                self._launching.discard(run_id)

    def _launch_queued(self, run: DagsterRun) -> None:
        """What `DagsterInstance.launch_run` does, and Dagster's own queue daemon per run, less
        launch_run's first read of the run: `_launch` has just read it."""
        _log.debug("launching run %s", run.run_id)
        instance = self._instance
        starting = DagsterEvent(
            event_type_value=DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name
        )
        instance.report_dagster_event(starting, run_id=run.run_id)
        run = instance.get_run_by_id(run.run_id) or run  # STARTING now, as the run launcher expects
        request = self._workspace.create_request_context()
        try:
            instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=request))
        except Exception:
            # As launch_run does: the failure is recorded on the run, which ends it FAILURE; the
            # run storage loop tells Sluice.
            _log.exception("the run launcher refused run %s", run.run_id)
            error = serializable_error_info_from_exc_info(sys.exc_info())
            instance.report_engine_event(error.message, run, EngineEventData.engine_error(error))
            instance.report_run_failed(run)
            return
        instance.add_run_tags(run.run_id, {SLUICE_LAUNCHED_TAG: _now_iso()})
        _log.info("launched run %s (%s)", run.run_id, run.job_name)

    def _relaunch_if_never_started(self, run: DagsterRun) -> None:
        """A run a stopped launcher had begun to launch: launched again only when it certainly
        never reached a run worker, so that no run is launched twice."""
        launcher = self._instance.run_launcher
        reached = _reached_code_server(run) if isinstance(launcher, DefaultRunLauncher) else None
        if reached is None:
            _log.warning(
                "run %s was being launched when a launcher stopped; whether it reached its run "
                "worker is unknown, so it is left to the worker or to Sluice's start timeout",
                run.run_id,
            )
            return
        if reached:
            self._instance.add_run_tags(run.run_id, {SLUICE_LAUNCHED_TAG: _now_iso()})
            return
        current = self._instance.get_run_by_id(run.run_id)
        if current is None or current.status != DagsterRunStatus.STARTING:
            return  # its worker has begun after all
        request = self._workspace.create_request_context()
        launcher.launch_run(LaunchRunContext(dagster_run=current, workspace=request))
        self._instance.add_run_tags(run.run_id, {SLUICE_LAUNCHED_TAG: _now_iso()})
        _log.info("launched run %s, whose launch a stopped launcher had begun", run.run_id)

    # -- Dagster -> Sluice ------------------------------------------------------------------

    def _follow_dagster_status(self, since: datetime | None) -> None:
        client = self._settings.client()
        sent: dict[str, tuple[DagsterRunStatus, datetime]] = {}
        # Runs the coordinator queued, and when to make sure Sluice has them (monotonic time).
        recheck: dict[str, float] = {}
        interval = self._settings.poll_interval_seconds
        while not self._stop.is_set():
            self._enqueue_if_still_queued(client, recheck)
            records = self._instance.get_run_records(
                filters=RunsFilter(statuses=_SENT_TO_SLUICE, updated_after=since),
                order_by="update_timestamp",
                ascending=True,
                limit=1000,
            )
            newest = since
            for record in records:
                run = record.dagster_run
                if sent.get(run.run_id, (None,))[0] != run.status:
                    if run.status == DagsterRunStatus.QUEUED and is_queued_through_sluice(run):
                        # The coordinator enqueued it in Sluice itself a moment ago: enqueueing
                        # it again now would only compete with its launch.
                        recheck.setdefault(run.run_id, time.monotonic() + _QUEUED_GRACE)
                    else:
                        self._guard(
                            f"sending run {run.run_id}'s status to Sluice",
                            send_dagster_status,
                            client,
                            self._instance,
                            run,
                        )
                    sent[run.run_id] = (run.status, record.update_timestamp)
                if newest is None or record.update_timestamp > newest:
                    newest = record.update_timestamp
            if newest is not None:
                since = newest - _OVERLAP
                cutoff = since
                for run_id in [r for r, (_, at) in sent.items() if at < cutoff]:
                    del sent[run_id]
            if len(records) < 1000:
                if self._wakeup is not None:
                    self._wakeup.wait(interval)
                else:
                    self._stop.wait(interval)

    def _enqueue_if_still_queued(self, client: SluiceClient, recheck: dict[str, float]) -> None:
        """A run the coordinator queued that Dagster still holds QUEUED after `_QUEUED_GRACE` is
        enqueued (appending nothing when Sluice has it): the coordinator could not reach Sluice,
        or its process stopped between Dagster's record and Sluice's."""
        now = time.monotonic()
        for run_id in [r for r, at in recheck.items() if at <= now]:
            del recheck[run_id]
            run = self._instance.get_run_by_id(run_id)
            if run is not None and run.status == DagsterRunStatus.QUEUED:
                self._guard(
                    f"enqueueing run {run_id} in Sluice", send_dagster_status, client, self._instance, run
                )

    # -- after a (re)start ------------------------------------------------------------------

    def _reconcile(self) -> datetime | None:
        """Brings both records in step, whatever happened while no launcher ran. Answers the
        time from which Dagster's run storage is to be followed."""
        # Changes from here on are followed; everything before is brought in step below.
        latest = self._instance.get_run_records(limit=1, order_by="update_timestamp", ascending=False)
        since = latest[0].update_timestamp - _OVERLAP if latest else None
        # Runs Sluice holds in progress: Dagster's status goes to Sluice, and an admitted run
        # Dagster still holds QUEUED is launched.
        for sluice_run in self._client_runs(_IN_PROGRESS_IN_SLUICE):
            run = self._instance.get_run_by_id(sluice_run.id)
            if run is None:
                continue
            if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING) and sluice_run.status in (
                RunStatus.STARTING,
            ):
                self._launch_soon(run.run_id)
            elif sluice_run.status == RunStatus.CANCELING and not run.is_finished:
                self._guard(
                    "ending a run", end_in_dagster, self._instance, run.run_id, sluice_run.status, None
                )
            else:
                self._guard("sending a status", send_dagster_status, self._client, self._instance, run)
        # Runs Dagster holds QUEUED: enqueued (a second enqueue appends nothing); the answer says
        # whether Sluice has admitted or ended them meanwhile.
        for record in self._dagster_records([DagsterRunStatus.QUEUED]):
            run = record.dagster_run
            try:
                answer = enqueue_in_sluice(self._client, self._instance, run)
            except SluiceError:
                _log.exception("enqueueing run %s in Sluice failed", run.run_id)
                continue
            if answer.status == RunStatus.STARTING:
                self._launch_soon(run.run_id)
            elif answer.status in ENDED_BY_SLUICE:
                self._guard(
                    "ending a run",
                    end_in_dagster,
                    self._instance,
                    run.run_id,
                    answer.status,
                    answer.finish_reason,
                )
        # Runs Dagster holds in progress that Sluice ended while no launcher was listening.
        for record in self._dagster_records(_IN_PROGRESS_IN_DAGSTER):
            run = record.dagster_run
            if not is_queued_through_sluice(run):
                continue
            sluice_run = self._client.run(run.run_id)
            if sluice_run is not None and sluice_run.status in ENDED_BY_SLUICE:
                self._guard(
                    "ending a run",
                    end_in_dagster,
                    self._instance,
                    run.run_id,
                    sluice_run.status,
                    sluice_run.finish_reason,
                )
            elif sluice_run is not None:
                self._guard("sending a status", send_dagster_status, self._client, self._instance, run)
        return since

    def _client_runs(self, statuses: list[RunStatus]) -> Iterable:
        return self._client.runs(statuses=statuses)

    def _dagster_records(self, statuses: list[DagsterRunStatus]):
        return self._instance.get_run_records(filters=RunsFilter(statuses=statuses))

    # -- plumbing ---------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, what: str, fn: Callable[..., object], *args: object) -> None:
        """One run's trouble is logged and does not stop the loop serving all runs."""
        try:
            fn(*args)
        except Exception:
            _log.exception("%s failed", what)


def _reached_code_server(run: DagsterRun) -> bool | None:
    """Whether DefaultRunLauncher's launch of the run reached a code server: False when it never
    asked one (it tags the run with the server's address first) or the server it asked is not
    running the run; True when the server runs it; None when that server cannot be asked.

    A restarted launcher asks this seconds after the old one stopped, long after a request the
    old one had sent has been taken up, so a server that does not list the run never got it."""
    raw = run.tags.get(GRPC_INFO_TAG)
    if raw is None:
        return False
    try:
        info = json.loads(raw)
        server = DagsterGrpcClient(
            port=info.get("port"),
            socket=info.get("socket"),
            host=info.get("host", "localhost"),
            use_ssl=bool(info.get("use_ssl", False)),
        )
        current = deserialize_value(server.get_current_runs(), GetCurrentRunsResult).current_runs
    except Exception:
        return None
    return run.run_id in current


def _now_iso() -> str:
    return datetime.fromtimestamp(time.time()).astimezone().isoformat(timespec="milliseconds")
