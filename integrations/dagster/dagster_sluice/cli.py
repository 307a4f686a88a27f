"""`dagster-sluice`: the command line. `dagster-sluice launcher -w workspace.yaml` runs the launcher."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from types import FrameType

import click
from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from .launcher import SluiceLauncher
from .run_coordinator import SluiceRunCoordinator
from .version import __version__


@click.group()
@click.version_option(__version__)
def main() -> None:
    """Dagster's run queue, decided by Sluice."""


@main.command()
@click.option(
    "--workspace",
    "-w",
    "workspace_files",
    multiple=True,
    default=["workspace.yaml"],
    show_default=True,
    help="The workspace file(s) naming the code locations, as `dagster-daemon run -w` takes them.",
)
@click.option("--launch-threads", default=8, show_default=True, help="Runs launched at the same time.")
@click.option("--log-level", default="info", show_default=True)
def launcher(workspace_files: tuple[str, ...], launch_threads: int, log_level: str) -> None:
    """Start runs the moment Sluice admits them, and keep Dagster's and Sluice's records in step.

    Reads the Dagster instance from DAGSTER_HOME; its dagster.yaml must select
    SluiceRunCoordinator, whose config (url, token) this command uses too.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # SIGTERM ends the launcher as Ctrl-C does: the loops stop and the code servers are shut down.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with DagsterInstance.get() as instance:
        coordinator = instance.run_coordinator
        if not isinstance(coordinator, SluiceRunCoordinator):
            raise click.UsageError(
                "the instance's run_coordinator is "
                f"{type(coordinator).__name__}; set it to dagster_sluice's SluiceRunCoordinator "
                "in dagster.yaml (see docs/dagster.md)"
            )
        # A long-running process, as Dagster's webserver is: with PostgreSQL (or MySQL) storage
        # it keeps its database connections open instead of opening one for every query, which
        # cost ten times the launch itself. No statement timeout (0): the launcher's reads are
        # its own, not a page a person waits for. SQLite storage is unchanged.
        instance.optimize_for_webserver(
            statement_timeout=0, pool_recycle=3600, max_overflow=launch_threads + 4
        )
        target = WorkspaceFileTarget(paths=list(workspace_files))
        with WorkspaceProcessContext(instance, target) as workspace:
            launcher = SluiceLauncher(
                instance, workspace, coordinator.settings, launch_threads=launch_threads
            )
            click.echo(f"dagster-sluice launcher: following {coordinator.settings.url}", err=True)
            with contextlib.suppress(KeyboardInterrupt):
                launcher.serve_forever()


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
