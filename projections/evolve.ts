/**
 * The fold: `evolve(state, event) → state`. It updates the state in place (the log can be
 * long and copying maps per event would make replay quadratic) but is otherwise a plain
 * deterministic function: no I/O, no clock, the same log always gives the same state.
 */
import { type Constraint, countKeysOf } from '../src/domain/constraints.js';
import type { LoggedEvent } from '../src/domain/events.js';
import { isInProgress, poolsOf } from '../src/domain/run.js';
import type { Decision, RunRecord, State } from './state.js';

function runOf(state: State, runId: string): RunRecord {
  const run = state.runs.get(runId);
  if (!run) throw new Error(`event refers to unknown run ${runId}`);
  return run;
}

function countRun(state: State, run: RunRecord, by: 1 | -1): void {
  for (const key of countKeysOf(run)) {
    const next = (state.counts.get(key) ?? 0) + by;
    if (next === 0) state.counts.delete(key);
    else state.counts.set(key, next);
  }
  for (const pool of run.pools) {
    let active = state.activeRunsByPool.get(pool);
    if (by === 1) {
      if (!active) state.activeRunsByPool.set(pool, (active = new Set()));
      active.add(run.id);
    } else if (active) {
      active.delete(run.id);
      if (active.size === 0) state.activeRunsByPool.delete(pool);
    }
  }
}

function indexQueued(state: State, run: RunRecord, queued: boolean): void {
  for (const key of countKeysOf(run).slice(1)) {
    let ids = state.queuedByKey.get(key);
    if (queued) {
      if (!ids) state.queuedByKey.set(key, (ids = new Set()));
      ids.add(run.id);
    } else if (ids) {
      ids.delete(run.id);
      if (ids.size === 0) state.queuedByKey.delete(key);
    }
  }
  if (queued) state.queue.add(run.id, run.priority);
  else state.queue.remove(run.id, run.priority);
}

function leaveQueue(state: State, run: RunRecord, at: string): void {
  indexQueued(state, run, false);
  run.blockedBy = [];
  const wait = run.waits.at(-1);
  if (wait && wait.to === null) wait.to = at;
}

function record(state: State, run: RunRecord, decision: Decision): void {
  run.decisions.push(decision);
  state.decisions.push(decision);
}

export function describeReasons(reasons: readonly Constraint[]): string {
  return reasons.map((r) => r.message).join('; ');
}

export function evolve(state: State, event: LoggedEvent): State {
  state.revision = event.revision;
  state.lastEventAt = event.at;
  switch (event.type) {
    case 'RunEnqueued': {
      const d = event.data;
      const run: RunRecord = {
        id: d.runId,
        jobName: d.jobName,
        status: 'QUEUED',
        tags: d.tags,
        steps: d.steps,
        pools: poolsOf(d.steps),
        priority: d.priority,
        seq: state.runIds.length,
        maxConcurrentSteps: d.maxConcurrentSteps,
        leaseSeconds: d.leaseSeconds,
        enqueuedAt: event.at,
        admittedAt: null,
        startedAt: null,
        cancelRequestedAt: null,
        finishedAt: null,
        finishReason: null,
        blockedBy: [],
        waits: [],
        decisions: [],
      };
      state.runs.set(run.id, run);
      state.runIds.push(run.id);
      for (const pool of run.pools) state.knownPools.add(pool);
      indexQueued(state, run, true);
      break;
    }
    case 'RunAdmitted': {
      const run = runOf(state, event.data.runId);
      leaveQueue(state, run, event.at);
      run.status = 'STARTING';
      run.admittedAt = event.at;
      countRun(state, run, 1);
      record(state, run, {
        position: event.revision,
        at: event.at,
        kind: 'ADMITTED',
        runId: run.id,
        stepKey: null,
        pool: null,
        reasons: [],
        message: `run ${run.id} admitted: every limit that applies to it has room`,
      });
      break;
    }
    case 'RunBlocked': {
      const run = runOf(state, event.data.runId);
      const reasons = event.data.reasons;
      run.blockedBy = reasons;
      const open = run.waits.at(-1);
      if (open && open.to === null) open.to = event.at;
      run.waits.push({ from: event.at, to: null, reasons });
      record(state, run, {
        position: event.revision,
        at: event.at,
        kind: 'BLOCKED',
        runId: run.id,
        stepKey: null,
        pool: null,
        reasons,
        message: `run ${run.id} waits: ${describeReasons(reasons)}`,
      });
      break;
    }
    case 'RunStarted': {
      const run = runOf(state, event.data.runId);
      run.status = 'STARTED';
      run.startedAt = event.at;
      break;
    }
    case 'RunCancellationRequested': {
      const run = runOf(state, event.data.runId);
      run.status = 'CANCELING';
      run.cancelRequestedAt = event.at;
      break;
    }
    case 'RunFinished': {
      const run = runOf(state, event.data.runId);
      if (run.status === 'QUEUED') leaveQueue(state, run, event.at);
      if (isInProgress(run.status)) countRun(state, run, -1);
      run.status = event.data.status;
      run.finishedAt = event.at;
      run.finishReason = event.data.reason;
      break;
    }
    case 'MaxConcurrentRunsSet':
      state.config = { ...state.config, maxConcurrentRuns: event.data.limit };
      break;
    case 'TagConcurrencyLimitsSet':
      state.config = { ...state.config, tagConcurrencyLimits: event.data.limits };
      break;
    case 'PoolGranularitySet':
      state.config = { ...state.config, poolGranularity: event.data.granularity };
      break;
    case 'DefaultPoolLimitSet':
      state.config = { ...state.config, defaultPoolLimit: event.data.limit };
      break;
    case 'PoolLimitSet':
      state.knownPools.add(event.data.pool);
      state.config = {
        ...state.config,
        poolLimits: new Map(state.config.poolLimits).set(event.data.pool, event.data.limit),
      };
      break;
    case 'PoolLimitDeleted': {
      const poolLimits = new Map(state.config.poolLimits);
      poolLimits.delete(event.data.pool);
      state.config = { ...state.config, poolLimits };
      break;
    }
  }
  return state;
}
