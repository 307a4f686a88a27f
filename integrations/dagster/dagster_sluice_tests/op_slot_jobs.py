"""Jobs whose ops share pool `warehouse`, and a run worker for them: `python -m
dagster_sluice_tests.op_slot_jobs JOB EXECUTOR` executes one run of JOB on the instance in
$DAGSTER_HOME with Dagster's in-process or multiprocess executor, as a real run worker does, and
prints the run's id and status."""

import sys
import time

from dagster import DagsterInstance, OpExecutionContext, execute_job, job, op, reconstructable


@op(pool="warehouse")
def load_orders() -> int:
    time.sleep(0.4)
    return 1


@op(pool="warehouse")
def load_customers() -> int:
    time.sleep(0.4)
    return 1


@op(pool="warehouse")
def load_items() -> int:
    time.sleep(0.4)
    return 1


@op
def summarize(orders: int, customers: int, items: int) -> int:
    return orders + customers + items


@job
def warehouse_loads() -> None:
    """Three independent steps in pool warehouse: the multiprocess executor would run them at once."""
    summarize(load_orders(), load_customers(), load_items())


@op(pool="warehouse")
def hold_warehouse(context: OpExecutionContext) -> None:
    context.log.info("holding a warehouse slot")
    for _ in range(600):
        time.sleep(0.1)


@job
def long_hold() -> None:
    hold_warehouse()


JOBS = {"warehouse_loads": warehouse_loads, "long_hold": long_hold}

EXECUTORS = {
    "in_process": {"execution": {"config": {"in_process": {}}}},
    "multiprocess": {"execution": {"config": {"multiprocess": {"max_concurrent": 4}}}},
}


def main(argv: list[str]) -> int:
    job_name, executor = argv
    with DagsterInstance.get() as instance:
        result = execute_job(
            reconstructable(JOBS[job_name]), instance=instance, run_config=EXECUTORS[executor]
        )
        print(result.run_id, result.dagster_run.status.value, flush=True)
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
