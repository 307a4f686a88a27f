"""The settings dagster-sluice reads from dagster.yaml (`run_coordinator.config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dagster import Field, IntSource, Noneable, StringSource
from dagster._config.config_schema import UserConfigSchema
from sluice_client import SluiceClient


def sluice_config_schema() -> UserConfigSchema:
    """Every option, with its default: `{env: VAR}` works for each (StringSource, IntSource)."""
    return {
        "url": Field(
            StringSource,
            description=(
                "Sluice's GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql (a URL without a "
                "path gets /graphql)."
            ),
        ),
        "token": Field(
            Noneable(StringSource),
            is_required=False,
            default_value=None,
            description=(
                "A worker token for Sluice (`sluice token add NAME --role worker`); leave it out "
                "when Sluice runs without tokens. `{env: SLUICE_TOKEN}` reads it from the environment."
            ),
        ),
        "timeout_seconds": Field(
            IntSource,
            is_required=False,
            default_value=10,
            description="How long one request to Sluice may take before it counts as failed.",
        ),
        "dashboard_url": Field(
            Noneable(StringSource),
            is_required=False,
            default_value=None,
            description=(
                "Where people open Sluice's dashboard, for the run link the coordinator tags each "
                "run with; defaults to url."
            ),
        ),
        "poll_interval_seconds": Field(
            float,
            is_required=False,
            default_value=0.1,
            description=(
                "How often the launcher reads Dagster's run storage for runs that changed status "
                "(Dagster's run storage has no change feed). Launches do not wait on it: they "
                "follow Sluice's decision stream."
            ),
        ),
    }


@dataclass(frozen=True)
class SluiceSettings:
    url: str
    token: str | None = None
    timeout_seconds: float = 10.0
    dashboard_url: str | None = None
    poll_interval_seconds: float = 0.1

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SluiceSettings:
        return cls(
            url=config["url"],
            token=config.get("token"),
            timeout_seconds=float(config.get("timeout_seconds", 10)),
            dashboard_url=config.get("dashboard_url"),
            poll_interval_seconds=float(config.get("poll_interval_seconds", 0.1)),
        )

    @property
    def graphql_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.path in ("", "/"):
            return urlunsplit(parts._replace(path="/graphql"))
        return self.url

    def client(self) -> SluiceClient:
        return SluiceClient(self.graphql_url, token=self.token, timeout=self.timeout_seconds)

    def run_url(self, run_id: str) -> str:
        """The run's page in Sluice's dashboard."""
        base = (self.dashboard_url or self.url).rstrip("/")
        if base.endswith("/graphql"):
            base = base[: -len("/graphql")]
        return f"{base}/runs/{run_id}"
