/**
 * The fold: `evolve(state, event) → state`. It updates the state in place (the log can be
 * long and copying maps per event would make replay quadratic) but is otherwise a plain
 * deterministic function: no I/O, no clock, the same log always gives the same state.
 */
import { type Constraint, countKeysOf, poolCount } from '../src/domain/constraints.js';
import type { LoggedEvent } from '../src/domain/events.js';
import { isInProgress } from '../src/domain/run.js';
import { PriorityQueue } from './priority-queue.js';
import {
  claimKey,
  enqueuedRun,
  type RunRecord,
  recordDecision,
  type State,
  type StepClaim,
  waitingKey,
} from './state.js';

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
  if (by === 1) state.inProgress.add(run.id);
  else state.inProgress.delete(run.id);
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

/** A pool that joins an in-progress run: counted as if the run had used it since admission. */
function countPool(state: State, run: RunRecord, pool: string): void {
  const key = poolCount(pool);
  state.counts.set(key, (state.counts.get(key) ?? 0) + 1);
  setMember(state.activeRunsByPool, pool, run.id, true);
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

function setMember(map: Map<string, Set<string>>, key: string, member: string, present: boolean): void {
  let set = map.get(key);
  if (present) {
    if (!set) map.set(key, (set = new Set()));
    set.add(member);
  } else if (set) {
    set.delete(member);
    if (set.size === 0) map.delete(key);
  }
}

function waitFor(state: State, claim: StepClaim, waiting: boolean): void {
  const poolKey = waitingKey(claim.pool);
  let queue = state.waitingClaims.get(poolKey);
  const key = claimKey(claim.runId, claim.stepKey);
  if (waiting) {
    if (!queue) state.waitingClaims.set(poolKey, (queue = new PriorityQueue()));
    queue.add(key, claim.priority);
  } else if (queue) {
    queue.remove(key, claim.priority);
    if (queue.size === 0) state.waitingClaims.delete(poolKey);
  }
}

/** The claim an event is about; a new one (with the next claim order) if the step has none active. */
function claimFor(state: State, runId: string, stepKey: string, pool: string | null): StepClaim {
  const key = claimKey(runId, stepKey);
  const existing = state.claims.get(key);
  if (existing && existing.status !== 'RELEASED') return existing;
  const run = runOf(state, runId);
  const step = run.steps.find((s) => s.key === stepKey);
  const claim: StepClaim = {
    runId,
    stepKey,
    pool,
    priority: run.priority + (step?.priority ?? 0),
    seq: state.nextClaimSeq++,
    status: 'PENDING',
    reasons: [],
  };
  state.claims.set(key, claim);
  return claim;
}

export function describeReasons(reasons: readonly Constraint[]): string {
  return reasons.map((r) => r.message).join('; ');
}

export function evolve(state: State, event: LoggedEvent): State {
  state.revision = event.revision;
  state.lastEventAt = event.at;
  switch (event.type) {
    case 'RunEnqueued': {
      const run = enqueuedRun(event.data, state.runIds.length, event.at);
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
      recordDecision(state, run, {
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
      recordDecision(state, run, {
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
    case 'RunStepAdded': {
      const run = runOf(state, event.data.runId);
      const { stepKey, pool } = event.data;
      run.steps = [...run.steps, { key: stepKey, pool, priority: 0 }];
      if (!run.pools.includes(pool)) {
        run.pools = [...run.pools, pool];
        state.knownPools.add(pool);
        // Counted from now on; RunFinished uncounts it with the run's other keys (countKeysOf).
        if (isInProgress(run.status)) countPool(state, run, pool);
      }
      break;
    }
    case 'StepSlotGranted': {
      const claim = claimFor(state, event.data.runId, event.data.stepKey, event.data.pool);
      const key = claimKey(claim.runId, claim.stepKey);
      waitFor(state, claim, false);
      if (claim.pool !== null) setMember(state.slotHolders, claim.pool, key, true);
      claim.status = 'GRANTED';
      claim.reasons = [];
      const run = runOf(state, claim.runId);
      run.stepsHolding++;
      run.activeClaims.add(key);
      recordDecision(state, run, {
        position: event.revision,
        at: event.at,
        kind: 'SLOT_GRANTED',
        runId: run.id,
        stepKey: claim.stepKey,
        pool: claim.pool,
        reasons: [],
        message: `step ${claim.stepKey} of run ${run.id} holds a slot${claim.pool === null ? '' : ` of pool ${claim.pool}`}`,
      });
      break;
    }
    case 'StepSlotPending': {
      const claim = claimFor(state, event.data.runId, event.data.stepKey, event.data.pool);
      const key = claimKey(claim.runId, claim.stepKey);
      waitFor(state, claim, true);
      claim.reasons = event.data.reasons;
      const run = runOf(state, claim.runId);
      run.activeClaims.add(key);
      recordDecision(state, run, {
        position: event.revision,
        at: event.at,
        kind: 'SLOT_PENDING',
        runId: run.id,
        stepKey: claim.stepKey,
        pool: claim.pool,
        reasons: claim.reasons,
        message: `step ${claim.stepKey} of run ${run.id} waits: ${describeReasons(claim.reasons)}`,
      });
      break;
    }
    case 'StepSlotReleased': {
      const key = claimKey(event.data.runId, event.data.stepKey);
      const claim = state.claims.get(key);
      if (!claim) throw new Error(`event releases unknown claim ${event.data.stepKey} of run ${event.data.runId}`);
      const run = runOf(state, claim.runId);
      if (claim.status === 'GRANTED') {
        if (claim.pool !== null) setMember(state.slotHolders, claim.pool, key, false);
        run.stepsHolding--;
      } else {
        waitFor(state, claim, false);
      }
      run.activeClaims.delete(key);
      claim.status = 'RELEASED';
      claim.reasons = [];
      break;
    }
    case 'RunHeartbeatRecorded':
      runOf(state, event.data.runId).lastHeartbeatAt = event.at;
      break;
    case 'RunMonitoringSet':
      state.monitoring = { ...event.data };
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
