/**
 * The fold: `evolve(state, event) → state`. It updates the state in place (the log can be
 * long and copying maps per event would make replay quadratic) but is otherwise a plain
 * deterministic function: no I/O, no clock, the same log always gives the same state.
 */
import {
  type Constraint,
  counterKey,
  countKeysOf,
  heldKeysOf,
  poolCount,
  runCountersNamedBy,
} from '../src/domain/constraints.js';
import type { LoggedEvent } from '../src/domain/events.js';
import { isInProgress, rootStepsOf } from '../src/domain/run.js';
import { rebuildIndexes } from './indexes.js';
import { PriorityQueue } from './priority-queue.js';
import {
  claimKey,
  enqueuedRun,
  poolOfStep,
  RECENTLY_FINISHED,
  type RunRecord,
  type State,
  type StepClaim,
  waitingKey,
} from './state.js';

function runOf(state: State, runId: string): RunRecord {
  // A run's slots are released by the events that follow its RunFinished, in the same append.
  const run = state.runs.get(runId) ?? state.recentlyFinished.get(runId);
  if (!run) throw new Error(`event refers to unknown run ${runId}`);
  return run;
}

function countRun(state: State, run: RunRecord, by: 1 | -1, indexes: boolean): void {
  if (indexes) {
    for (const key of countKeysOf(run)) {
      const next = (state.counts.get(key) ?? 0) + by;
      if (next === 0) state.counts.delete(key);
      else state.counts.set(key, next);
    }
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
function countPool(state: State, run: RunRecord, pool: string, indexes: boolean): void {
  const key = poolCount(pool);
  if (indexes) state.counts.set(key, (state.counts.get(key) ?? 0) + 1);
  setMember(state.activeRunsByPool, pool, run.id, true);
}

function indexQueued(state: State, run: RunRecord, queued: boolean): void {
  // Every held key but ALL_RUNS (the first): the queue itself lists the runs under it.
  const keys = heldKeysOf(run);
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i] as string;
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

function leaveQueue(state: State, run: RunRecord): void {
  indexQueued(state, run, false);
}

function addPromised(state: State, pool: string, by: number): void {
  const next = (state.promisedSlots.get(pool) ?? 0) + by;
  if (next === 0) state.promisedSlots.delete(pool);
  else state.promisedSlots.set(pool, next);
}

/** An admitted run's root steps in pools count as holding their slots until they claim. */
function promiseRootSteps(state: State, run: RunRecord, indexes: boolean): void {
  for (const step of rootStepsOf(run.steps)) {
    if (step.pool === null || run.promisedSteps.has(step.key)) continue;
    run.promisedSteps.add(step.key);
    if (indexes) addPromised(state, step.pool, 1);
  }
}

/** One root step claimed (its claim counts from now on), or every promise of the run ends. */
function endPromises(state: State, run: RunRecord, indexes: boolean, stepKey: string | null = null): void {
  if (run.promisedSteps.size === 0) return;
  for (const key of stepKey === null ? [...run.promisedSteps] : [stepKey]) {
    if (!run.promisedSteps.delete(key)) continue;
    const pool = poolOfStep(run, key);
    if (pool !== null && indexes) addPromised(state, pool, -1);
  }
}

function setHeld(state: State, countKey: string, full: Constraint[]): void {
  if (full.length === 0) state.held.delete(countKey);
  else state.held.set(countKey, full);
}

/**
 * Each recently-finished map's keys, oldest first, read on as runs are evicted. Asking the map
 * for its first key anew each time walks past every entry deleted before it (V8 keeps deleted
 * entries until the table is rebuilt): hundreds per finish. A Map iterator goes on past
 * deletions and sees later insertions, so one per map stays at the oldest entry.
 */
const evictionOrder = new WeakMap<Map<string, RunRecord>, Iterator<string>>();

function oldestOf(map: Map<string, RunRecord>): string | undefined {
  let order = evictionOrder.get(map);
  let next = order?.next();
  // A finished iterator stays finished, even once entries are added: start a new one.
  if (!order || !next || next.done) {
    order = map.keys();
    evictionOrder.set(map, order);
    next = order.next();
  }
  return next.done ? undefined : next.value;
}

/** A finished run leaves the live state; its claims go once none is active any more. */
function retire(state: State, run: RunRecord): void {
  state.runs.delete(run.id);
  state.recentlyFinished.set(run.id, run);
  if (state.recentlyFinished.size > RECENTLY_FINISHED) {
    const oldest = oldestOf(state.recentlyFinished);
    if (oldest !== undefined) state.recentlyFinished.delete(oldest);
  }
  forgetClaimsIfDone(state, run);
}

function forgetClaimsIfDone(state: State, run: RunRecord): void {
  if (run.activeClaims.size > 0 || state.runs.has(run.id)) return;
  for (const step of run.steps) state.claims.delete(claimKey(run.id, step.key));
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
function claimFor(state: State, runId: string, stepKey: string, pool: string | null, at: string): StepClaim {
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
    claimedAt: at,
    grantedAt: null,
  };
  state.claims.set(key, claim);
  return claim;
}

export function describeReasons(reasons: readonly Constraint[]): string {
  return reasons.map((r) => r.message).join('; ');
}

/** The events that move an in-progress run's deadlines (see DeadlineIndex). */
const MOVES_DEADLINES: ReadonlySet<LoggedEvent['type']> = new Set([
  'RunAdmitted',
  'RunStarted',
  'RunCancellationRequested',
  'RunFinished',
  'RunHeartbeatRecorded',
  'StepSlotGranted',
  'StepSlotPending',
  'RootStepAllotmentEnded',
]);

export function evolve(state: State, event: LoggedEvent): State {
  if (event.type === 'ClockSteppedForward') {
    // The state is at this event now: a command's events folded after it in the same group
    // (speculatively, numbered from the state's revision) must not take its position.
    state.revision = event.revision;
    state.lastEventAt = event.at;
    // Rare: every run in progress has its deadlines moved by the step.
    for (const run of state.runs.values()) {
      if (!isInProgress(run.status)) continue;
      run.clockShiftMs = (run.clockShiftMs ?? 0) + event.data.byMs;
      state.deadlines.track(run);
    }
    return state;
  }
  foldEvent(state, event, true);
  if (MOVES_DEADLINES.has(event.type)) {
    const runId = (event.data as { runId: string }).runId;
    const run = state.runs.get(runId) ?? state.recentlyFinished.get(runId);
    if (run) state.deadlines.track(run);
  }
  return state;
}

/**
 * A fold of many events in a row (a replay), which leaves the indexes derived from the runs
 * (see rebuildIndexes) untouched until `finish` rebuilds them once: most runs of a long log
 * are enqueued and finished within it, and keeping their queue entries, counts and deadlines
 * on the way costs more than the rest of the fold. Until `finish`, only the fold may read the
 * state. `finish` answers the same state `evolve` of each event would have.
 */
export class BulkFold {
  constructor(readonly state: State) {}

  add(event: LoggedEvent): void {
    if (event.type === 'ClockSteppedForward') {
      this.state.revision = event.revision;
      this.state.lastEventAt = event.at;
      for (const run of this.state.runs.values()) {
        if (isInProgress(run.status)) run.clockShiftMs = (run.clockShiftMs ?? 0) + event.data.byMs;
      }
      return;
    }
    foldEvent(this.state, event, false);
  }

  finish(): State {
    rebuildIndexes(this.state);
    return this.state;
  }
}

/** `indexes` false: leave the derived indexes for rebuildIndexes (see BulkFold). */
function foldEvent(state: State, event: LoggedEvent, indexes: boolean): void {
  state.revision = event.revision;
  state.lastEventAt = event.at;
  switch (event.type) {
    case 'RunEnqueued': {
      const run = enqueuedRun(event.data, state.runCount++, event.at);
      state.runs.set(run.id, run);
      for (const pool of run.pools) state.knownPools.add(pool);
      if (indexes) indexQueued(state, run, true);
      break;
    }
    case 'RunAdmitted': {
      const run = runOf(state, event.data.runId);
      if (indexes) leaveQueue(state, run);
      run.status = 'STARTING';
      run.admittedAt = event.at;
      countRun(state, run, 1, indexes);
      promiseRootSteps(state, run, indexes);
      break;
    }
    case 'RunBlocked': {
      // Its reasons are the full limits of the run's counters at that moment: every counter of
      // the run that it does not name had room.
      const run = runOf(state, event.data.runId);
      for (const [key, full] of runCountersNamedBy(countKeysOf(run), event.data.reasons)) setHeld(state, key, full);
      break;
    }
    case 'LimitStatesChanged':
      for (const counter of event.data.counters) setHeld(state, counterKey(counter), counter.full);
      break;
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
      endPromises(state, run, indexes);
      break;
    }
    case 'RunFinished': {
      const run = runOf(state, event.data.runId);
      if (run.status === 'QUEUED' && indexes) leaveQueue(state, run);
      if (isInProgress(run.status)) countRun(state, run, -1, indexes);
      endPromises(state, run, indexes);
      run.status = event.data.status;
      run.finishedAt = event.at;
      run.finishReason = event.data.reason;
      run.failureReason = event.data.failureReason ?? null;
      retire(state, run);
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
      // In place, like the rest of the fold: no other state shares this map (past states,
      // simulations and checkpoints each build their own), and copying it would make an edit of
      // one pool's limit cost every pool's.
      state.config.poolLimits.set(event.data.pool, event.data.limit);
      break;
    case 'RunStepAdded': {
      const run = runOf(state, event.data.runId);
      const { stepKey, pool } = event.data;
      run.steps = [...run.steps, { key: stepKey, pool, priority: 0, added: true }];
      if (!run.pools.includes(pool)) {
        run.pools = [...run.pools, pool];
        state.knownPools.add(pool);
        // Counted from now on; RunFinished uncounts it with the run's other keys (countKeysOf).
        if (isInProgress(run.status)) countPool(state, run, pool, indexes);
      }
      break;
    }
    case 'StepSlotGranted': {
      const claim = claimFor(state, event.data.runId, event.data.stepKey, event.data.pool, event.at);
      const key = claimKey(claim.runId, claim.stepKey);
      waitFor(state, claim, false);
      if (claim.pool !== null) setMember(state.slotHolders, claim.pool, key, true);
      claim.status = 'GRANTED';
      claim.grantedAt = event.at;
      claim.reasons = [];
      const run = runOf(state, claim.runId);
      run.stepsHolding++;
      run.activeClaims.add(key);
      endPromises(state, run, indexes, claim.stepKey);
      break;
    }
    case 'StepSlotPending': {
      const claim = claimFor(state, event.data.runId, event.data.stepKey, event.data.pool, event.at);
      const key = claimKey(claim.runId, claim.stepKey);
      waitFor(state, claim, true);
      claim.reasons = event.data.reasons;
      const run = runOf(state, claim.runId);
      run.activeClaims.add(key);
      endPromises(state, run, indexes, claim.stepKey);
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
      forgetClaimsIfDone(state, run);
      break;
    }
    case 'RunHeartbeatRecorded':
      runOf(state, event.data.runId).lastHeartbeatAt = event.at;
      break;
    case 'RunMonitoringSet':
      state.monitoring = {
        startTimeoutSeconds: event.data.startTimeoutSeconds,
        cancelTimeoutSeconds: event.data.cancelTimeoutSeconds,
        maxRuntimeSeconds: event.data.maxRuntimeSeconds ?? null,
      };
      break;
    case 'RootStepHoldSet':
      state.config = { ...state.config, rootStepHold: { ...event.data } };
      break;
    case 'RootStepAllotmentEnded': {
      const run = runOf(state, event.data.runId);
      run.allotmentEndedAt = event.at;
      endPromises(state, run, indexes);
      break;
    }
    case 'PoolLimitDeleted':
      state.config.poolLimits.delete(event.data.pool);
      break;
  }
}
