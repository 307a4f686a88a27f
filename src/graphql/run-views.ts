/**
 * Runs shown from somewhere other than the live state (a snapshot of the past, a what-if)
 * carry that state with them here, so `Run.blockedBy` answers from it: for the past, the
 * reasons recorded then; for a simulation, the reasons it computed.
 */
import type { RunRecord, State } from '../../projections/state.js';
import { currentHolds } from '../domain/admission.js';
import type { Constraint } from '../domain/constraints.js';

interface RunView {
  /** The reasons to show as blockedBy. */
  holds: Constraint[];
}

const views = new WeakMap<RunRecord, RunView>();

/** Runs of a past state, shown with what held them then: the full limits of their counters. */
export function pastRuns(state: State, runs: RunRecord[]): RunRecord[] {
  return runs.map((run) => runWithHolds(run, currentHolds(state, run)));
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
