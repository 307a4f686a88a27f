/**
 * The admission rule (DESIGN section 1, rules 1-5), in one place.
 *
 * A pass walks QUEUED runs in order (priority descending, then enqueue order) and admits each
 * run whose every limit has room; an admission counts at once against the runs after it, and a
 * held run reserves nothing. Lowering a limit preempts nothing: a limit is "full" when its
 * count is at or above it.
 *
 * The pass costs what changed, not the queue's length: only runs that a relaxed limit could
 * now let through are candidates. What holds the other queued runs is not recomputed per run:
 * a queued run's reasons are the full limits of its counters, so the pass reports the counters
 * whose full limits (or count while full) changed, once each, and every run's reasons and waits
 * are derived from those records.
 *
 * The root-step hold (RootStepHold, Dagster's OP-granularity run blocking) is one more kind of
 * counter per pool: slots in use, claims waiting and root steps promised to admitted runs. It
 * holds a run only when every root-step counter of the run is full, so a run whose root steps
 * could take one free slot anywhere goes.
 */

import { type RunRecord, rootPoolInUse, type State } from '../../projections/state.js';
import type { ConcurrencyConfig } from './config.js';
import {
  ALL_RUNS,
  type ApplicableLimit,
  type Constraint,
  counterOfKey,
  countKeysOf,
  fullLimitsAre,
  fullLimitsOn,
  heldKeysOf,
  isRootPoolCount,
  limitsOnCounter,
  reasonsOfCounters,
  rootKeysOf,
  rootPoolCount,
  runLimitsOf,
  tagKeyCount,
  toConstraint,
} from './constraints.js';
import { hasRootStepHold } from './rules.js';
import { rootStepsOf } from './run.js';

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
  /**
   * How the command changes pools' root-step counts before the pass (rootPoolCount keys):
   * claims made or released, root steps whose promise ended.
   */
  rootDelta?: ReadonlyMap<string, number>;
}

/** A counter whose full limits, or whose count while a limit on it is full, changed. */
export interface CounterChange {
  countKey: string;
  inUse: number;
  /** Its full limits after the command, each with the count; empty: every limit has room. */
  full: Constraint[];
}

export interface PassResult {
  /** Runs to admit, in the order they were admitted. */
  admitted: RunRecord[];
  /** The enqueued run when it has to wait, with every limit holding it: its first hold. */
  firstHold: { run: RunRecord; reasons: Constraint[] } | null;
  /** Counters whose recorded state (State.held) no longer matches, with their new state. */
  counters: CounterChange[];
}

function inQueueOrder(a: RunRecord, b: RunRecord): number {
  return b.priority - a.priority || a.seq - b.seq;
}

/** A root-step counter's count in the state (see rootPoolCount). */
const rootCountNow = (state: State, countKey: string) => rootPoolInUse(state, counterOfKey(countKey).pool as string);

/** The full limits of the run's root-step counters when all are full at these counts, else none. */
function rootHoldsOf(run: RunRecord, config: ConcurrencyConfig, count: (countKey: string) => number): Constraint[] {
  const keys = rootKeysOf(run);
  if (keys.length === 0) return [];
  return reasonsOfCounters(keys, (key) => fullLimitsOn(key, config, count(key)));
}

/** Above this many queued runs under a key that has room again, the key is walked, not listed. */
const WALK_ABOVE = 64;

/** Two lists of runs in queue order as one, each run once; the second is read only as needed. */
function* merged(listed: readonly RunRecord[], lazy: Iterator<RunRecord>): Generator<RunRecord> {
  const seen = new Set<string>();
  let next = lazy.next();
  let i = 0;
  for (;;) {
    const a = listed[i];
    const b = next.done ? undefined : next.value;
    if (!a && !b) return;
    const takeListed = a !== undefined && (b === undefined || inQueueOrder(a, b) <= 0);
    const run = takeListed ? a : (b as RunRecord);
    if (takeListed) i++;
    else next = lazy.next();
    if (seen.has(run.id)) continue;
    seen.add(run.id);
    yield run;
  }
}

export function admissionPass(state: State, change: CapacityChange): PassResult {
  return new Pass(state, change).run();
}

/**
 * One pass, its working state in fields and its steps in methods: a pass runs on every command
 * that frees or changes capacity, and functions made inside it on each call cost more than the
 * pass's own bookkeeping (allocation, and under a dev loader that names functions, much more).
 */
class Pass {
  private readonly configBefore: ConcurrencyConfig;
  private readonly config: ConcurrencyConfig;
  /** How each count moves during the pass. */
  private readonly delta = new Map<string, number>();
  /** Every queued run is a candidate (read lazily, in queue order). */
  private everyone: boolean;
  private readonly candidateIds = new Set<string>();
  /** Keys with room again and many runs under them: walked in queue order, not listed. */
  private readonly walked: string[] = [];
  /** The new run's limits, asked for once and again for its hold. */
  private enqueuedLimits: ApplicableLimit[] | undefined;
  private readonly admitted: RunRecord[] = [];
  private enqueuedAdmitted = false;

  constructor(
    private readonly state: State,
    private readonly change: CapacityChange,
  ) {
    this.configBefore = state.config;
    this.config = change.config ?? state.config;
    this.everyone = change.editedKeys?.has(ALL_RUNS) ?? false;
  }

  run(): PassResult {
    const { state, change, configBefore } = this;
    for (const run of change.freed ?? []) this.bump(run, -1);
    for (const [key, by] of change.rootDelta ?? []) this.add(key, by);

    // Candidates: the new run, runs under an edited key, runs under a key that has room again.
    for (const key of change.editedKeys ?? []) this.addSubjects(key);
    // A key with room again and many runs under it is walked in queue order instead, and only
    // until it is full again: freeing one place then costs what it admits, not the runs waiting.
    for (const key of this.delta.keys()) {
      const before = this.countBefore(key);
      const now = this.count(key);
      if (limitsOnCounter(key, configBefore).some(({ limit }) => before >= limit && now < limit)) {
        if (key !== ALL_RUNS && (state.queuedByKey.get(key)?.size ?? 0) > WALK_ABOVE) this.walked.push(key);
        else this.addSubjects(key);
      }
    }

    const listed: RunRecord[] = [];
    if (!this.everyone) {
      for (const id of this.candidateIds) {
        const run = this.queued(id);
        if (run) listed.push(run);
      }
      if (change.enqueued) listed.push(change.enqueued);
      if (listed.length > 1) listed.sort(inQueueOrder);
    }
    // Every run is under the global limit: once it is full, the pass ends. With no key walked
    // (the common case) the listed runs are the candidates: distinct already, and in queue
    // order, so no merge is needed; a list and a walk are read by loops of their own.
    if (this.everyone) {
      for (const run of this.inOrder()) if (!this.consider(run)) break;
    } else if (this.walked.length === 0) {
      for (const run of listed) if (!this.consider(run)) break;
    } else {
      for (const run of merged(listed, this.underWalked())) if (!this.consider(run)) break;
    }

    let firstHold: PassResult['firstHold'] = null;
    const enqueued = change.enqueued;
    if (enqueued && !this.enqueuedAdmitted) {
      const reasons: Constraint[] = [];
      for (const l of this.limitsOf(enqueued)) {
        const inUse = this.count(l.countKey);
        if (inUse >= l.limit) reasons.push(toConstraint(l, inUse));
      }
      reasons.push(...this.rootHolds(enqueued));
      if (reasons.length === 0) {
        // Cannot happen if the rule above holds; admitting here would break queue order.
        throw new Error(`admission invariant broken: run ${enqueued.id} has room but was not admitted`);
      }
      firstHold = { run: enqueued, reasons };
    }
    return { admitted: this.admitted, firstHold, counters: this.counters(firstHold) };
  }

  private add(key: string, by: number): void {
    this.delta.set(key, (this.delta.get(key) ?? 0) + by);
  }

  private bump(run: RunRecord, by: number): void {
    for (const key of countKeysOf(run)) this.add(key, by);
  }

  /** An admitted run's root steps are promised their slots at once (see evolve). */
  private promise(run: RunRecord): void {
    for (const step of rootStepsOf(run.steps)) if (step.pool !== null) this.add(rootPoolCount(step.pool), 1);
  }

  private countBefore(key: string): number {
    return isRootPoolCount(key) ? rootCountNow(this.state, key) : (this.state.counts.get(key) ?? 0);
  }

  private count(key: string): number {
    return this.countBefore(key) + (this.delta.get(key) ?? 0);
  }

  private addSubjects(key: string): void {
    if (key === ALL_RUNS) this.everyone = true;
    else for (const id of this.state.queuedByKey.get(key) ?? []) this.candidateIds.add(id);
  }

  private queued(id: string): RunRecord | undefined {
    const run = this.state.runs.get(id);
    return run?.status === 'QUEUED' ? run : undefined;
  }

  /**
   * Every queued run in queue order, read lazily: the walk stops as soon as the global limit is
   * full, so freeing one place costs what it admits, not the queue.
   */
  private *inOrder(): Generator<RunRecord> {
    // The new run is the newest of its priority: after every run of equal or higher priority.
    let enqueued = this.change.enqueued;
    for (const id of this.state.queue.inOrder()) {
      const run = this.queued(id);
      if (!run) continue;
      if (enqueued && run.priority < enqueued.priority) {
        yield enqueued;
        enqueued = undefined;
      }
      yield run;
    }
    if (enqueued) yield enqueued;
  }

  private fullOn(key: string): boolean {
    const inUse = this.count(key);
    return limitsOnCounter(key, this.config).some(({ limit }) => inUse >= limit);
  }

  /**
   * The runs under the walked keys in queue order, until every walked key is full again: past
   * that, none of them can go (a run is held by a full counter of its own, or, for root-step
   * counters, any it could go by has room and so is not what held it).
   */
  private *underWalked(): Generator<RunRecord> {
    const { state, walked } = this;
    for (const id of state.queue.inOrder()) {
      if (walked.every((key) => this.fullOn(key))) return;
      const run = this.queued(id);
      if (run && walked.some((key) => state.queuedByKey.get(key)?.has(id))) yield run;
    }
  }

  private limitsOf(run: RunRecord): ApplicableLimit[] {
    if (run !== this.change.enqueued) return runLimitsOf(run, this.config);
    this.enqueuedLimits ??= runLimitsOf(run, this.config);
    return this.enqueuedLimits;
  }

  private globalFull(): boolean {
    return this.config.maxConcurrentRuns >= 0 && this.count(ALL_RUNS) >= this.config.maxConcurrentRuns;
  }

  /** The full limits of the run's root-step counters when all are full at the pass's counts, else none. */
  private rootHolds(run: RunRecord): Constraint[] {
    const keys = rootKeysOf(run);
    if (keys.length === 0) return [];
    return reasonsOfCounters(keys, (key) => fullLimitsOn(key, this.config, this.count(key)));
  }

  /** Admits the run if every limit has room; false once the global limit is full (nobody else gets in). */
  private consider(run: RunRecord): boolean {
    if (this.globalFull()) return false;
    for (const l of this.limitsOf(run)) if (this.count(l.countKey) >= l.limit) return true;
    if (this.rootHolds(run).length === 0) {
      this.admitted.push(run);
      if (run === this.change.enqueued) this.enqueuedAdmitted = true;
      this.bump(run, +1);
      this.promise(run);
    }
    return true;
  }

  /**
   * Counters whose state may have changed: those whose count moved, those of the new run (a
   * limit of 0 is full before anything counts), and those under an edited limit.
   */
  private counters(firstHold: PassResult['firstHold']): CounterChange[] {
    const { state, change, config } = this;
    const touched = new Set<string>(this.delta.keys());
    if (change.enqueued) for (const key of heldKeysOf(change.enqueued)) touched.add(key);
    for (const key of change.editedKeys ?? []) for (const counter of countersUnder(state, key)) touched.add(counter);
    // A held run's first hold names its root-step counters only when all are full, so their state
    // at its enqueue is recorded with it whatever it is: its waits are derived from that on.
    const recordAnyway: ReadonlySet<string> = firstHold ? new Set(rootKeysOf(firstHold.run)) : NO_KEYS;
    for (const key of recordAnyway) touched.add(key);
    const counters: CounterChange[] = [];
    // Listed by counter key, not by how `touched` was filled: that follows the history of the
    // state's maps, which a checkpoint does not keep, and the same state must decide the same bytes.
    for (const countKey of sortedKeys(touched)) {
      const inUse = this.count(countKey);
      const recorded = state.held.get(countKey) ?? NO_LIMITS;
      if (recordAnyway.has(countKey) || !fullLimitsAre(limitsOnCounter(countKey, config), inUse, recorded)) {
        counters.push({ countKey, inUse, full: fullLimitsOn(countKey, config, inUse) });
      }
    }
    return counters;
  }
}

const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const NO_KEYS: ReadonlySet<string> = new Set();
const NO_LIMITS: readonly Constraint[] = [];

/** The keys in order; a pass touches a handful, which an insertion sort orders without the copy sort() makes. */
function sortedKeys(keys: ReadonlySet<string>): string[] {
  const sorted = [...keys];
  if (sorted.length > 16) return sorted.sort(byKey);
  for (let i = 1; i < sorted.length; i++) {
    const key = sorted[i] as string;
    let j = i - 1;
    for (; j >= 0 && (sorted[j] as string) > key; j--) sorted[j + 1] = sorted[j] as string;
    sorted[j + 1] = key;
  }
  return sorted;
}

/**
 * The counters an edit of the limits on a count key can change: the key itself and, for a tag
 * key (whose limits may apply per unique value), every counter of a value of that tag that
 * counts, waits or was recorded full. Edits may look at every such counter; they are rare.
 */
function countersUnder(state: State, key: string): string[] {
  if (key !== tagKeyCount(key.slice(2))) return [key];
  const prefix = `v\u0000${key.slice(2)}\u0000`;
  const counters = new Set<string>([key]);
  for (const map of [state.counts, state.queuedByKey, state.held]) {
    for (const counter of map.keys()) if (counter.startsWith(prefix)) counters.add(counter);
  }
  return [...counters];
}

/** What holds a queued run back right now, with today's counts (for reads, not decisions). */
export function currentHolds(state: State, run: RunRecord): Constraint[] {
  if (run.status !== 'QUEUED') return [];
  const runHolds = runLimitsOf(run, state.config)
    .map((l) => ({ l, inUse: state.counts.get(l.countKey) ?? 0 }))
    .filter(({ l, inUse }) => inUse >= l.limit)
    .map(({ l, inUse }) => toConstraint(l, inUse));
  // Under rules from before the root-step hold no run was held for its root steps.
  if (!hasRootStepHold(state.rules)) return runHolds;
  return [...runHolds, ...rootHoldsOf(run, state.config, (key) => rootCountNow(state, key))];
}
