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

export interface ConcurrencyConfig {
  /** -1: no limit; 0: admit nothing. */
  maxConcurrentRuns: number;
  tagConcurrencyLimits: TagConcurrencyLimit[];
  poolGranularity: PoolGranularity;
  /** Limit of every pool without one of its own; null: such pools are unlimited. */
  defaultPoolLimit: number | null;
  /** Limits set for pools themselves. */
  poolLimits: ReadonlyMap<string, number>;
}

/** Dagster's defaults: 10 runs at once, no tag limits, OP granularity, unlimited pools. */
export function defaultConcurrencyConfig(): ConcurrencyConfig {
  return {
    maxConcurrentRuns: 10,
    tagConcurrencyLimits: [],
    poolGranularity: 'OP',
    defaultPoolLimit: null,
    poolLimits: new Map(),
  };
}

/** Bounds shared by every input path (GraphQL, CLI, config file). */
export const LIMITS = {
  maxLimit: 1_000_000,
  maxNameLength: 255,
  maxTagsPerRun: 1_000,
  maxStepsPerRun: 1_000,
  maxTagLimits: 1_000,
} as const;
