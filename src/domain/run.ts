/** Runs as the admission rules see them. */

export type RunStatus = 'QUEUED' | 'STARTING' | 'STARTED' | 'CANCELING' | 'SUCCESS' | 'FAILURE' | 'CANCELED';

export type FinalStatus = 'SUCCESS' | 'FAILURE' | 'CANCELED';

export interface Tag {
  key: string;
  value: string;
}

export interface Step {
  key: string;
  pool: string | null;
  /** Added to the run's priority when steps wait for the same pool. */
  priority: number;
}

/** In progress: counts against every run limit. */
export function isInProgress(status: RunStatus): boolean {
  return status === 'STARTING' || status === 'STARTED' || status === 'CANCELING';
}

export function isFinished(status: RunStatus): boolean {
  return status === 'SUCCESS' || status === 'FAILURE' || status === 'CANCELED';
}

/** Distinct pools of a run's steps, in first-use order. */
export function poolsOf(steps: readonly Step[]): string[] {
  const pools = new Set<string>();
  for (const step of steps) if (step.pool !== null) pools.add(step.pool);
  return [...pools];
}

/** The input's priority, else the `dagster/priority` tag as an integer, else 0. */
export function priorityOf(explicit: number | null | undefined, tags: readonly Tag[]): number {
  if (explicit !== null && explicit !== undefined) return explicit;
  const tag = tags.find((t) => t.key === 'dagster/priority');
  if (tag && /^[+-]?\d+$/.test(tag.value.trim())) {
    const parsed = Number.parseInt(tag.value.trim(), 10);
    if (Number.isSafeInteger(parsed)) return parsed;
  }
  return 0;
}
