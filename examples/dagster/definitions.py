"""A few small jobs that use what Sluice decides on: tags (team, priority, max runtime) and pools.

Launch them from Dagster's UI (`dagster-webserver -w workspace.yaml`) or the CLI
(`dagster job launch -w workspace.yaml -j nightly_load`) and watch them wait in Sluice's
dashboard, each with the reason it waits.
"""

import time

from dagster import Definitions, ScheduleDefinition, in_process_executor, job, op


@op(pool="warehouse")
def load_orders() -> int:
    """Writes to the warehouse: one step of the `warehouse` pool at a time, across all runs."""
    time.sleep(5)
    return 1000


@op(pool="warehouse")
def load_customers() -> int:
    time.sleep(5)
    return 200


@op
def build_report(orders: int, customers: int) -> str:
    time.sleep(2)
    return f"{orders} orders from {customers} customers"


@job(tags={"team": "analytics", "dagster/priority": "5"}, executor_def=in_process_executor)
def nightly_load() -> None:
    build_report(load_orders(), load_customers())


@op
def train() -> None:
    time.sleep(10)


@job(tags={"team": "ml", "dagster/max_runtime": "600"}, executor_def=in_process_executor)
def train_model() -> None:
    train()


@op
def ping() -> None:
    time.sleep(1)


@job(tags={"team": "ops"})
def health_check() -> None:
    ping()


defs = Definitions(
    jobs=[nightly_load, train_model, health_check],
    schedules=[ScheduleDefinition(job=health_check, cron_schedule="*/5 * * * *")],
)
