/**
 * Time travel: the live state as it was after any position, and the position at an instant.
 * Never today's rules re-applied: a past state is the fold of the recorded events, started from
 * the nearest valid checkpoint.
 */
import { initialState, type State } from '../../projections/state.js';
import type { EventStore } from '../eventstore/store.js';
import type { Checkpointing } from './checkpointing.js';

/** Past states kept for repeated reads of the same moment. */
const CACHED_STATES = 8;

export class PastStates {
  private readonly cache = new Map<bigint, State>();

  constructor(
    private readonly store: EventStore,
    private readonly stream: string,
    private readonly checkpointing: Checkpointing,
  ) {}

  /** The state right after the event at `revision` (-1n: before any), given the live one at `durable`. */
  async stateAt(revision: bigint, live: State, durable: bigint): Promise<State> {
    if (revision >= durable && live.revision === durable) return live;
    const cached = this.cache.get(revision);
    if (cached) return cached;
    const start = (revision >= 0n ? await this.checkpointing.latestValid(revision) : null) ?? initialState();
    const state = await this.checkpointing.foldUpTo(start, revision);
    this.cache.set(revision, state);
    if (this.cache.size > CACHED_STATES) this.cache.delete(this.cache.keys().next().value as bigint);
    return state;
  }

  /** The revision of the last event recorded at or before an instant (-1n: none), in a log ending at `durable`. */
  async revisionAt(instant: Date, durable: bigint): Promise<bigint> {
    const target = instant.getTime();
    let lo = 0n;
    let hi = durable;
    let found = -1n;
    // Times follow log order on one server; across servers clocks may disagree slightly.
    while (lo <= hi) {
      const mid = (lo + hi) / 2n;
      const [event] = await this.store.readStream(this.stream, { fromRevision: mid, maxCount: 1 });
      if (event && Date.parse(event.at) <= target) {
        found = mid;
        lo = mid + 1n;
      } else {
        hi = mid - 1n;
      }
    }
    return found;
  }
}
