"""What the tests share: a Dagster home that queues through Sluice, submitting runs the way
`dagster job launch` does, the launcher as the real command, and waiting for conditions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

try:
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
except ImportError:  # Dagster 1.10 keeps it beside the remote representations
    from dagster._core.remote_representation.origin import (  # pyright: ignore[reportMissingImports]
        InProcessCodeLocationOrigin,  # pyright: ignore[reportAttributeAccessIssue]
    )
from dagster._core.remote_representation.external import RemoteJob, RemoteRepository
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget, WorkspaceFileTarget
from dagster._utils.merger import merge_dicts

TESTS_DIR = Path(__file__).resolve().parent
#: The Sluice checkout these tests start servers from: this one, unless SLUICE_REPO names another.
REPO_ROOT = Path(os.environ.get("SLUICE_REPO") or TESTS_DIR.parents[2])
WORKSPACE_FILE = TESTS_DIR / "workspace.yaml"
LOCATION = "sluice_tests"

T = TypeVar("T")


def write_dagster_yaml(home: Path, sluice_url: str, extra: str = "") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(
        f"""run_coordinator:
  module: dagster_sluice
  class: SluiceRunCoordinator
  config:
    url: {sluice_url}
telemetry:
  enabled: false
{extra}"""
    )
    return path


def workspace_context(instance: DagsterInstance) -> WorkspaceProcessContext:
    return WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]))


def in_process_workspace(instance: DagsterInstance) -> WorkspaceProcessContext:
    """The test jobs loaded in this process: for runs that need a job's origin, not a launch."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, python_file=str(TESTS_DIR / "repo.py")),
        location_name=LOCATION,
    )
    return WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin))


def remote_job(workspace: WorkspaceProcessContext, job_name: str) -> RemoteJob:
    return _repository(workspace.create_request_context()).get_full_job(job_name)


def _repository(request: WorkspaceRequestContext) -> RemoteRepository:
    location = request.get_code_location(LOCATION)
    return next(iter(location.get_repositories().values()))


def submit(
    instance: DagsterInstance,
    workspace: WorkspaceProcessContext,
    job_name: str,
    tags: Mapping[str, str] | None = None,
) -> DagsterRun:
    """Creates the run from the code server's snapshot and submits it through the instance's run
    coordinator: what `dagster job launch` and the UI's Launch button do."""
    run = create_run(instance, workspace, job_name, tags)
    return instance.submit_run(run.run_id, workspace.create_request_context())


def create_run(
    instance: DagsterInstance,
    workspace: WorkspaceProcessContext,
    job_name: str,
    tags: Mapping[str, str] | None = None,
) -> DagsterRun:
    """The run as Dagster creates it before submitting it (NOT_STARTED)."""
    request = workspace.create_request_context()
    location = request.get_code_location(LOCATION)
    remote_job = _repository(request).get_full_job(job_name)
    plan = location.get_execution_plan(
        remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config={},
        resolved_op_selection=None,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=merge_dicts(remote_job.tags, dict(tags or {})),
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=_repository(request).asset_graph,
    )


class LauncherProcess:
    """`dagster-sluice launcher -w workspace.yaml`, the command a deployment runs."""

    def __init__(self, home: Path, log_path: Path) -> None:
        self.home = home
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LauncherProcess:
        command = str(Path(sys.executable).parent / "dagster-sluice")
        env = dict(os.environ, DAGSTER_HOME=str(self.home))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [command, "launcher", "-w", str(WORKSPACE_FILE)],
            cwd=TESTS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def kill9(self) -> None:
        """SIGKILL, the launcher alone (its code server is left orphaned, as after a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The code server it started, should it outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.process = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def statuses(instance: DagsterInstance, run_ids: list[str]) -> dict[str, DagsterRunStatus]:
    answer: dict[str, DagsterRunStatus] = {}
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        answer[run_id] = run.status
    return answer
