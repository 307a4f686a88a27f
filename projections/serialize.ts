/**
 * The state as plain JSON and back, for checkpoints. A checkpoint only ever speeds up a
 * rebuild: the log stays the source of truth, and a checkpoint from another format version
 * is refused (the caller then replays from the start).
 */
import { countKeysOf } from '../src/domain/constraints.js';
import { PriorityQueue } from './priority-queue.js';
import { type Decision, initialState, type RunRecord, recordDecision, type State, type StepClaim } from './state.js';

/** Bumped whenever State changes shape. */
export const STATE_FORMAT = 3;

type JsonDecision = Omit<Decision, 'position'> & { position: string };
type JsonRun = Omit<RunRecord, 'activeClaims' | 'decisions'> & { activeClaims: string[] };

interface JsonState {
  format: number;
  revision: string;
  lastEventAt: string | null;
  config: Omit<State['config'], 'poolLimits'> & { poolLimits: Array<[string, number]> };
  runs: JsonRun[];
  decisions: JsonDecision[];
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

export function serializeState(state: State): string {
  const json: JsonState = {
    format: STATE_FORMAT,
    revision: state.revision.toString(),
    lastEventAt: state.lastEventAt,
    config: { ...state.config, poolLimits: [...state.config.poolLimits] },
    runs: state.runIds.map((id) => {
      const { activeClaims, decisions: _decisions, ...run } = state.runs.get(id) as RunRecord;
      return { ...run, activeClaims: [...activeClaims] };
    }),
    decisions: state.decisions.map((d) => ({ ...d, position: d.position.toString() })),
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
  state.queue = new PriorityQueue();
  for (const jsonRun of json.runs) {
    const run: RunRecord = { ...jsonRun, activeClaims: new Set(jsonRun.activeClaims), decisions: [] };
    state.runs.set(run.id, run);
    state.runIds.push(run.id);
    if (run.status === 'QUEUED') {
      state.queue.add(run.id, run.priority);
      for (const key of countKeysOf(run).slice(1)) {
        let ids = state.queuedByKey.get(key);
        if (!ids) state.queuedByKey.set(key, (ids = new Set()));
        ids.add(run.id);
      }
    }
    if (run.status === 'STARTING' || run.status === 'STARTED' || run.status === 'CANCELING') {
      for (const key of countKeysOf(run)) state.counts.set(key, (state.counts.get(key) ?? 0) + 1);
    }
  }
  for (const d of json.decisions) {
    recordDecision(state, state.runs.get(d.runId) as RunRecord, { ...d, position: BigInt(d.position) });
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
  return state;
}
