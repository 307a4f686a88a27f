/**
 * What-if: the admission pass on the current state with a config change applied, without
 * appending anything. It runs the very decider the real change runs (ChangeConcurrencyConfig)
 * and folds its events into a copy of the state, so its answer is what the change would do.
 */
import { evolve } from '../../projections/evolve.js';
import { deserializeState, serializeState } from '../../projections/serialize.js';
import type { RunRecord, State } from '../../projections/state.js';
import { currentHolds } from './admission.js';
import type { ConfigChangeInput } from './commands.js';
import type { ConcurrencyConfig } from './config.js';
import type { Constraint } from './constraints.js';
import { type DecideContext, decide } from './decide.js';

export interface Simulation {
  config: ConcurrencyConfig;
  /** Runs that would be admitted at once, in admission order (records of the given state). */
  wouldAdmit: RunRecord[];
  /** Runs that would still wait, in queue order, each with what would hold it. */
  stillQueued: Array<{ run: RunRecord; holds: Constraint[] }>;
}

export function simulateChange(state: State, change: ConfigChangeInput, context: DecideContext): Simulation {
  const events = decide({ type: 'ChangeConcurrencyConfig', change }, state, context);
  const after = events.length === 0 ? state : deserializeState(serializeState(state));
  let revision = state.revision;
  for (const event of events) {
    revision += 1n;
    evolve(after, { ...event, revision, at: context.now, actor: 'simulation' });
  }
  const original = (id: string) => state.runs.get(id) as RunRecord;
  return {
    // The live state's limits change in place as later edits are folded in: the answer keeps its own.
    config: after === state ? { ...state.config, poolLimits: new Map(state.config.poolLimits) } : after.config,
    wouldAdmit: events.flatMap((e) => (e.type === 'RunAdmitted' ? [original(e.data.runId)] : [])),
    stillQueued: [...after.queue.inOrder()].map((id) => ({
      run: original(id),
      holds: currentHolds(after, after.runs.get(id) as RunRecord),
    })),
  };
}
