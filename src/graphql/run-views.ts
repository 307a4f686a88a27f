/**
 * Runs shown from somewhere other than the live state (a snapshot of the past, a what-if)
 * carry that state with them here, so `Run.blockedBy` answers from it: for the past, the
 * reasons recorded then; for a simulation, the reasons it computed.
 */
import type { RunRecord } from '../../projections/state.js';
import type { Constraint } from '../domain/constraints.js';

interface RunView {
  /** The reasons to show as blockedBy. */
  holds: Constraint[];
}

const views = new WeakMap<RunRecord, RunView>();

/** Runs of a past state, shown with what was recorded as holding them then. */
export function pastRuns(runs: RunRecord[]): RunRecord[] {
  return runs.map((run) => runWithHolds(run, run.status === 'QUEUED' ? run.blockedBy : []));
}

/** A copy of a run shown with computed holds (a simulation). */
export function runWithHolds(run: RunRecord, holds: Constraint[]): RunRecord {
  const copy = { ...run };
  views.set(copy, { holds });
  return copy;
}

export function holdsOverride(run: RunRecord): Constraint[] | undefined {
  return views.get(run)?.holds;
}
