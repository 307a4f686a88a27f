/**
 * How full each tag limit is, from the runs in progress and the queue: the API reports pool
 * usage, and a tag limit's count is the runs in progress that carry its tag.
 */
import type { Constraint, Tag, TagLimit } from './types';

export interface TagUsage {
  /** Stable identity of the row (a per-value limit has one row per value in use or waiting). */
  id: string;
  label: string;
  limit: number;
  inUse: number;
  pending: number;
}

interface TaggedRun {
  tags: Tag[];
}

function matches(limit: TagLimit, tags: Tag[], value?: string): boolean {
  return tags.some(
    (t) =>
      t.key === limit.key &&
      (value !== undefined ? t.value === value : limit.value === null || t.value === limit.value),
  );
}

export function tagUsage(limits: TagLimit[], inProgress: TaggedRun[], queue: TaggedRun[]): TagUsage[] {
  const rows: TagUsage[] = [];
  for (const limit of limits) {
    if (limit.applyLimitPerUniqueValue) {
      const values = new Set<string>();
      for (const run of [...inProgress, ...queue]) {
        for (const t of run.tags) if (t.key === limit.key) values.add(t.value);
      }
      if (values.size === 0) {
        rows.push({
          id: `${limit.key}=*`,
          label: `${limit.key}=(each value)`,
          limit: limit.limit,
          inUse: 0,
          pending: 0,
        });
      }
      for (const value of [...values].sort()) {
        rows.push({
          id: `${limit.key}=*${value}`,
          label: `${limit.key}=${value} (each value)`,
          limit: limit.limit,
          inUse: inProgress.filter((r) => matches(limit, r.tags, value)).length,
          pending: queue.filter((r) => matches(limit, r.tags, value)).length,
        });
      }
    } else {
      rows.push({
        id: `${limit.key}=${limit.value ?? '*'}`,
        label: limit.value === null ? `${limit.key} (any value)` : `${limit.key}=${limit.value}`,
        limit: limit.limit,
        inUse: inProgress.filter((r) => matches(limit, r.tags)).length,
        pending: queue.filter((r) => matches(limit, r.tags)).length,
      });
    }
  }
  return rows;
}

/** A short label for a chip: which limit, and how full it was. */
export function constraintLabel(c: Constraint): string {
  const full = `${c.inUse}/${c.limit}`;
  switch (c.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return `max runs ${full}`;
    case 'TAG_LIMIT':
      return `${c.key}${c.value === null ? '' : `=${c.value}`} ${full}`;
    case 'POOL_LIMIT':
      return `pool ${c.pool} ${full}`;
    case 'RUN_STEP_LIMIT':
      return `run steps ${full}`;
  }
}
