/**
 * What the gauges show, read from the live state at scrape time: limits and their use, pools,
 * and the runs not yet finished. Label values a user chooses (tag values, pool names) are
 * capped, so one scrape never grows with the history or with a key's many values.
 */
import { poolViews } from '../../projections/pools.js';
import type { State } from '../../projections/state.js';
import { ALL_RUNS, tagKeyCount, tagValueCount } from '../domain/constraints.js';
import type { RunStatus } from '../domain/run.js';

/** The label value that stands for every series past a cap. */
export const OVERFLOW_LABEL = '__other__';

export interface SeriesCaps {
  /** Most tag values shown per `applyLimitPerUniqueValue` limit; the rest are summed into OVERFLOW_LABEL. */
  tagValuesPerLimit: number;
  /** Most pools shown; the rest are summed into OVERFLOW_LABEL. */
  pools: number;
}

export const DEFAULT_CAPS: SeriesCaps = { tagValuesPerLimit: 50, pools: 100 };

export type RunLimitKind = 'max_concurrent_runs' | 'tag_value' | 'tag_key' | 'tag_per_value';

export interface RunLimitSeries {
  kind: RunLimitKind;
  key: string;
  value: string;
  /** -1: no limit. */
  limit: number;
  inUse: number;
}

export interface PoolSeries {
  pool: string;
  /** -1: unlimited; null for the overflow series, whose pools may have different limits. */
  limit: number | null;
  inUse: number;
  pending: number;
  /** Root steps of admitted runs not yet claiming, counted by the root-step hold (OP granularity). */
  promised: number;
}

/** Keeps the `cap` largest by weight (ties by name) and sums the rest into one. */
function capped<T>(items: T[], cap: number, weight: (item: T) => number, name: (item: T) => string) {
  const sorted = [...items].sort((a, b) => weight(b) - weight(a) || (name(a) < name(b) ? -1 : 1));
  return { kept: sorted.slice(0, cap), rest: sorted.slice(cap) };
}

/** Every run limit in force with its count, per-value limits expanded to the values in use. */
export function runLimitSeries(state: State, caps: SeriesCaps = DEFAULT_CAPS): RunLimitSeries[] {
  const config = state.config;
  const count = (key: string) => state.counts.get(key) ?? 0;
  const series: RunLimitSeries[] = [
    {
      kind: 'max_concurrent_runs',
      key: '',
      value: '',
      limit: config.maxConcurrentRuns,
      inUse: count(ALL_RUNS),
    },
  ];
  for (const limit of config.tagConcurrencyLimits) {
    if (limit.value !== null) {
      series.push({
        kind: 'tag_value',
        key: limit.key,
        value: limit.value,
        limit: limit.limit,
        inUse: count(tagValueCount(limit.key, limit.value)),
      });
    } else if (!limit.applyLimitPerUniqueValue) {
      series.push({
        kind: 'tag_key',
        key: limit.key,
        value: '',
        limit: limit.limit,
        inUse: count(tagKeyCount(limit.key)),
      });
    } else {
      const prefix = tagValueCount(limit.key, '');
      const values: Array<{ value: string; inUse: number }> = [];
      for (const [key, inUse] of state.counts) {
        if (inUse > 0 && key.startsWith(prefix)) values.push({ value: key.slice(prefix.length), inUse });
      }
      const { kept, rest } = capped(
        values,
        caps.tagValuesPerLimit,
        (v) => v.inUse,
        (v) => v.value,
      );
      for (const v of kept) {
        series.push({ kind: 'tag_per_value', key: limit.key, value: v.value, limit: limit.limit, inUse: v.inUse });
      }
      if (rest.length > 0) {
        const inUse = rest.reduce((sum, v) => sum + v.inUse, 0);
        series.push({ kind: 'tag_per_value', key: limit.key, value: OVERFLOW_LABEL, limit: limit.limit, inUse });
      }
    }
  }
  return series;
}

/** Every known pool with its limit, slots (or runs) in use and pending. */
export function poolSeries(state: State, caps: SeriesCaps = DEFAULT_CAPS): PoolSeries[] {
  const views = poolViews(state);
  const { kept, rest } = capped(
    views,
    caps.pools,
    (p) => p.inUse + p.pending,
    (p) => p.name,
  );
  const series: PoolSeries[] = kept.map((p) => ({
    pool: p.name,
    limit: p.limit ?? -1,
    inUse: p.inUse,
    pending: p.pending,
    promised: p.promised,
  }));
  if (rest.length > 0) {
    series.push({
      pool: OVERFLOW_LABEL,
      limit: null,
      inUse: rest.reduce((sum, p) => sum + p.inUse, 0),
      pending: rest.reduce((sum, p) => sum + p.pending, 0),
      promised: rest.reduce((sum, p) => sum + p.promised, 0),
    });
  }
  return series;
}

/** Runs that are queued or in progress, per status. */
export function liveRunCounts(state: State): Partial<Record<RunStatus, number>> {
  const counts: Partial<Record<RunStatus, number>> = {
    QUEUED: state.queue.size,
    STARTING: 0,
    STARTED: 0,
    CANCELING: 0,
  };
  for (const id of state.inProgress) {
    const status = state.runs.get(id)?.status;
    if (status !== undefined) counts[status] = (counts[status] ?? 0) + 1;
  }
  return counts;
}
