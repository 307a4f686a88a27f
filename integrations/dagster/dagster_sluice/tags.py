"""Tags dagster-sluice writes on Dagster runs, and which Dagster tags it passes to Sluice."""

from __future__ import annotations

from collections.abc import Mapping

#: The run's page in Sluice's dashboard, so a person looking at a queued run in Dagster's UI can
#: follow it to why the run waits.
SLUICE_RUN_URL_TAG = "sluice/run_url"

#: Set by the launcher once the instance's run launcher has accepted the run. A run Dagster holds
#: STARTING without it was being launched when a launcher stopped: the restarted launcher decides
#: from the run launcher's own traces whether it may launch it again.
SLUICE_LAUNCHED_TAG = "sluice/launched"

#: Sluice refuses names longer than this (tag keys and values, job names, step keys, pools).
MAX_NAME_LENGTH = 255

#: Tags Dagster writes while it launches a run: they describe the launch, not the run, and are not
#: known when the run is enqueued.
_LAUNCH_TAG_PREFIXES = (".dagster/", "sluice/")


def tags_for_sluice(tags: Mapping[str, str]) -> dict[str, str]:
    """The run's tags as written, minus those Sluice's names cannot hold.

    Sluice reads the tags it knows (`dagster/priority`, `dagster/max_runtime`, tag limits) and
    records the others; a tag Sluice cannot hold at all (an empty value, a value over 255
    characters such as a long JSON config) is left out rather than have the whole run refused.
    """
    kept: dict[str, str] = {}
    for key, value in tags.items():
        if key.startswith(_LAUNCH_TAG_PREFIXES):
            continue
        if not key or not value or len(key) > MAX_NAME_LENGTH or len(value) > MAX_NAME_LENGTH:
            continue
        if "\x00" in key or "\x00" in value:
            continue
        kept[key] = value
    return kept
