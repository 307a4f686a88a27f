/**
 * The decider: `decide(command, state, context) → events`. Pure: time and new ids come in
 * through the context, nothing is read or written. Every command that can free or change
 * capacity runs the admission pass and the slot pass, and appends their decisions with its
 * own events, in one append.
 */

import type { DeadlineSettings } from '../../projections/deadline-index.js';
import {
  claimKey,
  enqueuedRun,
  poolOfStep,
  type RunRecord,
  type State,
  type StepClaim,
} from '../../projections/state.js';
import { admissionPass, type CapacityChange } from './admission.js';
import {
  type Command,
  type ConfigEdits,
  recordedEnqueue,
  validateConfigChange,
  validateEnqueue,
  validateFinalStatus,
  validateGranularity,
  validateLimit,
  validateMaxConcurrentRuns,
  validateMaxRuntime,
  validatePoolName,
  validateRunId,
  validateStepKey,
  validateTagLimits,
  validateTimeout,
} from './commands.js';
import { LIMITS, type TagConcurrencyLimit } from './config.js';
import { ALL_RUNS, counterOfKey, poolCount, rootPoolCount, tagKeyCount, tagValueCount } from './constraints.js';
import { allotmentEndOf, type Deadline, deadlinesOf, heartbeatIsDue, passedDeadline } from './deadlines.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from './errors.js';
import type { DomainEvent, MonitoringReason } from './events.js';
import { MapOverlay } from './map-overlay.js';
import { type FinalStatus, isFinished, isInProgress, priorityOf, type Step } from './run.js';
import { ALL_POOLS, type SlotChange, slotPass } from './slots.js';

export interface DecideContext {
  /** ISO-8601 UTC time of the command. */
  now: string;
  /** The id to give a run enqueued without one. */
  newRunId: string;
  /**
   * The finished run the command names, when it has left the live state: the command layer
   * looks it up in the history, so the decider can answer retries and conflicts about it.
   */
  pastRun?: RunRecord | null;
  /**
   * The command was rebuilt from recorded events (a replay of the log): its input passed
   * validation when it was first decided, so it is not validated again. Never for a command
   * from a client.
   */
  fromLog?: boolean;
}

interface Change {
  capacity?: CapacityChange;
  slots?: SlotChange;
  /** Runs whose root steps stop being promised slots (ended, being canceled, allotment over). */
  unpromised?: readonly RunRecord[];
}

/**
 * How a command changes pools' root-step counts (see RootStepHold): a new claim counts, unless
 * it is a promised root step's (already counted); a released or withdrawn claim stops counting;
 * so do the promised root steps of runs that end, are being canceled, or pass their allotment.
 */
const NO_DELTA: ReadonlyMap<string, number> = new Map();

function rootDeltaOf(state: State, change: Change): ReadonlyMap<string, number> {
  // Made only when some pool's count moves: most commands move none.
  let delta: Map<string, number> | null = null;
  const claimed = change.slots?.claimed;
  if (claimed && !state.runs.get(claimed.runId)?.promisedSteps.has(claimed.stepKey)) {
    delta = moveRootCount(delta, claimed.pool, 1);
  }
  for (const claim of change.slots?.released ?? []) delta = moveRootCount(delta, claim.pool, -1);
  for (const run of change.unpromised ?? []) {
    for (const stepKey of run.promisedSteps) delta = moveRootCount(delta, poolOfStep(run, stepKey), -1);
  }
  return delta ?? NO_DELTA;
}

/** Moves a pool's root-step count in `delta` (made when first needed), dropping counts back at 0. */
function moveRootCount(delta: Map<string, number> | null, pool: string | null, by: number): Map<string, number> | null {
  if (pool === null) return delta;
  const moved = delta ?? new Map<string, number>();
  const key = rootPoolCount(pool);
  const next = (moved.get(key) ?? 0) + by;
  if (next === 0) moved.delete(key);
  else moved.set(key, next);
  return moved;
}

/** The command's own events, then slot decisions, then admission decisions. */
function withPasses(state: State, primary: DomainEvent[], change: Change): DomainEvent[] {
  const events = [...primary];
  const rootDelta = rootDeltaOf(state, change);
  const capacity = change.capacity ?? (rootDelta.size > 0 ? {} : undefined);
  if (change.slots) {
    const { granted, pending } = slotPass(state, change.slots);
    for (const c of granted) {
      events.push({ type: 'StepSlotGranted', data: { runId: c.runId, stepKey: c.stepKey, pool: c.pool } });
    }
    for (const { claim: c, reasons } of pending) {
      events.push({ type: 'StepSlotPending', data: { runId: c.runId, stepKey: c.stepKey, pool: c.pool, reasons } });
    }
  }
  if (capacity) {
    // Each field named: a spread of whichever change the command made costs more than the pass.
    const { admitted, firstHold, counters } = admissionPass(state, {
      config: capacity.config,
      freed: capacity.freed,
      enqueued: capacity.enqueued,
      editedKeys: capacity.editedKeys,
      rootDelta,
    });
    for (const run of admitted) events.push({ type: 'RunAdmitted', data: { runId: run.id } });
    if (firstHold) events.push({ type: 'RunBlocked', data: { runId: firstHold.run.id, reasons: firstHold.reasons } });
    if (counters.length > 0) {
      events.push({
        type: 'LimitStatesChanged',
        data: { counters: counters.map(({ countKey, inUse, full }) => ({ ...counterOfKey(countKey), inUse, full })) },
      });
    }
  }
  return events;
}

/** A live run, a recently finished one, or the finished one the command layer found. */
export function knownRun(state: State, runId: string, context: Pick<DecideContext, 'pastRun'>): RunRecord | undefined {
  return (
    state.runs.get(runId) ??
    state.recentlyFinished.get(runId) ??
    (context.pastRun?.id === runId ? context.pastRun : undefined)
  );
}

function existingRun(state: State, runId: string, context: DecideContext): RunRecord {
  const run = knownRun(state, context.fromLog ? runId : validateRunId(runId), context);
  if (!run) throw new RunNotFoundError(runId);
  return run;
}

/** The run's claims in the order they were made (each claim's sequence number, kept in the state). */
function activeClaimsOf(state: State, run: RunRecord): StepClaim[] {
  if (run.activeClaims.size === 0) return [];
  return [...run.activeClaims].map((key) => state.claims.get(key) as StepClaim).sort((a, b) => a.seq - b.seq);
}

interface Ending {
  run: RunRecord;
  status: FinalStatus;
  reason: string | null;
  failureReason?: MonitoringReason;
}

/**
 * Ends runs: each run's RunFinished, every slot and claim it has released, capacity re-offered.
 * `allotmentEnded`: STARTED runs whose root steps stop counting as holding slots at the same time.
 * Recorded in that order: the allotments that end, then each run's end, each list as given.
 */
function finish(state: State, endings: Ending[], allotmentEnded: readonly RunRecord[] = []) {
  const primary: DomainEvent[] = allotmentEnded.map((run) => ({
    type: 'RootStepAllotmentEnded',
    data: { runId: run.id },
  }));
  const released: StepClaim[] = [];
  for (const { run, status, reason, failureReason } of endings) {
    const data = { runId: run.id, status, reason, ...(failureReason ? { failureReason } : {}) };
    primary.push({ type: 'RunFinished', data });
    for (const claim of activeClaimsOf(state, run)) {
      released.push(claim);
      primary.push({
        type: 'StepSlotReleased',
        data: {
          runId: run.id,
          stepKey: claim.stepKey,
          pool: claim.pool,
          held: claim.status === 'GRANTED',
          reason: `run ${run.id} finished as ${status}`,
        },
      });
    }
  }
  const freed = endings.filter(({ run }) => isInProgress(run.status)).map(({ run }) => run);
  const unpromised = [...freed, ...allotmentEnded].filter((run) => run.promisedSteps.size > 0);
  if (freed.length === 0 && released.length === 0 && unpromised.length === 0) return primary;
  return withPasses(state, primary, { capacity: { freed }, slots: { released }, unpromised });
}

/** Count keys whose limits differ between two lists of tag limits. */
function editedTagKeys(before: readonly TagConcurrencyLimit[], after: readonly TagConcurrencyLimit[]): Set<string> {
  const id = (l: TagConcurrencyLimit) => JSON.stringify([l.key, l.value, l.applyLimitPerUniqueValue, l.limit]);
  const beforeIds = new Set(before.map(id));
  const afterIds = new Set(after.map(id));
  const keys = new Set<string>();
  for (const l of [...before.filter((l) => !afterIds.has(id(l))), ...after.filter((l) => !beforeIds.has(id(l)))]) {
    keys.add(l.value !== null && !l.applyLimitPerUniqueValue ? tagValueCount(l.key, l.value) : tagKeyCount(l.key));
  }
  return keys;
}

/**
 * Applies limit edits: one event per value that differs, then one admission pass and one
 * slot pass with the whole new config, so several edits made together act as one.
 */
function editConfig(state: State, edits: ConfigEdits): DomainEvent[] {
  const before = state.config;
  // The edited limits laid over the state's: an edit of one pool costs one entry, not a copy of every pool's.
  const poolLimits = new MapOverlay(before.poolLimits);
  const config = { ...before, poolLimits };
  const events: DomainEvent[] = [];
  const editedKeys = new Set<string>();
  const editedPools = new Set<string>();
  if (edits.maxConcurrentRuns !== undefined && edits.maxConcurrentRuns !== before.maxConcurrentRuns) {
    config.maxConcurrentRuns = edits.maxConcurrentRuns;
    events.push({ type: 'MaxConcurrentRunsSet', data: { limit: edits.maxConcurrentRuns } });
    editedKeys.add(ALL_RUNS);
  }
  if (edits.tagConcurrencyLimits !== undefined) {
    const keys = editedTagKeys(before.tagConcurrencyLimits, edits.tagConcurrencyLimits);
    if (keys.size > 0 || edits.tagConcurrencyLimits.length !== before.tagConcurrencyLimits.length) {
      config.tagConcurrencyLimits = edits.tagConcurrencyLimits;
      events.push({ type: 'TagConcurrencyLimitsSet', data: { limits: edits.tagConcurrencyLimits } });
      for (const key of keys) editedKeys.add(key);
    }
  }
  if (edits.poolGranularity !== undefined && edits.poolGranularity !== before.poolGranularity) {
    config.poolGranularity = edits.poolGranularity;
    events.push({ type: 'PoolGranularitySet', data: { granularity: edits.poolGranularity } });
    editedKeys.add(ALL_RUNS);
    for (const pool of state.knownPools) editedKeys.add(poolCount(pool));
    editedPools.add(ALL_POOLS);
  }
  if (edits.defaultPoolLimit !== undefined && edits.defaultPoolLimit !== before.defaultPoolLimit) {
    config.defaultPoolLimit = edits.defaultPoolLimit;
    events.push({ type: 'DefaultPoolLimitSet', data: { limit: edits.defaultPoolLimit } });
    editedKeys.add(ALL_RUNS);
    for (const pool of state.knownPools) editedKeys.add(poolCount(pool));
    editedPools.add(ALL_POOLS);
  }
  for (const { pool, limit } of edits.poolLimits ?? []) {
    if (poolLimits.get(pool) === (limit ?? undefined)) continue;
    if (limit === null) {
      poolLimits.delete(pool);
      events.push({ type: 'PoolLimitDeleted', data: { pool } });
    } else {
      poolLimits.set(pool, limit);
      events.push({ type: 'PoolLimitSet', data: { pool, limit } });
    }
    editedKeys.add(poolCount(pool));
    editedKeys.add(rootPoolCount(pool));
    editedPools.add(pool);
  }
  const hold = { ...before.rootStepHold, ...edits.rootStepHold };
  const holdBefore = before.rootStepHold;
  if (
    hold.enabled !== holdBefore.enabled ||
    hold.runBuffer !== holdBefore.runBuffer ||
    hold.startedRunAllotmentSeconds !== holdBefore.startedRunAllotmentSeconds
  ) {
    config.rootStepHold = hold;
    events.push({ type: 'RootStepHoldSet', data: hold });
  }
  // Every pool's root-step counter follows the granularity, the default limit and the hold.
  if (
    config.poolGranularity !== before.poolGranularity ||
    config.defaultPoolLimit !== before.defaultPoolLimit ||
    config.rootStepHold !== before.rootStepHold
  ) {
    for (const pool of state.knownPools) editedKeys.add(rootPoolCount(pool));
  }
  if (events.length === 0) return [];
  return withPasses(state, events, {
    capacity: { config, editedKeys },
    slots: editedPools.size > 0 ? { config, editedPools } : undefined,
  });
}

function claimOutcome(state: State, run: RunRecord, stepKey: string) {
  const step = run.steps.find((s) => s.key === stepKey);
  if (!step) {
    throw new InvalidInputError('stepKey', `stepKey: run ${run.id} declares no step ${JSON.stringify(stepKey)}`);
  }
  return { step, claim: state.claims.get(claimKey(run.id, stepKey)) };
}

function endingOf(run: RunRecord, deadline: Deadline): Ending {
  return { run, status: deadline.status, reason: deadline.reason, failureReason: deadline.failureReason };
}

/**
 * The step a claim is for: a declared one (whose pool a claim may repeat but not change), or,
 * when the claim names a pool, a new step added to the admitted run. At RUN granularity a run
 * is admitted under the limits of its pools, so a pool it did not declare cannot join it
 * afterwards: that would take the pool's capacity without admission.
 */
function stepToClaim(
  state: State,
  run: RunRecord,
  stepKey: string,
  pool: string | null,
): { step: Step; added: boolean } {
  const declared = run.steps.find((s) => s.key === stepKey);
  if (declared) {
    if (pool !== null && declared.pool !== pool) {
      throw new TransitionNotAllowedError(
        `step ${stepKey} of run ${run.id} is in ${declared.pool === null ? 'no pool' : `pool ${declared.pool}`}, not pool ${pool}`,
      );
    }
    return { step: declared, added: false };
  }
  if (pool === null) {
    throw new InvalidInputError(
      'stepKey',
      `stepKey: run ${run.id} declares no step ${JSON.stringify(stepKey)}; give a pool to add it`,
    );
  }
  if (run.status !== 'STARTING' && run.status !== 'STARTED') {
    throw new TransitionNotAllowedError(
      `run ${run.id} is ${run.status}: only a STARTING or STARTED run can add a step`,
    );
  }
  if (state.config.poolGranularity === 'RUN' && !run.pools.includes(pool)) {
    throw new TransitionNotAllowedError(
      `pool ${pool} is not one of run ${run.id}'s pools: at RUN granularity a run is admitted under its pools' limits, so a new pool cannot join it once admitted; declare a step in ${pool} at enqueue`,
    );
  }
  if (run.steps.length >= LIMITS.maxStepsPerRun) {
    throw new TransitionNotAllowedError(`run ${run.id} has ${run.steps.length} steps, the most a run may have`);
  }
  return { step: { key: stepKey, pool, priority: 0 }, added: true };
}

/**
 * A deadline that has passed wins over whatever a command about the run says: the run ends
 * as the deadline says, whether or not the monitor's timer has fired yet. Without this a late
 * heartbeat, start or claim could rescue a run the log already shows as expired.
 */
function expiredNow(state: State, run: RunRecord, now: string): DomainEvent[] | null {
  if (!isInProgress(run.status)) return null;
  const expired = passedDeadline(run, state.monitoring, Date.parse(now));
  return expired ? finish(state, [endingOf(run, expired)]) : null;
}

export function decide(command: Command, state: State, context: DecideContext): DomainEvent[] {
  switch (command.type) {
    case 'EnqueueRun': {
      const input = context.fromLog ? recordedEnqueue(command.input) : validateEnqueue(command.input);
      const runId = input.runId ?? context.newRunId;
      // Enqueueing an id twice is a retry, not a second run.
      if (knownRun(state, runId, context)) return [];
      const data = {
        runId,
        jobName: input.jobName,
        tags: input.tags,
        steps: input.steps,
        priority: priorityOf(input.priority, input.tags),
        maxConcurrentSteps: input.maxConcurrentSteps,
        leaseSeconds: input.leaseSeconds,
        ...(input.ignoredTags.length > 0 ? { ignoredTags: input.ignoredTags } : {}),
      };
      const enqueued = enqueuedRun(data, state.runCount, context.now);
      return withPasses(state, [{ type: 'RunEnqueued', data }], { capacity: { enqueued } });
    }
    case 'MarkRunStarted': {
      const run = existingRun(state, command.runId, context);
      if (run.status !== 'STARTING' && run.status !== 'STARTED') {
        throw new TransitionNotAllowedError(
          `run ${run.id} is ${run.status}: only an admitted (STARTING) run can be marked started`,
        );
      }
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      if (run.status === 'STARTED') return [];
      const started: DomainEvent = { type: 'RunStarted', data: { runId: run.id } };
      // With no allotment window, a started run's unclaimed root steps stop counting at once.
      if (state.config.rootStepHold.startedRunAllotmentSeconds > 0 || run.promisedSteps.size === 0) return [started];
      return withPasses(state, [started, { type: 'RootStepAllotmentEnded', data: { runId: run.id } }], {
        unpromised: [run],
      });
    }
    case 'MarkRunFinished': {
      const status = validateFinalStatus(command.status);
      const run = existingRun(state, command.runId, context);
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      if (isFinished(run.status)) {
        if (run.status === status) return [];
        throw new TransitionNotAllowedError(`run ${run.id} already finished as ${run.status}`);
      }
      if (run.status === 'QUEUED') {
        throw new TransitionNotAllowedError(
          `run ${run.id} is QUEUED: it has not been admitted, so it cannot finish; terminate it instead`,
        );
      }
      return finish(state, [{ run, status, reason: null }]);
    }
    case 'TerminateRun': {
      const run = existingRun(state, command.runId, context);
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      if (isFinished(run.status)) {
        throw new TransitionNotAllowedError(`run ${run.id} already finished as ${run.status}: nothing to terminate`);
      }
      if (run.status === 'QUEUED') {
        return finish(state, [{ run, status: 'CANCELED', reason: 'terminated while queued' }]);
      }
      if (command.force) return finish(state, [{ run, status: 'CANCELED', reason: 'terminated with force' }]);
      if (run.status === 'CANCELING') return [];
      // A run being canceled keeps the slots it holds until it ends, but gets no new ones; its
      // waiting claims and promised root steps stop counting for the root-step hold (as in
      // Dagster, a CANCELING run is not counted).
      const withdrawn = activeClaimsOf(state, run).filter((claim) => claim.status === 'PENDING');
      const primary: DomainEvent[] = [
        { type: 'RunCancellationRequested', data: { runId: run.id } },
        ...withdrawn.map(
          (claim): DomainEvent => ({
            type: 'StepSlotReleased',
            data: {
              runId: run.id,
              stepKey: claim.stepKey,
              pool: claim.pool,
              held: false,
              reason: `run ${run.id} is being canceled`,
            },
          }),
        ),
      ];
      return withPasses(state, primary, { slots: { released: withdrawn }, unpromised: [run] });
    }
    case 'ClaimStepSlot': {
      const run = existingRun(state, command.runId, context);
      const stepKey = validateStepKey(command.stepKey);
      const pool = command.pool == null ? null : validatePoolName(command.pool);
      const { step, added } = stepToClaim(state, run, stepKey, pool);
      const claim = state.claims.get(claimKey(run.id, stepKey));
      const active = claim !== undefined && claim.status !== 'RELEASED';
      if (!active && run.status !== 'STARTING' && run.status !== 'STARTED') {
        throw new TransitionNotAllowedError(
          `run ${run.id} is ${run.status}: only a STARTING or STARTED run's steps can claim slots`,
        );
      }
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      // A repeated claim answers with the claim as it stands.
      if (active) return [];
      const draft: StepClaim = {
        runId: run.id,
        stepKey,
        pool: step.pool,
        priority: run.priority + step.priority,
        seq: state.nextClaimSeq,
        status: 'PENDING',
        reasons: [],
      };
      const primary: DomainEvent[] = added
        ? [{ type: 'RunStepAdded', data: { runId: run.id, stepKey, pool: step.pool as string } }]
        : [];
      return withPasses(state, primary, { slots: { claimed: draft } });
    }
    case 'ReleaseStepSlot': {
      const run = existingRun(state, command.runId, context);
      const stepKey = validateStepKey(command.stepKey);
      const { claim } = claimOutcome(state, run, stepKey);
      // A finished run released every claim when it ended (and the live state forgot them).
      if (!claim && isFinished(run.status)) return [];
      if (!claim) {
        throw new TransitionNotAllowedError(`step ${stepKey} of run ${run.id} has not claimed a slot`);
      }
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      if (claim.status === 'RELEASED') return [];
      const released: DomainEvent = {
        type: 'StepSlotReleased',
        data: { runId: run.id, stepKey, pool: claim.pool, held: claim.status === 'GRANTED', reason: null },
      };
      return withPasses(state, [released], { slots: { released: [claim] } });
    }
    case 'FreeStepSlots': {
      const run = existingRun(state, command.runId, context);
      const stepKey = command.stepKey == null ? null : validateStepKey(command.stepKey);
      const claim = stepKey === null ? undefined : claimOutcome(state, run, stepKey).claim;
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      // Freeing what is already free appends nothing, like a repeated release.
      const freed = stepKey === null ? activeClaimsOf(state, run) : claim && claim.status !== 'RELEASED' ? [claim] : [];
      if (freed.length === 0) return [];
      const released = freed.map(
        (c): DomainEvent => ({
          type: 'StepSlotReleased',
          data: {
            runId: run.id,
            stepKey: c.stepKey,
            pool: c.pool,
            held: c.status === 'GRANTED',
            reason: c.status === 'GRANTED' ? 'slot freed by an admin' : 'waiting claim withdrawn by an admin',
          },
        }),
      );
      return withPasses(state, released, { slots: { released: freed } });
    }
    case 'Heartbeat': {
      const run = existingRun(state, command.runId, context);
      if (isFinished(run.status)) {
        const why = run.finishReason ? ` (${run.finishReason})` : '';
        throw new TransitionNotAllowedError(
          `run ${run.id} already finished as ${run.status}${why}: stop working on it`,
        );
      }
      const expired = expiredNow(state, run, context.now);
      if (expired) return expired;
      if (!heartbeatIsDue(run, Date.parse(context.now))) return [];
      return [{ type: 'RunHeartbeatRecorded', data: { runId: run.id } }];
    }
    case 'ExpireDeadlines': {
      const now = Date.parse(context.now);
      const endings: Ending[] = [];
      const allotmentEnded: RunRecord[] = [];
      const allotment = state.config.rootStepHold.startedRunAllotmentSeconds;
      // Only the runs the deadline index says are due, in admission order.
      for (const runId of state.deadlines.due(now, deadlineSettings(state))) {
        const run = state.runs.get(runId) as RunRecord;
        const expired = passedDeadline(run, state.monitoring, now);
        if (expired) endings.push(endingOf(run, expired));
        else if ((allotmentEndOf(run, allotment) ?? Number.POSITIVE_INFINITY) <= now) allotmentEnded.push(run);
      }
      return endings.length === 0 && allotmentEnded.length === 0 ? [] : finish(state, endings, allotmentEnded);
    }
    case 'SetRunMonitoring': {
      const startTimeoutSeconds = validateTimeout(command.startTimeoutSeconds, 'startTimeoutSeconds');
      const cancelTimeoutSeconds = validateTimeout(command.cancelTimeoutSeconds, 'cancelTimeoutSeconds');
      const maxRuntimeSeconds = validateMaxRuntime(command.maxRuntimeSeconds, 'maxRuntimeSeconds');
      const current = state.monitoring;
      if (
        current.startTimeoutSeconds === startTimeoutSeconds &&
        current.cancelTimeoutSeconds === cancelTimeoutSeconds &&
        current.maxRuntimeSeconds === maxRuntimeSeconds
      ) {
        return [];
      }
      return [{ type: 'RunMonitoringSet', data: { startTimeoutSeconds, cancelTimeoutSeconds, maxRuntimeSeconds } }];
    }
    case 'SetMaxConcurrentRuns':
      return editConfig(state, { maxConcurrentRuns: validateMaxConcurrentRuns(command.limit) });
    case 'SetTagConcurrencyLimits':
      return editConfig(state, { tagConcurrencyLimits: validateTagLimits(command.limits) });
    case 'SetPoolGranularity':
      return editConfig(state, { poolGranularity: validateGranularity(command.granularity) });
    case 'SetDefaultPoolLimit':
      return editConfig(state, { defaultPoolLimit: command.limit === null ? null : validateLimit(command.limit) });
    case 'SetPoolLimit':
      return editConfig(state, {
        poolLimits: [{ pool: validatePoolName(command.pool), limit: validateLimit(command.limit) }],
      });
    case 'DeletePoolLimit':
      return editConfig(state, { poolLimits: [{ pool: validatePoolName(command.pool), limit: null }] });
    case 'ChangeConcurrencyConfig':
      return editConfig(state, validateConfigChange(command.change));
  }
}

/**
 * When the monitor should next send ExpireDeadlines: the earliest run deadline or end of a
 * started run's allotment window (epoch ms), or null when there is none. O(log n) in the runs
 * in progress (the deadline index).
 */
export function nextWakeUp(state: State): number | null {
  const settings = deadlineSettings(state);
  const deadline = state.deadlines.earliestDeadline(settings)?.at ?? Number.POSITIVE_INFINITY;
  const allotmentEnd = state.deadlines.earliestAllotmentEnd(settings) ?? Number.POSITIVE_INFINITY;
  const next = Math.min(deadline, allotmentEnd);
  return Number.isFinite(next) ? next : null;
}

/** The earliest deadline among in-progress runs, for the monitor's timer. */
export function nextDeadline(state: State): Deadline | null {
  const earliest = state.deadlines.earliestDeadline(deadlineSettings(state));
  if (earliest === null) return null;
  return deadlinesOf(state.runs.get(earliest.runId) as RunRecord, state.monitoring)[0] ?? null;
}

function deadlineSettings(state: State): DeadlineSettings {
  return { ...state.monitoring, startedRunAllotmentSeconds: state.config.rootStepHold.startedRunAllotmentSeconds };
}
