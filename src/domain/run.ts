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
  /** Keys of the steps of the same run it waits for; none (or absent): a root step. */
  dependsOn?: string[];
  /** Added by a claim once the run was admitted (RunStepAdded): never one of its root steps. */
  added?: boolean;
}

/** A tag Sluice read and did not act on, and why. */
export interface IgnoredTag {
  key: string;
  reason: string;
}

export const PRIORITY_TAG = 'dagster/priority';

/** Priorities (the input's, a step's, the tag's) stay within ±MAX_PRIORITY. */
export const MAX_PRIORITY = 1_000_000;

/** The run's root steps: those that wait for no other step. */
export function rootStepsOf(steps: readonly Step[]): Step[] {
  return steps.filter((s) => !s.added && (s.dependsOn ?? []).length === 0);
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

/**
 * The `dagster/priority` tag as Dagster reads it: Python's `int()` (surrounding spaces, a sign,
 * underscores between digits). `integer` false: Dagster would count it as 0. Null: no such tag.
 */
export function readPriorityTag(tags: readonly Tag[]): { value: number; integer: boolean } | null {
  const tag = tags.find((t) => t.key === PRIORITY_TAG);
  if (!tag) return null;
  const text = tag.value.trim();
  if (!/^[+-]?\d+(_\d+)*$/.test(text)) return { value: 0, integer: false };
  return { value: Number(text.replaceAll('_', '')), integer: true };
}

/** The input's priority, else the `dagster/priority` tag as Dagster reads it, else 0. */
export function priorityOf(explicit: number | null | undefined, tags: readonly Tag[]): number {
  if (explicit !== null && explicit !== undefined) return explicit;
  const tag = readPriorityTag(tags);
  if (!tag?.integer || Number.isNaN(tag.value)) return 0;
  // Beyond the range (recorded as such at enqueue), the nearest end keeps the order Dagster would give.
  return Math.max(-MAX_PRIORITY, Math.min(MAX_PRIORITY, tag.value));
}
