"""Tiny jobs for the tests: real ops, run by Dagster's real run launcher in subprocesses.

Every job uses the in-process executor, so a run is one process (the tests start dozens).
"""

import time

from dagster import Definitions, OpExecutionContext, in_process_executor, job, op


@op(pool="warehouse")
def load_warehouse() -> int:
    time.sleep(0.3)
    return 1


@op
def report(rows: int) -> int:
    time.sleep(0.1)
    return rows


@job(executor_def=in_process_executor)
def warehouse_job() -> None:
    report(load_warehouse())


@op
def quick() -> None:
    time.sleep(0.2)


@job(executor_def=in_process_executor)
def quick_job() -> None:
    quick()


@op
def wait_a_while(context: OpExecutionContext) -> None:
    # Sleeps in short steps so a termination (SIGTERM to the run worker) ends it promptly.
    for _ in range(600):
        time.sleep(0.1)
    context.log.info("done waiting")


@job(executor_def=in_process_executor)
def slow_job() -> None:
    wait_a_while()


defs = Definitions(jobs=[warehouse_job, quick_job, slow_job])
