/**
 * The live state as plain JSON and back, for checkpoints. A checkpoint only ever speeds up a
 * rebuild: the log stays the source of truth, and a checkpoint from another format version
 * is refused (the caller then replays from the start). It holds only what is live (no history),
 * so its size and the time to write it follow the queue, not the log.
 */

import type { Constraint } from '../src/domain/constraints.js';
import { rebuildIndexes } from './indexes.js';
import { PriorityQueue } from './priority-queue.js';
import { initialState, type RunRecord, type State, type StepClaim } from './state.js';

/** Bumped whenever State changes shape. */
export const STATE_FORMAT = 5;

type JsonRun = Omit<RunRecord, 'activeClaims' | 'promisedSteps'> & { activeClaims: string[]; promisedSteps: string[] };

interface JsonState {
  format: number;
  revision: string;
  lastEventAt: string | null;
  config: Omit<State['config'], 'poolLimits'> & { poolLimits: Array<[string, number]> };
  /** Live runs in enqueue order. */
  runs: JsonRun[];
  recentlyFinished: JsonRun[];
  runCount: number;
  held: Array<[string, Constraint[]]>;
  knownPools: string[];
  claims: StepClaim[];
  slotHolders: Array<[string, string[]]>;
  waitingClaims: Array<[string, string[]]>;
  nextClaimSeq: number;
  monitoring: State['monitoring'];
  /** Kept in their own order (admission order), which reads and timeouts follow. */
  inProgress: string[];
  activeRunsByPool: Array<[string, string[]]>;
}

const setEntries = (map: Map<string, Set<string>>): Array<[string, string[]]> =>
  [...map].map(([key, set]) => [key, [...set]]);
const setMap = (entries: Array<[string, string[]]>) => new Map(entries.map(([key, list]) => [key, new Set(list)]));

const toJsonRun = ({ activeClaims, promisedSteps, ...run }: RunRecord): JsonRun => ({
  ...run,
  activeClaims: [...activeClaims],
  promisedSteps: [...promisedSteps],
});
const fromJsonRun = (run: JsonRun): RunRecord => ({
  ...run,
  activeClaims: new Set(run.activeClaims),
  promisedSteps: new Set(run.promisedSteps),
});

export function serializeState(state: State): string {
  const json: JsonState = {
    format: STATE_FORMAT,
    revision: state.revision.toString(),
    lastEventAt: state.lastEventAt,
    config: { ...state.config, poolLimits: [...state.config.poolLimits] },
    runs: [...state.runs.values()].sort((a, b) => a.seq - b.seq).map(toJsonRun),
    recentlyFinished: [...state.recentlyFinished.values()].map(toJsonRun),
    runCount: state.runCount,
    held: [...state.held],
    knownPools: [...state.knownPools],
    claims: [...state.claims.values()],
    slotHolders: setEntries(state.slotHolders),
    waitingClaims: [...state.waitingClaims].map(([pool, queue]) => [pool, [...queue]]),
    nextClaimSeq: state.nextClaimSeq,
    monitoring: state.monitoring,
    inProgress: [...state.inProgress],
    activeRunsByPool: setEntries(state.activeRunsByPool),
  };
  return JSON.stringify(json);
}

export class CheckpointFormatError extends Error {
  override readonly name = 'CheckpointFormatError';
}

/** Rebuilds a state from serializeState's output; derived indexes are recomputed. */
export function deserializeState(text: string): State {
  const json = JSON.parse(text) as JsonState;
  if (json.format !== STATE_FORMAT) {
    throw new CheckpointFormatError(`checkpoint format ${json.format}, this server reads ${STATE_FORMAT}`);
  }
  const state = initialState();
  state.revision = BigInt(json.revision);
  state.lastEventAt = json.lastEventAt;
  state.config = { ...json.config, poolLimits: new Map(json.config.poolLimits) };
  state.runCount = json.runCount;
  state.held = new Map(json.held);
  state.recentlyFinished = new Map(json.recentlyFinished.map((run) => [run.id, fromJsonRun(run)]));
  // In enqueue order (see serializeState), which rebuildIndexes relies on.
  for (const jsonRun of json.runs) {
    const run = fromJsonRun(jsonRun);
    state.runs.set(run.id, run);
  }
  state.knownPools = new Set(json.knownPools);
  state.claims = new Map(json.claims.map((c) => [`${c.runId}\u0000${c.stepKey}`, c]));
  state.slotHolders = setMap(json.slotHolders);
  for (const [pool, keys] of json.waitingClaims) {
    const queue = new PriorityQueue();
    for (const key of keys) queue.add(key, (state.claims.get(key) as StepClaim).priority);
    state.waitingClaims.set(pool, queue);
  }
  state.nextClaimSeq = json.nextClaimSeq;
  state.monitoring = json.monitoring;
  state.inProgress = new Set(json.inProgress);
  state.activeRunsByPool = setMap(json.activeRunsByPool);
  rebuildIndexes(state);
  return state;
}
