/** The limits in force, as Dagster's `concurrency:` block describes them. */

export type PoolGranularity = 'OP' | 'RUN';

export interface TagConcurrencyLimit {
  key: string;
  /** null: counts every run carrying the key, whatever its value (unless per unique value). */
  value: string | null;
  /** A separate counter per value of the key. Never set together with `value`. */
  applyLimitPerUniqueValue: boolean;
  limit: number;
}

/**
 * Dagster's OP-granularity run hold (`block_op_concurrency_limited_runs`, `pools.op_granularity_run_buffer`):
 * at OP granularity a queued run all of whose root steps are in pools with no free slot stays
 * queued, so runs that could do nothing do not take a run worker.
 */
export interface RootStepHold {
  /** false: admit regardless, as Sluice did before (Dagster's `enabled: false`). */
  enabled: boolean;
  /** How many slots over a pool's limit root steps may be promised before runs are held. */
  runBuffer: number;
  /**
   * How long a STARTED run's unclaimed root steps still count as holding their slots (Dagster's
   * DAGSTER_OP_CONCURRENCY_KEYS_ALLOTTED_FOR_STARTED_RUN_SECONDS); STARTING runs always count.
   */
  startedRunAllotmentSeconds: number;
}

export interface ConcurrencyConfig {
  /** -1: no limit; 0: admit nothing. */
  maxConcurrentRuns: number;
  tagConcurrencyLimits: TagConcurrencyLimit[];
  poolGranularity: PoolGranularity;
  /** Limit of every pool without one of its own; null: such pools are unlimited. */
  defaultPoolLimit: number | null;
  /** Limits set for pools themselves. */
  poolLimits: ReadonlyMap<string, number>;
  rootStepHold: RootStepHold;
}

/** Dagster's defaults: on, no buffer, 5 s for a started run to claim its root steps. */
export function defaultRootStepHold(): RootStepHold {
  return { enabled: true, runBuffer: 0, startedRunAllotmentSeconds: 5 };
}

/** Dagster's defaults: 10 runs at once, no tag limits, OP granularity, unlimited pools, the root-step hold on. */
export function defaultConcurrencyConfig(): ConcurrencyConfig {
  return {
    maxConcurrentRuns: 10,
    tagConcurrencyLimits: [],
    poolGranularity: 'OP',
    defaultPoolLimit: null,
    poolLimits: new Map(),
    rootStepHold: defaultRootStepHold(),
  };
}

/** Bounds shared by every input path (GraphQL, CLI, config file). */
export const LIMITS = {
  maxLimit: 1_000_000,
  maxNameLength: 255,
  maxTagsPerRun: 1_000,
  /** Dagster sets no bound on a run tag's value; a request must have one (values over maxNameLength are kept out). */
  maxTagValueLength: 65_536,
  maxStepsPerRun: 1_000,
  maxTagLimits: 1_000,
  /** A day: a started run that has not claimed its root steps by then is not about to. */
  maxAllotmentSeconds: 86_400,
} as const;
