"""The blocking client: every call a program makes to Sluice, over HTTP; streams over graphql-ws."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import operations as ops
from . import subscriptions
from .errors import NotFound, SluiceError, SluiceTimeout
from .models import (
    ConcurrencyConfig,
    Decision,
    Pool,
    PoolGranularity,
    Run,
    RunStatus,
    RunStatusChange,
    Step,
    StepSlot,
    TagConcurrencyLimit,
    Why,
)
from .streams import Reconnect, Subscription, blocking, resumable
from .transport import answer_of, body_for, default_url, headers_for, transport_error

T = TypeVar("T")


def slot_run_id(run_id: str | None) -> str:
    found = run_id or os.environ.get("SLUICE_RUN_ID")
    if not found:
        raise ValueError("slot() needs a run: give run_id, or run inside `sluice run` (SLUICE_RUN_ID)")
    return found


def slot_step_key(pool: str | None, step_key: str | None) -> str:
    return step_key or f"{pool or 'step'}-{uuid.uuid4().hex[:8]}"


def next_wait(claim: StepSlot, attempt: int) -> float:
    """The server's suggested backoff when it gives one, else 0.1 s doubling up to 2 s."""
    if claim.retry_after_seconds is not None:
        return max(0.05, claim.retry_after_seconds)
    return min(2.0, 0.1 * (2**attempt))


def start_position(position: str | None) -> str | None:
    """Where a stream 'from now' resumes from when no item came before its connection dropped."""
    return position


class SluiceClient:
    """A blocking Sluice client. Thread-safe for calls; each stream runs on its own event loop.

    ``url``: the GraphQL endpoint (default ``$SLUICE_URL``, else ``http://127.0.0.1:$PORT/graphql``).
    ``token``: a bearer token (default ``$SLUICE_TOKEN``; none in open mode). ``actor``: recorded
    as who made each change, for a service acting on someone's behalf.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        *,
        actor: str | None = None,
        reconnect: Reconnect | None = None,
    ) -> None:
        self.url = url or default_url()
        self.token = token if token is not None else os.environ.get("SLUICE_TOKEN") or None
        self.timeout = timeout
        self.reconnect = reconnect or Reconnect()
        self._http = httpx.Client(timeout=timeout, headers=headers_for(self.token, actor))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SluiceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- the escape hatch -------------------------------------------------------------------

    def execute(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any query or mutation; answers its ``data``, raises a typed SluiceError for its errors."""
        try:
            response = self._http.post(self.url, json=body_for(document, variables))
        except httpx.HTTPError as error:
            raise transport_error(error, self.url) from error
        return dict(answer_of(response))

    def _call(self, operation: ops.Operation[T]) -> T:
        return operation.read(self.execute(operation.document, operation.variables))

    # -- runs -------------------------------------------------------------------------------

    def enqueue_run(
        self,
        job_name: str,
        *,
        run_id: str | None = None,
        tags: ops.TagsArg = None,
        steps: Sequence[Step] | None = None,
        priority: int | None = None,
        max_concurrent_steps: int | None = None,
        lease_seconds: int | None = None,
    ) -> Run:
        """Queues a run; enqueueing the same ``run_id`` again appends nothing and answers the run."""
        return self._call(
            ops.enqueue_run(
                job_name,
                run_id=run_id,
                tags=tags,
                steps=steps,
                priority=priority,
                max_concurrent_steps=max_concurrent_steps,
                lease_seconds=lease_seconds,
            )
        )

    def mark_run_started(self, run_id: str) -> Run:
        return self._call(ops.mark_run_started(run_id))

    def mark_run_finished(self, run_id: str, status: RunStatus | str) -> Run:
        """``status``: SUCCESS, FAILURE or CANCELED."""
        return self._call(ops.mark_run_finished(run_id, status))

    def heartbeat(self, run_id: str) -> Run:
        return self._call(ops.heartbeat(run_id))

    def terminate_run(self, run_id: str, force: bool = False) -> Run:
        return self._call(ops.terminate_run(run_id, force))

    def run(self, run_id: str) -> Run | None:
        return self._call(ops.run(run_id))

    def runs(
        self, statuses: Sequence[RunStatus | str] | None = None, *, page_size: int = ops.RUNS_PAGE
    ) -> list[Run]:
        """Every run (with one of ``statuses``, if given) in enqueue order, all pages."""
        found: list[Run] = []
        after: str | None = None
        while True:
            page, after = self._call(ops.runs_page(statuses, after, page_size))
            found.extend(page)
            if after is None:
                return found

    def queue(self) -> list[Run]:
        """QUEUED runs in the order in which they are considered for admission."""
        return self._call(ops.queue())

    def why(self, run_id: str) -> Why:
        """What holds the run back now, every stretch it waited, every decision about it."""
        answer = self._call(ops.why(run_id))
        if answer is None:
            raise NotFound("NOT_FOUND", f"run {run_id} does not exist")
        return answer

    # -- limits -----------------------------------------------------------------------------

    def concurrency_config(self) -> ConcurrencyConfig:
        return self._call(ops.concurrency_config())

    def set_max_concurrent_runs(self, limit: int) -> ConcurrencyConfig:
        """-1: no limit."""
        return self._call(ops.set_max_concurrent_runs(limit))

    def set_tag_concurrency_limits(
        self, limits: Sequence[TagConcurrencyLimit | Mapping[str, Any]]
    ) -> ConcurrencyConfig:
        """Replaces the whole list."""
        return self._call(ops.set_tag_concurrency_limits(limits))

    def set_default_pool_limit(self, limit: int | None) -> ConcurrencyConfig:
        """None: pools with no limit of their own are unlimited."""
        return self._call(ops.set_default_pool_limit(limit))

    def set_pool_granularity(self, granularity: PoolGranularity | str) -> ConcurrencyConfig:
        return self._call(ops.set_pool_granularity(granularity))

    def change_concurrency_config(self, change: Mapping[str, Any]) -> ConcurrencyConfig:
        """Several edits as one (a ``ConfigChangeInput``): one append, one admission pass."""
        return self._call(ops.change_concurrency_config(change))

    def set_pool_limit(self, pool: str, limit: int) -> Pool:
        return self._call(ops.set_pool_limit(pool, limit))

    def delete_pool_limit(self, pool: str) -> Pool:
        return self._call(ops.delete_pool_limit(pool))

    def pool(self, name: str) -> Pool | None:
        return self._call(ops.pool(name))

    def pools(self) -> list[Pool]:
        return self._call(ops.pools())

    # -- step slots -------------------------------------------------------------------------

    def claim_step_slot(self, run_id: str, step_key: str, pool: str | None = None) -> StepSlot:
        """Granted now, or waiting in its pool. Claiming again answers the same claim as it stands."""
        return self._call(ops.claim_step_slot(run_id, step_key, pool))

    def release_step_slot(self, run_id: str, step_key: str) -> StepSlot:
        """Gives the slot back, or withdraws a waiting claim."""
        return self._call(ops.release_step_slot(run_id, step_key))

    def free_step_slots(self, run_id: str, step_key: str | None = None) -> Run:
        """Frees a step's slot, or every slot of the run (None), without ending the run (admin)."""
        return self._call(ops.free_step_slots(run_id, step_key))

    @contextlib.contextmanager
    def slot(
        self,
        pool: str | None = None,
        *,
        run_id: str | None = None,
        step_key: str | None = None,
        wait_timeout: float | None = None,
    ) -> Generator[StepSlot, None, None]:
        """Holds a step's slot for the ``with`` block: claims, waits until granted, always releases.

        ``run_id`` defaults to ``$SLUICE_RUN_ID``; ``step_key`` to the pool's name and a random
        suffix (with ``pool``, a step the run did not declare is added to it). After
        ``wait_timeout`` seconds of waiting the claim is withdrawn and SluiceTimeout raised.
        """
        run = slot_run_id(run_id)
        key = slot_step_key(pool, step_key)
        claim = self.claim_step_slot(run, key, pool)
        try:
            deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
            attempt = 0
            while claim.waiting:
                pause = next_wait(claim, attempt)
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise SluiceTimeout(f"step {key} of run {run} waited {wait_timeout} s for a slot")
                time.sleep(pause)
                attempt += 1
                claim = self.claim_step_slot(run, key, pool)
            yield claim
        finally:
            with contextlib.suppress(SluiceError):
                self.release_step_slot(run, key)

    # -- streams ----------------------------------------------------------------------------

    def _stream(self, subscription: Subscription[T], after: str | None) -> Generator[T, None, None]:
        if after is None:
            after = start_position(self._call(ops.log_position()))
        return blocking(resumable(self.url, self.token, subscription, after, self.reconnect, self.timeout))

    def decisions(
        self, after: str | None = None, run_id: str | None = None, pool: str | None = None
    ) -> Generator[Decision, None, None]:
        """Every decision after ``after`` (None: from now on), then live; reconnects and resumes
        after the last decision it gave, so none is lost or repeated. Never ends by itself."""
        return self._stream(subscriptions.decisions(run_id, pool), after)

    def run_status_changes(
        self, after: str | None = None, run_id: str | None = None
    ) -> Generator[RunStatusChange, None, None]:
        """Every run status change after ``after`` (None: from now on), of one run or all; resumes
        like ``decisions``. With ``run_id`` it ends after the change that finishes the run, and
        for a run that has already finished (with ``after`` None) it gives that status and ends."""
        if run_id is not None and after is None:
            after = self._call(ops.log_position())
            run = self.run(run_id)
            if run is None:
                raise NotFound("NOT_FOUND", f"run {run_id} does not exist")
            if run.status.finished:
                return (change for change in [subscriptions.final_change(run, after)])
        return self._stream(subscriptions.run_status_changes(run_id), after)
