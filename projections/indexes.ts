/**
 * The indexes of the live state that follow from its runs alone: the queue in admission order,
 * queued runs per count key, in-progress runs per count key, root steps promised per pool and
 * the deadlines. The fold keeps them up to date event by event; a checkpoint does not hold them
 * and a replay (BulkFold) skips them, and both rebuild them here, once.
 */
import { countKeysOf, heldKeysOf } from '../src/domain/constraints.js';
import { isInProgress } from '../src/domain/run.js';
import { DeadlineIndex } from './deadline-index.js';
import { PriorityQueue } from './priority-queue.js';
import { poolOfStep, type RunRecord, type State } from './state.js';

/**
 * Rebuilds the derived indexes from `state.runs` and `state.inProgress`. The runs map is in
 * enqueue order (a run enters it once, at RunEnqueued, or from a checkpoint's list sorted by
 * enqueue order), so the queue's ties and each key's queued runs come out in the order the
 * fold gives them; the deadlines are tracked in admission order (`inProgress`'s order).
 */
export function rebuildIndexes(state: State): void {
  state.queue = new PriorityQueue();
  state.queuedByKey = new Map();
  state.counts = new Map();
  state.promisedSlots = new Map();
  state.deadlines = new DeadlineIndex();
  for (const run of state.runs.values()) {
    if (run.status === 'QUEUED') {
      state.queue.add(run.id, run.priority);
      const keys = heldKeysOf(run);
      // The first key counts every run (ALL_RUNS): a limit on it holds every queued run alike.
      for (let i = 1; i < keys.length; i++) {
        const key = keys[i] as string;
        let ids = state.queuedByKey.get(key);
        if (!ids) state.queuedByKey.set(key, (ids = new Set()));
        ids.add(run.id);
      }
    } else if (isInProgress(run.status)) {
      for (const key of countKeysOf(run)) state.counts.set(key, (state.counts.get(key) ?? 0) + 1);
    }
    for (const stepKey of run.promisedSteps) {
      const pool = poolOfStep(run, stepKey);
      if (pool !== null) state.promisedSlots.set(pool, (state.promisedSlots.get(pool) ?? 0) + 1);
    }
  }
  for (const runId of state.inProgress) state.deadlines.track(state.runs.get(runId) as RunRecord);
}
