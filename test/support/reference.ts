/**
 * A brute-force reference for the admission rules (DESIGN section 1), used to check the decider
 * and the projections. It ignores every index the state keeps (counts, queuedByKey, the queue
 * structure) and recomputes what it needs from the runs' statuses and the config alone.
 */
import { claimKey, RECENTLY_FINISHED, type RunRecord, type State } from '../../projections/state.js';
import type { ConcurrencyConfig } from '../../src/domain/config.js';
import {
  ALL_RUNS,
  type Constraint,
  type ConstraintKind,
  constraintIdentity,
  countKeysOf,
  rootPoolCount,
  runLimitsOf,
} from '../../src/domain/constraints.js';
import { isFinished, isInProgress, poolsOf, type RunStatus } from '../../src/domain/run.js';

/** A limit applying to a run, as the reference sees it, with its count recomputed from scratch. */
export interface ReferenceLimit {
  identity: string;
  kind: ConstraintKind;
  key: string | null;
  value: string | null;
  pool: string | null;
  perUniqueValue: boolean;
  limit: number;
  /** Does an in-progress run count against this limit? */
  counts: (run: RunRecord) => boolean;
}

const hasTag = (run: RunRecord, key: string, value?: string) =>
  run.tags.some((t) => t.key === key && (value === undefined || t.value === value));

function make(l: Omit<ReferenceLimit, 'identity'>): ReferenceLimit {
  return { ...l, identity: constraintIdentity(l) };
}

/**
 * Every run limit that applies to a run, derived straight from the rules table (independent of
 * runLimitsOf, which {@link limitsAgreeWithRunLimitsOf} cross-checks).
 */
export function referenceLimitsOf(run: RunRecord, config: ConcurrencyConfig): ReferenceLimit[] {
  const limits: ReferenceLimit[] = [];
  if (config.maxConcurrentRuns >= 0) {
    limits.push(
      make({
        kind: 'MAX_CONCURRENT_RUNS',
        key: null,
        value: null,
        pool: null,
        perUniqueValue: false,
        limit: config.maxConcurrentRuns,
        counts: () => true,
      }),
    );
  }
  for (const tl of config.tagConcurrencyLimits) {
    for (const tag of run.tags) {
      if (tag.key !== tl.key) continue;
      if (tl.applyLimitPerUniqueValue) {
        limits.push(
          make({
            kind: 'TAG_LIMIT',
            key: tag.key,
            value: tag.value,
            pool: null,
            perUniqueValue: true,
            limit: tl.limit,
            counts: (other) => hasTag(other, tag.key, tag.value),
          }),
        );
      } else if (tl.value !== null) {
        if (tl.value !== tag.value) continue;
        limits.push(
          make({
            kind: 'TAG_LIMIT',
            key: tag.key,
            value: tag.value,
            pool: null,
            perUniqueValue: false,
            limit: tl.limit,
            counts: (other) => hasTag(other, tag.key, tag.value),
          }),
        );
      } else {
        limits.push(
          make({
            kind: 'TAG_LIMIT',
            key: tag.key,
            value: null,
            pool: null,
            perUniqueValue: false,
            limit: tl.limit,
            counts: (other) => hasTag(other, tag.key),
          }),
        );
      }
    }
  }
  if (config.poolGranularity === 'RUN') {
    for (const pool of new Set(run.steps.flatMap((s) => (s.pool === null ? [] : [s.pool])))) {
      const limit = config.poolLimits.has(pool) ? config.poolLimits.get(pool)! : config.defaultPoolLimit;
      if (limit === null) continue;
      limits.push(
        make({
          kind: 'POOL_LIMIT',
          key: null,
          value: null,
          pool,
          perUniqueValue: false,
          limit,
          counts: (other) => other.steps.some((s) => s.pool === pool),
        }),
      );
    }
  }
  return limits;
}

/** Problems if the reference limits and runLimitsOf disagree for a run (identities and values). */
export function limitsAgreeWithRunLimitsOf(run: RunRecord, config: ConcurrencyConfig): string[] {
  const mine = referenceLimitsOf(run, config)
    .map((l) => `${l.identity}=${l.limit}`)
    .sort();
  const theirs = runLimitsOf(run, config)
    .map((l) => `${constraintIdentity(l)}=${l.limit}`)
    .sort();
  return JSON.stringify(mine) === JSON.stringify(theirs)
    ? []
    : [`run ${run.id}: runLimitsOf gives ${show(theirs)}, the rules give ${show(mine)}`];
}

const show = (x: unknown) => JSON.stringify(x).replaceAll('\\u0000', '|');

export function inProgressRuns(state: State): RunRecord[] {
  return [...state.runs.values()].filter((r) => isInProgress(r.status));
}

/** How many in-progress runs count against a limit, counted from the runs themselves. */
export function recountLimit(limit: ReferenceLimit, inProgress: readonly RunRecord[]): number {
  let n = 0;
  for (const run of inProgress) if (limit.counts(run)) n++;
  return n;
}

export interface FullLimit {
  limit: ReferenceLimit;
  inUse: number;
}

/**
 * The pools of a run's root steps (steps that depend on none), or null when the root-step hold
 * cannot apply: no root step, or a root step without a pool (it could always start).
 */
export function referenceRootPools(run: RunRecord): string[] | null {
  // Steps a claim added after admission were never root steps of the run as enqueued.
  const roots = run.steps.filter((s) => !s.added && (s.dependsOn ?? []).length === 0);
  if (roots.length === 0 || roots.some((s) => s.pool === null)) return null;
  return [...new Set(roots.map((s) => s.pool as string))];
}

/**
 * Whether a run's unclaimed root steps count as holding their slots: admitted and STARTING,
 * STARTED with its allotment window not recorded as over, or QUEUED in `inProgress` (admitted
 * earlier in the same pass, so STARTING).
 */
const promising = (run: RunRecord) =>
  run.status === 'QUEUED' || run.status === 'STARTING' || (run.status === 'STARTED' && run.allotmentEndedAt === null);

/** Root steps promised a slot per pool, recounted from the runs and the claims. */
export function recountPromised(state: State, inProgress: readonly RunRecord[]): Map<string, number> {
  const promised = new Map<string, number>();
  for (const run of inProgress) {
    if (!promising(run)) continue;
    for (const step of run.steps) {
      if (step.added || (step.dependsOn ?? []).length > 0 || step.pool === null) continue;
      if (state.claims.has(claimKey(run.id, step.key))) continue;
      promised.set(step.pool, (promised.get(step.pool) ?? 0) + 1);
    }
  }
  return promised;
}

/**
 * The root-step hold from scratch: when every root pool of the run has a limit and its slots in
 * use, claims waiting and promised root steps reach the limit plus the run buffer, one full
 * ROOT_STEP_POOLS limit per root pool; otherwise none.
 */
export function referenceRootHolds(state: State, run: RunRecord, inProgress: readonly RunRecord[]): FullLimit[] {
  const config = state.config;
  const pools = referenceRootPools(run);
  if (pools === null || config.poolGranularity !== 'OP' || !config.rootStepHold.enabled) return [];
  const promised = recountPromised(state, inProgress);
  const holds: FullLimit[] = [];
  for (const pool of pools) {
    const limit = config.poolLimits.has(pool) ? config.poolLimits.get(pool)! : config.defaultPoolLimit;
    if (limit === null) return [];
    let inUse = promised.get(pool) ?? 0;
    for (const claim of state.claims.values()) {
      if (claim.pool === pool && (claim.status === 'GRANTED' || claim.status === 'PENDING')) inUse++;
    }
    const threshold = limit + config.rootStepHold.runBuffer;
    if (inUse < threshold) return [];
    holds.push({
      limit: make({
        kind: 'ROOT_STEP_POOLS',
        key: null,
        value: null,
        pool,
        perUniqueValue: false,
        limit: threshold,
        counts: () => false,
      }),
      inUse,
    });
  }
  return holds;
}

/** The limits applying to a run that are full now (count >= limit), counted from scratch. */
export function fullLimitsOf(
  state: State,
  run: RunRecord,
  inProgress: readonly RunRecord[] = inProgressRuns(state),
): FullLimit[] {
  return [
    ...referenceLimitsOf(run, state.config)
      .map((limit) => ({ limit, inUse: recountLimit(limit, inProgress) }))
      .filter(({ limit, inUse }) => inUse >= limit.limit),
    ...referenceRootHolds(state, run, inProgress),
  ];
}

/** (a) Problems if admitting this run now would exceed a limit that applies to it. */
export function admissionViolations(state: State, runId: string): string[] {
  const run = state.runs.get(runId);
  if (!run) return [`RunAdmitted for unknown run ${runId}`];
  if (run.status !== 'QUEUED') return [`RunAdmitted for run ${runId}, which is ${run.status}`];
  const full = fullLimitsOf(state, run);
  return full.map(
    ({ limit, inUse }) => `run ${runId} admitted while ${show(limit.identity)} had ${inUse} of ${limit.limit} in use`,
  );
}

/** QUEUED runs in admission order (priority descending, then enqueue order), from the runs alone. */
export function queuedInOrder(state: State): RunRecord[] {
  return [...state.runs.values()]
    .filter((r) => r.status === 'QUEUED')
    .sort((a, b) => b.priority - a.priority || a.seq - b.seq);
}

/**
 * The admission pass done from scratch over every QUEUED run: walk them in order, admit each
 * run whose every limit has room, and count it at once. Returns the run ids in admission order.
 */
export function referenceAdmissions(state: State): string[] {
  const inProgress = inProgressRuns(state);
  const admitted: string[] = [];
  for (const run of queuedInOrder(state)) {
    const room =
      referenceLimitsOf(run, state.config).every((l) => recountLimit(l, inProgress) < l.limit) &&
      referenceRootHolds(state, run, inProgress).length === 0;
    if (room) {
      admitted.push(run.id);
      inProgress.push(run);
    }
  }
  return admitted;
}

/**
 * What the log records as holding a queued run: the recorded full limits of its run counters,
 * and those of its root-step counters when every one of them is recorded full.
 */
export function recordedHolds(state: State, run: RunRecord): Constraint[] {
  const holds = [...new Set(countKeysOf(run))].flatMap((key) => state.held.get(key) ?? []);
  const roots = (referenceRootPools(run) ?? []).map((pool) => state.held.get(rootPoolCount(pool)) ?? []);
  if (roots.length > 0 && roots.every((full) => full.length > 0)) holds.push(...roots.flat());
  return holds;
}

const exactly = (cs: readonly Constraint[]) =>
  cs.map((c) => `${constraintIdentity(c)}\u0000${c.limit}\u0000${c.inUse}`).sort();

/**
 * The QUEUED runs whose recorded holds (State.held over their counters) differ from the limits
 * that hold them now, limit values and counts included, in admission order, with those limits.
 */
export function staleHolds(state: State): Array<{ run: RunRecord; expected: Constraint[] }> {
  const inProgress = inProgressRuns(state);
  const out: Array<{ run: RunRecord; expected: Constraint[] }> = [];
  for (const run of queuedInOrder(state)) {
    const expected = fullLimitsOf(state, run, inProgress).map(({ limit, inUse }) => ({
      kind: limit.kind,
      key: limit.key,
      value: limit.value,
      pool: limit.pool,
      perUniqueValue: limit.perUniqueValue,
      limit: limit.limit,
      inUse,
      message: '',
    }));
    if (JSON.stringify(exactly(expected)) !== JSON.stringify(exactly(recordedHolds(state, run)))) {
      out.push({ run, expected });
    }
  }
  return out;
}

/** The in-progress count per count key, recounted from the runs' statuses. */
export function recountCounts(state: State): Map<string, number> {
  const counts = new Map<string, number>();
  for (const run of inProgressRuns(state)) {
    for (const key of countKeysOf(run)) counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

const sortedEntries = <V>(m: ReadonlyMap<string, V>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));

/**
 * Every invariant that must hold between commands, checked from scratch:
 * (b) no QUEUED run could be admitted; (c) each QUEUED run's blockedBy is the set of its full
 * limits; (e) every run is in one status and the queue holds exactly the QUEUED runs; the
 * indexes (counts, queuedByKey, activeRunsByPool, runIds) match a recount; runLimitsOf agrees
 * with the rules. Returns the problems found (empty when all hold).
 */
export function invariantProblems(state: State): string[] {
  const problems: string[] = [];
  const inProgress = inProgressRuns(state);
  const statuses: readonly RunStatus[] = [
    'QUEUED',
    'STARTING',
    'STARTED',
    'CANCELING',
    'SUCCESS',
    'FAILURE',
    'CANCELED',
  ];

  // (e) runs and queue: the live state holds live runs only
  const seqs = new Set<number>();
  for (const run of state.runs.values()) {
    if (!statuses.includes(run.status)) problems.push(`run ${run.id} has status ${run.status}`);
    if (run.status !== 'QUEUED' && !isInProgress(run.status)) {
      problems.push(`run ${run.id} is ${run.status} but still in the live state`);
    }
    if (run.seq >= state.runCount || seqs.has(run.seq)) problems.push(`run ${run.id} has seq ${run.seq}`);
    seqs.add(run.seq);
    if (JSON.stringify(run.pools) !== JSON.stringify(poolsOf(run.steps))) {
      problems.push(`run ${run.id} pools ${show(run.pools)} do not match its steps`);
    }
  }
  const queue = [...state.queue.inOrder()];
  const expectedQueue = queuedInOrder(state).map((r) => r.id);
  if (JSON.stringify(queue) !== JSON.stringify(expectedQueue)) {
    problems.push(`queue is ${show(queue)}, the QUEUED runs in order are ${show(expectedQueue)}`);
  }
  if (state.queue.size !== expectedQueue.length) {
    problems.push(`queue size ${state.queue.size}, ${expectedQueue.length} runs are QUEUED`);
  }

  // counts and indexes
  const counts = sortedEntries(recountCounts(state));
  if (show(counts) !== show(sortedEntries(state.counts))) {
    problems.push(`counts ${show(sortedEntries(state.counts))}, recount ${show(counts)}`);
  }
  const queuedByKey = new Map<string, string[]>();
  for (const run of state.runs.values()) {
    if (run.status !== 'QUEUED') continue;
    const rootKeys = (referenceRootPools(run) ?? []).map(rootPoolCount);
    for (const key of [...countKeysOf(run), ...rootKeys]) {
      if (key === ALL_RUNS) continue;
      queuedByKey.set(key, [...(queuedByKey.get(key) ?? []), run.id].sort());
    }
  }
  const actualQueuedByKey = new Map([...state.queuedByKey].map(([k, ids]) => [k, [...ids].sort()]));
  if (show(sortedEntries(queuedByKey)) !== show(sortedEntries(actualQueuedByKey))) {
    problems.push(`queuedByKey ${show(sortedEntries(actualQueuedByKey))}, recount ${show(sortedEntries(queuedByKey))}`);
  }
  const byPool = new Map<string, string[]>();
  for (const run of inProgress) {
    for (const pool of run.pools) byPool.set(pool, [...(byPool.get(pool) ?? []), run.id].sort());
  }
  const actualByPool = new Map([...state.activeRunsByPool].map(([k, ids]) => [k, [...ids].sort()]));
  if (show(sortedEntries(byPool)) !== show(sortedEntries(actualByPool))) {
    problems.push(`activeRunsByPool ${show(sortedEntries(actualByPool))}, recount ${show(sortedEntries(byPool))}`);
  }

  // root steps promised a slot (the root-step hold's count), per pool and per run
  const promised = sortedEntries(recountPromised(state, inProgress));
  if (show(promised) !== show(sortedEntries(state.promisedSlots))) {
    problems.push(`promisedSlots ${show(sortedEntries(state.promisedSlots))}, recount ${show(promised)}`);
  }
  for (const run of state.runs.values()) {
    const mine = promising(run) && isInProgress(run.status) ? recountPromised(state, [run]) : new Map();
    const count = [...mine.values()].reduce((a, b) => a + b, 0);
    if (count !== run.promisedSteps.size) {
      problems.push(`run ${run.id} has ${run.promisedSteps.size} promised steps, recount ${count}`);
    }
  }

  // (b) and (c)
  for (const run of queuedInOrder(state)) {
    problems.push(...limitsAgreeWithRunLimitsOf(run, state.config));
    const full = fullLimitsOf(state, run, inProgress);
    if (full.length === 0) problems.push(`run ${run.id} is QUEUED but every limit that applies to it has room`);
  }
  for (const { run, expected } of staleHolds(state)) {
    problems.push(
      `run ${run.id} recorded holds ${show(exactly(recordedHolds(state, run)))}, full limits ${show(exactly(expected))}`,
    );
  }
  if (state.recentlyFinished.size > RECENTLY_FINISHED) problems.push('recentlyFinished is over its bound');
  for (const run of state.recentlyFinished.values()) {
    if (!isFinished(run.status)) problems.push(`run ${run.id} is ${run.status} among the finished`);
  }
  for (const claim of state.claims.values()) {
    if (!state.runs.has(claim.runId) && claim.status !== 'GRANTED' && claim.status !== 'PENDING') {
      const run = state.recentlyFinished.get(claim.runId);
      if (!run || run.activeClaims.size === 0)
        problems.push(`claim ${claim.stepKey} of finished run ${claim.runId} kept`);
    }
  }
  return problems;
}
