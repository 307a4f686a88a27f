/**
 * The admission rule (DESIGN section 1, rules 1-5), in one place.
 *
 * A pass walks QUEUED runs in order (priority descending, then enqueue order) and admits each
 * run whose every limit has room; an admission counts at once against the runs after it, and a
 * held run reserves nothing. Lowering a limit preempts nothing: a limit is "full" when its
 * count is at or above it.
 *
 * The pass costs what changed, not the queue's length: only runs that a relaxed limit could
 * now let through are candidates, and only runs under a limit whose fullness changed have
 * their reasons recomputed. A run left out is still held by a limit that stayed full, so its
 * recorded reasons are still true.
 */
import type { RunRecord, State } from '../../projections/state.js';
import type { ConcurrencyConfig } from './config.js';
import {
  ALL_RUNS,
  type ApplicableLimit,
  type Constraint,
  countKeysOf,
  poolLimitOf,
  runLimitsOf,
  sameConstraintSet,
  toConstraint,
} from './constraints.js';

/** What a command changes before the pass runs. */
export interface CapacityChange {
  /** The config after the command, when it edits limits. */
  config?: ConcurrencyConfig;
  /** Runs that stop being in progress (finished, force-canceled, timed out). */
  freed?: readonly RunRecord[];
  /** A run the command enqueues (not yet in the state). */
  enqueued?: RunRecord;
  /**
   * Count keys whose limits the command edits: every queued run under them is reconsidered.
   * ALL_RUNS means every queued run.
   */
  editedKeys?: ReadonlySet<string>;
}

export interface PassResult {
  /** Runs to admit, in the order they were admitted. */
  admitted: RunRecord[];
  /** Queued runs whose set of holding limits changed, in queue order, with the new set. */
  blocked: Array<{ run: RunRecord; reasons: Constraint[] }>;
}

/** The limits of the config that count under a count key, each with what kind it is. */
function limitsOnKey(key: string, config: ConcurrencyConfig): Array<{ kind: string; limit: number }> {
  if (key === ALL_RUNS) return config.maxConcurrentRuns >= 0 ? [{ kind: 'runs', limit: config.maxConcurrentRuns }] : [];
  const [kind, first, second] = key.split('\u0000');
  if (first === undefined) return [];
  const limits: Array<{ kind: string; limit: number }> = [];
  if (kind === 'k') {
    for (const l of config.tagConcurrencyLimits) {
      if (l.key === first && l.value === null && !l.applyLimitPerUniqueValue)
        limits.push({ kind: 'key', limit: l.limit });
    }
  } else if (kind === 'v') {
    for (const l of config.tagConcurrencyLimits) {
      if (l.key !== first) continue;
      if (l.applyLimitPerUniqueValue) limits.push({ kind: 'each', limit: l.limit });
      else if (l.value === second) limits.push({ kind: 'value', limit: l.limit });
    }
  } else if (kind === 'p' && config.poolGranularity === 'RUN') {
    const limit = poolLimitOf(config, first);
    if (limit !== null) limits.push({ kind: 'pool', limit });
  }
  return limits;
}

/**
 * Which limits on a key are full, as a comparable string. Only fullness counts, not the
 * limit's value: a limit edited from 10 to 20 that stays full holds the same runs.
 */
function fullness(key: string, config: ConcurrencyConfig, count: number): string {
  return limitsOnKey(key, config)
    .map(({ kind, limit }) => `${kind}${count >= limit ? '!' : ''}`)
    .sort()
    .join(',');
}

function inQueueOrder(a: RunRecord, b: RunRecord): number {
  return b.priority - a.priority || a.seq - b.seq;
}

export function admissionPass(state: State, change: CapacityChange): PassResult {
  const configBefore = state.config;
  const config = change.config ?? configBefore;
  const delta = new Map<string, number>();
  const bump = (run: RunRecord, by: number) => {
    for (const key of countKeysOf(run)) delta.set(key, (delta.get(key) ?? 0) + by);
  };
  const countBefore = (key: string) => state.counts.get(key) ?? 0;
  const count = (key: string) => countBefore(key) + (delta.get(key) ?? 0);

  for (const run of change.freed ?? []) bump(run, -1);

  // Candidates: the new run, runs under an edited key, runs under a key that has room again.
  let everyone = change.editedKeys?.has(ALL_RUNS) ?? false;
  const candidateIds = new Set<string>();
  const addSubjects = (key: string) => {
    if (key === ALL_RUNS) everyone = true;
    else for (const id of state.queuedByKey.get(key) ?? []) candidateIds.add(id);
  };
  for (const key of change.editedKeys ?? []) addSubjects(key);
  for (const key of delta.keys()) {
    const before = countBefore(key);
    if (limitsOnKey(key, configBefore).some(({ limit }) => before >= limit && count(key) < limit)) {
      addSubjects(key);
    }
  }

  const queued = (id: string): RunRecord | undefined => {
    const run = state.runs.get(id);
    return run?.status === 'QUEUED' ? run : undefined;
  };
  // Candidates in queue order. With `everyone`, the queue is walked lazily: the walk stops as
  // soon as the global limit is full, so freeing one place costs what it admits, not the queue.
  function* inOrder(): Generator<RunRecord> {
    // The new run is the newest of its priority: after every run of equal or higher priority.
    let enqueued = change.enqueued;
    for (const id of state.queue.inOrder()) {
      const run = queued(id);
      if (!run) continue;
      if (enqueued && run.priority < enqueued.priority) {
        yield enqueued;
        enqueued = undefined;
      }
      yield run;
    }
    if (enqueued) yield enqueued;
  }
  const candidates: Iterable<RunRecord> = everyone
    ? inOrder()
    : [...[...candidateIds].flatMap((id) => queued(id) ?? []), ...(change.enqueued ? [change.enqueued] : [])].sort(
        inQueueOrder,
      );

  const limitsCache = new Map<string, ApplicableLimit[]>();
  const limitsOf = (run: RunRecord) => {
    let limits = limitsCache.get(run.id);
    if (!limits) {
      limits = runLimitsOf(run, config);
      limitsCache.set(run.id, limits);
    }
    return limits;
  };
  const globalFull = () => config.maxConcurrentRuns >= 0 && count(ALL_RUNS) >= config.maxConcurrentRuns;

  const admitted: RunRecord[] = [];
  const admittedIds = new Set<string>();
  const evaluated: RunRecord[] = [];
  for (const run of candidates) {
    // Every run is under the global limit: once it is full, nobody else gets in.
    if (globalFull()) break;
    evaluated.push(run);
    if (limitsOf(run).every((l) => count(l.countKey) < l.limit)) {
      admitted.push(run);
      admittedIds.add(run.id);
      bump(run, +1);
    }
  }

  // Reasons: runs considered and left queued, runs under an edited key, the new run, and
  // every queued run under a key whose fullness changed between before the command and after
  // the pass. Any other queued run is held by a limit that stayed full, as recorded.
  const recheck = new Map<string, RunRecord>();
  const recheckRun = (run: RunRecord | undefined) => {
    if (run && !admittedIds.has(run.id)) recheck.set(run.id, run);
  };
  for (const run of everyone ? evaluated : (candidates as RunRecord[])) recheckRun(run);
  recheckRun(change.enqueued);
  let recheckEveryone = false;
  const subjectsOf = (key: string) => {
    if (key === ALL_RUNS) recheckEveryone = true;
    else for (const id of state.queuedByKey.get(key) ?? []) recheckRun(queued(id));
  };
  for (const key of change.editedKeys ?? []) if (key !== ALL_RUNS) subjectsOf(key);
  for (const key of new Set([...delta.keys(), ...(change.editedKeys ?? [])])) {
    if (fullness(key, configBefore, countBefore(key)) !== fullness(key, config, count(key))) subjectsOf(key);
  }
  if (recheckEveryone) for (const id of state.queue.inOrder()) recheckRun(queued(id));

  const blocked: PassResult['blocked'] = [];
  for (const run of [...recheck.values()].sort(inQueueOrder)) {
    const reasons = limitsOf(run)
      .filter((l) => count(l.countKey) >= l.limit)
      .map((l) => toConstraint(l, count(l.countKey)));
    if (reasons.length === 0) {
      // Cannot happen if the rule above holds; admitting here would break queue order.
      throw new Error(`admission invariant broken: run ${run.id} has room but was not admitted`);
    }
    if (!sameConstraintSet(reasons, run.blockedBy)) blocked.push({ run, reasons });
  }
  return { admitted, blocked };
}

/** What holds a queued run back right now, with today's counts (for reads, not decisions). */
export function currentHolds(state: State, run: RunRecord): Constraint[] {
  if (run.status !== 'QUEUED') return [];
  return runLimitsOf(run, state.config)
    .map((l) => ({ l, inUse: state.counts.get(l.countKey) ?? 0 }))
    .filter(({ l, inUse }) => inUse >= l.limit)
    .map(({ l, inUse }) => toConstraint(l, inUse));
}
