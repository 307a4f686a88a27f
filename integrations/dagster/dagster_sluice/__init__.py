"""dagster-sluice: Dagster's run queue, decided by Sluice."""

from .launcher import SluiceLauncher as SluiceLauncher
from .run_coordinator import SluiceRunCoordinator as SluiceRunCoordinator
from .storage import SluiceEventLogStorage as SluiceEventLogStorage
from .version import __version__ as __version__
