/**
 * The live state: what the decider needs (config, counts, queued and in-progress runs, claims,
 * the last recorded state of each counter). Its size follows what is live, not the history:
 * finished runs, decisions and waits live in the history read model (src/history). Rebuilt
 * from a checkpoint and the log at start.
 */
import { type ConcurrencyConfig, defaultConcurrencyConfig } from '../src/domain/config.js';
import type { Constraint } from '../src/domain/constraints.js';
import type { EventData, MonitoringReason } from '../src/domain/events.js';
import { UNRECORDED_RULES } from '../src/domain/rules.js';
import { type IgnoredTag, poolsOf, type RunStatus, type Step, type Tag } from '../src/domain/run.js';
import { DeadlineIndex } from './deadline-index.js';
import { PriorityQueue } from './priority-queue.js';

export type DecisionKind = 'ADMITTED' | 'BLOCKED' | 'SLOT_GRANTED' | 'SLOT_PENDING';

export interface Decision {
  /** Revision of the event that records it. */
  position: bigint;
  at: string;
  kind: DecisionKind;
  runId: string;
  stepKey: string | null;
  pool: string | null;
  reasons: Constraint[];
  message: string;
}

export interface WaitInterval {
  from: string;
  /** null while the run is still waiting. */
  to: string | null;
  reasons: Constraint[];
}

export interface RunRecord {
  id: string;
  jobName: string;
  status: RunStatus;
  tags: Tag[];
  steps: Step[];
  pools: string[];
  priority: number;
  /** Enqueue order, the tie-break after priority. */
  seq: number;
  maxConcurrentSteps: number | null;
  leaseSeconds: number | null;
  enqueuedAt: string;
  admittedAt: string | null;
  startedAt: string | null;
  cancelRequestedAt: string | null;
  finishedAt: string | null;
  /** Why Sluice ended the run (timeout, forced cancel), if it did. */
  finishReason: string | null;
  /** Which monitoring deadline ended the run, when one did. */
  failureReason: MonitoringReason | null;
  /** Tags read and not acted on, and why. */
  ignoredTags: IgnoredTag[];
  /** Steps of this run holding a slot now. */
  stepsHolding: number;
  /** Claims of this run that hold or wait for a slot. */
  activeClaims: Set<string>;
  /**
   * Root steps in a pool that have not claimed yet while the run is admitted and STARTING (or
   * STARTED within the allotment window): they count as holding their pool's slot for the
   * root-step hold (see RootStepHold). Empty otherwise.
   */
  promisedSteps: Set<string>;
  /** When a STARTED run's allotment window was recorded as over (RootStepAllotmentEnded). */
  allotmentEndedAt: string | null;
  /** Last heartbeat recorded in the log (see domain/leases). */
  lastHeartbeatAt: string | null;
  /**
   * How far the wall clock stepped forward (ClockSteppedForward) while the run was in progress:
   * its deadlines count that much later, so a step neither ends it early nor at once. Absent: 0.
   */
  clockShiftMs?: number;
}

/** One step's claim for a slot. */
export interface StepClaim {
  runId: string;
  stepKey: string;
  pool: string | null;
  /** Run priority plus step priority: waiting claims are served highest first. */
  priority: number;
  /** Claim order, the tie-break after priority. */
  seq: number;
  status: 'GRANTED' | 'PENDING' | 'RELEASED';
  /** What holds it back while PENDING, as last recorded. */
  reasons: Constraint[];
  /** When the step first claimed (the claim's first StepSlotPending or StepSlotGranted); absent on a draft not yet recorded. */
  claimedAt?: string;
  /** When it was granted its slot; null while it waits, absent on a draft not yet recorded. */
  grantedAt?: string | null;
}

export const claimKey = (runId: string, stepKey: string): string => `${runId}\u0000${stepKey}`;

/** Where a claim waits: its pool, or '' for steps without a pool. */
export const waitingKey = (pool: string | null): string => pool ?? '';

export interface RunMonitoring {
  startTimeoutSeconds: number;
  cancelTimeoutSeconds: number;
  /** For STARTED runs without a max-runtime tag; null: none. */
  maxRuntimeSeconds: number | null;
}

/** How many finished runs the live state keeps, so retries about them answer without a disk read. */
export const RECENTLY_FINISHED = 1000;

/** The config as the live state holds it: the pool limits are a map of its own, updated in place. */
export type LiveConfig = ConcurrencyConfig & { poolLimits: Map<string, number> };

export interface State {
  /** Revision of the last event folded in; -1n for an empty log. */
  revision: bigint;
  lastEventAt: string | null;
  /** Its pool limits are the state's own map, updated in place by the fold (never shared with another state). */
  config: LiveConfig;
  /** QUEUED and in-progress runs. */
  runs: Map<string, RunRecord>;
  /** The last RECENTLY_FINISHED runs to finish, oldest first; older ones are in the history. */
  recentlyFinished: Map<string, RunRecord>;
  /** Runs ever enqueued: the next run's enqueue order. */
  runCount: number;
  queue: PriorityQueue;
  /** In-progress runs per count key (see domain/constraints). */
  counts: Map<string, number>;
  /** QUEUED runs per count key other than ALL_RUNS: which runs a limit on that key can hold. */
  queuedByKey: Map<string, Set<string>>;
  /**
   * The full limits of each counter as last recorded (LimitStatesChanged, or a RunBlocked's
   * reasons); counters with none are absent. A queued run's reasons are those of its counters.
   */
  held: Map<string, Constraint[]>;
  /** Every pool named by a limit or a run's steps, in first-seen order. */
  knownPools: Set<string>;
  /** Runs in progress (STARTING, STARTED, CANCELING): the ones with deadlines. */
  inProgress: Set<string>;
  /** In-progress runs ordered by their deadlines (derived from the runs: not serialized). */
  deadlines: DeadlineIndex;
  /** In-progress runs per pool their steps use. */
  activeRunsByPool: Map<string, Set<string>>;
  /** Step claims of live runs, by claimKey (released ones kept so a repeat release is a no-op). */
  claims: Map<string, StepClaim>;
  /** GRANTED claims per pool. */
  slotHolders: Map<string, Set<string>>;
  /** Root steps promised a slot per pool (the sum of runs' promisedSteps by pool). */
  promisedSlots: Map<string, number>;
  /** PENDING claims per waitingKey, in the order they are served (claim priority, then claim order). */
  waitingClaims: Map<string, PriorityQueue>;
  nextClaimSeq: number;
  monitoring: RunMonitoring;
  /**
   * The version of the rules this state is read under (see domain/rules): set on past states
   * from the log's record of its rules; UNRECORDED_RULES (today's rules) on the live state.
   */
  rules: number;
}

export function initialState(): State {
  return {
    revision: -1n,
    lastEventAt: null,
    config: { ...defaultConcurrencyConfig(), poolLimits: new Map() },
    runs: new Map(),
    recentlyFinished: new Map(),
    runCount: 0,
    queue: new PriorityQueue(),
    counts: new Map(),
    queuedByKey: new Map(),
    held: new Map(),
    knownPools: new Set(),
    inProgress: new Set(),
    deadlines: new DeadlineIndex(),
    activeRunsByPool: new Map(),
    claims: new Map(),
    slotHolders: new Map(),
    promisedSlots: new Map(),
    waitingClaims: new Map(),
    nextClaimSeq: 0,
    monitoring: { startTimeoutSeconds: 180, cancelTimeoutSeconds: 180, maxRuntimeSeconds: null },
    rules: UNRECORDED_RULES,
  };
}

/** A run as RunEnqueued makes it: the one place a run record is built. */
export function enqueuedRun(data: EventData<'RunEnqueued'>, seq: number, at: string): RunRecord {
  return {
    id: data.runId,
    jobName: data.jobName,
    status: 'QUEUED',
    tags: data.tags,
    steps: data.steps,
    pools: poolsOf(data.steps),
    priority: data.priority,
    seq,
    maxConcurrentSteps: data.maxConcurrentSteps,
    leaseSeconds: data.leaseSeconds,
    enqueuedAt: at,
    admittedAt: null,
    startedAt: null,
    cancelRequestedAt: null,
    finishedAt: null,
    finishReason: null,
    failureReason: null,
    ignoredTags: data.ignoredTags ?? [],
    stepsHolding: 0,
    activeClaims: new Set(),
    promisedSteps: new Set(),
    allotmentEndedAt: null,
    lastHeartbeatAt: null,
  };
}

/** The pool of one of the run's steps; null when it has none or the run declares no such step. */
export function poolOfStep(run: Pick<RunRecord, 'steps'>, stepKey: string): string | null {
  return run.steps.find((s) => s.key === stepKey)?.pool ?? null;
}

/** A pool's root-step count: slots held, claims waiting, and root steps promised a slot. */
export function rootPoolInUse(state: State, pool: string): number {
  return (
    (state.slotHolders.get(pool)?.size ?? 0) +
    (state.waitingClaims.get(pool)?.size ?? 0) +
    (state.promisedSlots.get(pool) ?? 0)
  );
}

/** The pools a decision concerns: its step's pool, the pools in its reasons, the run's pools. */
export function decisionPools(decision: Decision, runPools: readonly string[]): Set<string> {
  const pools = new Set<string>(runPools);
  if (decision.pool !== null) pools.add(decision.pool);
  for (const reason of decision.reasons) if (reason.pool !== null) pools.add(reason.pool);
  return pools;
}
