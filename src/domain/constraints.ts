/**
 * What a limit is, which runs it applies to, and how it reads to a person.
 *
 * Every run limit counts in-progress runs under a *count key*: all runs, runs with a tag key,
 * runs with a tag key and value, runs using a pool. Counts are kept per key whatever the
 * config says, so a limit edit never needs a recount.
 */
import type { ConcurrencyConfig, TagConcurrencyLimit } from './config.js';
import { rootStepsOf, type Step, type Tag } from './run.js';

export type ConstraintKind =
  | 'MAX_CONCURRENT_RUNS'
  | 'TAG_LIMIT'
  | 'POOL_LIMIT'
  | 'RUN_STEP_LIMIT'
  /** At OP granularity: every root step of the run is in a pool with no free slot (RootStepHold). */
  | 'ROOT_STEP_POOLS';

/** One limit as it held a run or a step back, recorded in decisions. */
export interface Constraint {
  kind: ConstraintKind;
  key: string | null;
  value: string | null;
  pool: string | null;
  /** For TAG_LIMIT: the limit applies to each value of the key separately. */
  perUniqueValue: boolean;
  limit: number;
  inUse: number;
  message: string;
}

export const ALL_RUNS = 'runs';
export const tagKeyCount = (key: string): string => `k\u0000${key}`;
export const tagValueCount = (key: string, value: string): string => `v\u0000${key}\u0000${value}`;
export const poolCount = (pool: string): string => `p\u0000${pool}`;
/**
 * A pool's root-step counter: its slots in use, its waiting claims and the root steps promised
 * to admitted runs (see RootStepHold). Not a run count: it only ever holds runs whose root
 * steps are all in full pools, so a run's reasons join these by "all", not "any".
 */
export const rootPoolCount = (pool: string): string => `r\u0000${pool}`;
export const isRootPoolCount = (countKey: string): boolean => countKey.startsWith('r\u0000');

/** A run counter as the log names it (see LimitStatesChanged). */
export interface Counter {
  key: string | null;
  value: string | null;
  pool: string | null;
  /** With pool: the pool's root-step counter rather than its run count. */
  rootSteps?: boolean;
}

export function counterKey(c: Counter): string {
  if (c.pool !== null) return c.rootSteps ? rootPoolCount(c.pool) : poolCount(c.pool);
  if (c.key === null) return ALL_RUNS;
  return c.value === null ? tagKeyCount(c.key) : tagValueCount(c.key, c.value);
}

export function counterOfKey(countKey: string): Counter {
  if (countKey === ALL_RUNS) return { key: null, value: null, pool: null };
  const [kind, first = '', second = ''] = countKey.split('\u0000');
  if (kind === 'p') return { key: null, value: null, pool: first };
  if (kind === 'r') return { key: null, value: null, pool: first, rootSteps: true };
  return { key: first, value: kind === 'v' ? second : null, pool: null };
}

/** The counter a run limit counts under, from the constraint that names it. */
export function counterKeyOf(c: Pick<Constraint, 'kind' | 'key' | 'value' | 'pool'>): string {
  switch (c.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return ALL_RUNS;
    case 'POOL_LIMIT':
      return poolCount(c.pool ?? '');
    case 'ROOT_STEP_POOLS':
      return rootPoolCount(c.pool ?? '');
    default:
      return c.value === null ? tagKeyCount(c.key ?? '') : tagValueCount(c.key ?? '', c.value);
  }
}

/**
 * Whether the limits of a counter full at a count are those recorded for it (same limits, same
 * values, same count: nothing to record), without making them as constraints: most commands
 * leave most of the counters they touch as they were, and a constraint's sentence costs more
 * than the comparison. A limit's identity is constraintIdentity's.
 */
export function fullLimitsAre(
  limits: readonly ApplicableLimit[],
  inUse: number,
  recorded: readonly Constraint[],
): boolean {
  let full = 0;
  for (const l of limits) if (inUse >= l.limit) full++;
  if (full !== recorded.length) return false;
  for (const c of recorded) {
    if (c.inUse !== inUse) return false;
    let found = false;
    for (const l of limits) {
      if (inUse >= l.limit && l.limit === c.limit && sameLimitIdentity(l, c)) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

type LimitIdentity = Omit<Constraint, 'inUse' | 'message' | 'limit'>;

function sameLimitIdentity(a: LimitIdentity, b: LimitIdentity): boolean {
  return (
    a.kind === b.kind &&
    (a.key ?? '') === (b.key ?? '') &&
    (a.value ?? '') === (b.value ?? '') &&
    (a.pool ?? '') === (b.pool ?? '') &&
    Boolean(a.perUniqueValue) === Boolean(b.perUniqueValue)
  );
}

/** The keys an in-progress run counts under, whatever limits exist. */
export function countKeysOf(run: { tags: readonly Tag[]; pools: readonly string[] }): string[] {
  const keys = [ALL_RUNS];
  for (const tag of run.tags) keys.push(tagKeyCount(tag.key), tagValueCount(tag.key, tag.value));
  for (const pool of run.pools) keys.push(poolCount(pool));
  return keys;
}

/**
 * The root-step counters that can hold a queued run: one per pool of its root steps (steps
 * that depend on none), or none at all when a root step has no pool, since that step could
 * always start (Dagster's `has_unconstrained_root_nodes`).
 */
export function rootKeysOf(run: { steps: readonly Step[] }): string[] {
  if (run.steps.length === 0) return [];
  const pools = new Set<string>();
  for (const step of rootStepsOf(run.steps)) {
    if (step.pool === null) return [];
    pools.add(step.pool);
  }
  return [...pools].map(rootPoolCount);
}

/** Every counter whose recorded state can hold a queued run: its run counters, then its root-step counters. */
export function heldKeysOf(run: { tags: readonly Tag[]; pools: readonly string[]; steps: readonly Step[] }): string[] {
  const keys = countKeysOf(run);
  for (const key of rootKeysOf(run)) keys.push(key);
  return keys;
}

/**
 * A run's reasons from its counters' full limits: every full limit of its run counters and,
 * when all of its root-step counters are full, theirs too (one free root slot lets it go).
 */
export function reasonsOfCounters(keys: readonly string[], fullOf: (countKey: string) => readonly Constraint[]) {
  const reasons: Constraint[] = [];
  const roots: Constraint[] = [];
  let everyRootFull = true;
  let anyRoot = false;
  for (const key of keys) {
    const full = fullOf(key);
    if (!isRootPoolCount(key)) {
      reasons.push(...full);
      continue;
    }
    anyRoot = true;
    if (full.length === 0) everyRootFull = false;
    roots.push(...full);
  }
  if (anyRoot && everyRootFull) reasons.push(...roots);
  return reasons;
}

/**
 * What a RunBlocked tells of the run's counters: the full limits of each of its run counters
 * (none for a counter it does not name). Not its root-step counters: it names them only when
 * all are full, and the LimitStatesChanged of the same command records them (see admissionPass).
 */
export function runCountersNamedBy(countKeys: readonly string[], reasons: readonly Constraint[]) {
  const byCounter = new Map<string, Constraint[]>();
  for (const key of countKeys) if (!isRootPoolCount(key)) byCounter.set(key, []);
  for (const reason of reasons) byCounter.get(counterKeyOf(reason))?.push(reason);
  return byCounter;
}

/**
 * The count at which a pool's root-step counter holds runs: the pool's limit plus the run
 * buffer, at OP granularity with the hold on; null when it never does (no limit, hold off, RUN).
 */
export function rootStepThreshold(config: ConcurrencyConfig, pool: string): number | null {
  if (config.poolGranularity !== 'OP' || !config.rootStepHold.enabled) return null;
  const limit = poolLimitOf(config, pool);
  return limit === null ? null : limit + config.rootStepHold.runBuffer;
}

/** A limit that applies to a particular run, with the key it counts under. */
export type ApplicableLimit = Omit<Constraint, 'inUse' | 'message'> & { countKey: string };

/** The limit a pool has: its own, else the default, else none (null). */
export function poolLimitOf(config: ConcurrencyConfig, pool: string): number | null {
  return config.poolLimits.get(pool) ?? config.defaultPoolLimit;
}

function tagLimitApplies(limit: TagConcurrencyLimit, tag: Tag): boolean {
  if (limit.key !== tag.key) return false;
  return limit.applyLimitPerUniqueValue || limit.value === null || limit.value === tag.value;
}

/** Every run limit that applies to a run under a config, in a stable order. */
export function runLimitsOf(
  run: { tags: readonly Tag[]; pools: readonly string[] },
  config: ConcurrencyConfig,
): ApplicableLimit[] {
  const limits: ApplicableLimit[] = [];
  if (config.maxConcurrentRuns >= 0) {
    limits.push({
      countKey: ALL_RUNS,
      kind: 'MAX_CONCURRENT_RUNS',
      key: null,
      value: null,
      pool: null,
      perUniqueValue: false,
      limit: config.maxConcurrentRuns,
    });
  }
  for (const tagLimit of config.tagConcurrencyLimits) {
    for (const tag of run.tags) {
      if (!tagLimitApplies(tagLimit, tag)) continue;
      const byValue = tagLimit.applyLimitPerUniqueValue || tagLimit.value !== null;
      limits.push({
        countKey: byValue ? tagValueCount(tag.key, tag.value) : tagKeyCount(tag.key),
        kind: 'TAG_LIMIT',
        key: tag.key,
        value: byValue ? tag.value : null,
        pool: null,
        perUniqueValue: tagLimit.applyLimitPerUniqueValue,
        limit: tagLimit.limit,
      });
    }
  }
  if (config.poolGranularity === 'RUN') {
    for (const pool of run.pools) {
      const limit = poolLimitOf(config, pool);
      if (limit === null) continue;
      limits.push({
        countKey: poolCount(pool),
        kind: 'POOL_LIMIT',
        key: null,
        value: null,
        pool,
        perUniqueValue: false,
        limit,
      });
    }
  }
  return limits;
}

/**
 * Counters' limits kept between commands, for the counters every admission pass asks about:
 * all runs' by the max concurrent runs, tag counters' per list of tag limits (an edit of the tag
 * limits replaces the list, never changes it). Pool counters are worked out each time: pool
 * limits are edited in place.
 */
const allRunsLimits = new Map<number, readonly ApplicableLimit[]>();
const tagCounterLimits = new WeakMap<readonly TagConcurrencyLimit[], Map<string, readonly ApplicableLimit[]>>();

/**
 * The run limits that count under one counter. Every run counted under the counter is subject
 * to all of them, so a queued run's reasons are the full limits of its counters. The list may
 * be shared: read it, never change it.
 */
export function limitsOnCounter(countKey: string, config: ConcurrencyConfig): readonly ApplicableLimit[] {
  if (countKey === ALL_RUNS) {
    let limits = allRunsLimits.get(config.maxConcurrentRuns);
    if (!limits) {
      if (allRunsLimits.size >= 64) allRunsLimits.clear();
      limits = counterLimits(countKey, config);
      allRunsLimits.set(config.maxConcurrentRuns, limits);
    }
    return limits;
  }
  if (!countKey.startsWith('k\u0000') && !countKey.startsWith('v\u0000')) return counterLimits(countKey, config);
  let byKey = tagCounterLimits.get(config.tagConcurrencyLimits);
  if (!byKey) {
    byKey = new Map();
    tagCounterLimits.set(config.tagConcurrencyLimits, byKey);
  }
  let limits = byKey.get(countKey);
  if (!limits) {
    // Bounded: with a limit per value of a tag, there can be as many counters as values.
    if (byKey.size >= 4096) byKey.clear();
    limits = counterLimits(countKey, config);
    byKey.set(countKey, limits);
  }
  return limits;
}

function counterLimits(countKey: string, config: ConcurrencyConfig): ApplicableLimit[] {
  const counter = counterOfKey(countKey);
  const base = { countKey, key: counter.key, value: counter.value, pool: counter.pool, perUniqueValue: false };
  if (countKey === ALL_RUNS) {
    return config.maxConcurrentRuns >= 0
      ? [{ ...base, kind: 'MAX_CONCURRENT_RUNS', limit: config.maxConcurrentRuns }]
      : [];
  }
  if (counter.rootSteps && counter.pool !== null) {
    const limit = rootStepThreshold(config, counter.pool);
    return limit === null ? [] : [{ ...base, kind: 'ROOT_STEP_POOLS', limit }];
  }
  if (counter.pool !== null) {
    const limit = config.poolGranularity === 'RUN' ? poolLimitOf(config, counter.pool) : null;
    return limit === null ? [] : [{ ...base, kind: 'POOL_LIMIT', limit }];
  }
  const limits: ApplicableLimit[] = [];
  for (const l of config.tagConcurrencyLimits) {
    if (l.key !== counter.key) continue;
    if (counter.value === null) {
      if (l.value === null && !l.applyLimitPerUniqueValue) limits.push({ ...base, kind: 'TAG_LIMIT', limit: l.limit });
    } else if (l.applyLimitPerUniqueValue) {
      limits.push({ ...base, kind: 'TAG_LIMIT', perUniqueValue: true, limit: l.limit });
    } else if (l.value === counter.value) {
      limits.push({ ...base, kind: 'TAG_LIMIT', limit: l.limit });
    }
  }
  return limits;
}

/** The limits of a counter that are full at a count, as constraints with that count. */
export function fullLimitsOn(countKey: string, config: ConcurrencyConfig, inUse: number): Constraint[] {
  const full: Constraint[] = [];
  for (const l of limitsOnCounter(countKey, config)) if (inUse >= l.limit) full.push(toConstraint(l, inUse));
  return full;
}

/** A sentence a person can read, built only from the constraint's data. */
export function describeLimit(c: Omit<Constraint, 'message'>, granularity: 'OP' | 'RUN' = 'RUN'): string {
  const counted = `${c.inUse} of ${c.limit}`;
  switch (c.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return `max concurrent runs: ${counted} runs in progress`;
    case 'TAG_LIMIT':
      if (c.perUniqueValue) return `tag ${c.key}=${c.value} (limit per value of ${c.key}): ${counted} runs in progress`;
      if (c.value !== null) return `tag ${c.key}=${c.value}: ${counted} runs in progress`;
      return `tag ${c.key} (any value): ${counted} runs in progress`;
    case 'POOL_LIMIT':
      return granularity === 'OP'
        ? `pool ${c.pool}: ${counted} slots in use`
        : `pool ${c.pool}: ${counted} runs in progress`;
    case 'RUN_STEP_LIMIT':
      return `run's max concurrent steps: ${counted} steps hold slots`;
    case 'ROOT_STEP_POOLS':
      return `every root step would wait: pool ${c.pool} has ${counted} slots taken (in use, pending, or promised to admitted runs not yet claiming; limit plus run buffer)`;
  }
}

export function toConstraint(limit: ApplicableLimit, inUse: number, granularity: 'OP' | 'RUN' = 'RUN'): Constraint {
  const data = {
    kind: limit.kind,
    key: limit.key,
    value: limit.value,
    pool: limit.pool,
    perUniqueValue: limit.perUniqueValue,
    limit: limit.limit,
    inUse,
  };
  return { ...data, message: describeLimit(data, granularity) };
}

/**
 * Identity of a constraint for "did what holds this run change": which limit it is, not its
 * count nor its current value, so editing a full limit that stays full records nothing new.
 */
export function constraintIdentity(c: Omit<Constraint, 'inUse' | 'message' | 'limit'>): string {
  return [c.kind, c.key ?? '', c.value ?? '', c.pool ?? '', c.perUniqueValue ? 'u' : ''].join('\u0000');
}

export function sameConstraintSet(a: readonly Constraint[], b: readonly Constraint[]): boolean {
  if (a.length !== b.length) return false;
  const ids = new Set(a.map(constraintIdentity));
  return b.every((c) => ids.has(constraintIdentity(c)));
}
