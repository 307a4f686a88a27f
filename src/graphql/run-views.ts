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
  /** For a run of a past state: the position its waits and decisions are shown as of. */
  asOf?: bigint;
}

const views = new WeakMap<RunRecord, RunView>();

/**
 * Runs of a past state, shown as they were then: what held them (the full limits of their
 * counters), and their waits and decisions up to that position.
 */
export function pastRuns(state: State, runs: RunRecord[]): RunRecord[] {
  return runs.map((run) => runWithHolds(run, currentHolds(state, run), state.revision));
}

/** A copy of a run shown with computed holds (a simulation), or as of a past position. */
export function runWithHolds(run: RunRecord, holds: Constraint[], asOf?: bigint): RunRecord {
  const copy = { ...run };
  views.set(copy, { holds, asOf });
  return copy;
}

/** The position a run view is shown as of, or null for now. */
export function asOfOverride(run: RunRecord): bigint | null {
  return views.get(run)?.asOf ?? null;
}

export function holdsOverride(run: RunRecord): Constraint[] | undefined {
  return views.get(run)?.holds;
}
