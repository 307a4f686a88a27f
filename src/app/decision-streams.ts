/**
 * Decision streams (the `dequeueDecisions` subscription): a replay of past decisions from the
 * history, a page at a time, then live decisions as durable events come in, none missed or
 * repeated; a run's stream also tells when what holds the run changes.
 */
import { blockedDecision, decisionOf } from '../../projections/decisions.js';
import { type Decision, decisionPools, type State } from '../../projections/state.js';
import {
  type Constraint,
  constraintIdentity,
  counterKey,
  heldKeysOf,
  reasonsOfCounters,
  runCountersNamedBy,
} from '../domain/constraints.js';
import type { LoggedEvent } from '../domain/events.js';
import type { HistoryStore } from '../history/history-store.js';

export interface DecisionFilter {
  runId?: string | null;
  pool?: string | null;
  /** Only decisions at a position strictly after this revision. */
  after?: bigint | null;
}

/** What a decision stream reads: the live state and its events, and the history. */
export interface DecisionSource {
  readonly state: State;
  catchUp(): Promise<void>;
  readHistory(waitMs?: number): Promise<HistoryStore>;
  onEvent(listener: (event: LoggedEvent) => void): () => void;
  /** The pools of a run, live or past. */
  runPools(runId: string): readonly string[];
}

/** Decisions replayed from the history per read. */
const REPLAY_PAGE = 500;

/** Whether a decision passes a filter, given the pools of the run it is about. */
export function matchesDecision(decision: Decision, runPools: readonly string[], filter: DecisionFilter): boolean {
  if (filter.after != null && decision.position <= filter.after) return false;
  if (filter.runId != null && decision.runId !== filter.runId) return false;
  return filter.pool == null || decisionPools(decision, runPools).has(filter.pool);
}

/** A client that read too slowly to keep up with live decisions; it resumes with `after`. */
export class SubscriberBehindError extends Error {
  override readonly name = 'SubscriberBehindError';
  constructor(
    readonly resumeAfter: bigint | null,
    capacity: number,
  ) {
    super(
      `this subscription fell more than ${capacity} decisions behind the live log and was ended; ` +
        (resumeAfter === null
          ? 'subscribe again'
          : `subscribe again with after: "${resumeAfter}" to resume with nothing missed or repeated`),
    );
  }
}

/** Listens to durable events for decisions passing a filter, with the hold changes of one run when asked. */
export function listenForDecisions(
  source: DecisionSource,
  filter: DecisionFilter,
  push: (decision: Decision) => void,
): () => void {
  const runId = filter.runId ?? null;
  const pool = filter.pool ?? null;
  let watch: Listener['watch'] = null;
  if (runId !== null) {
    const holds = holdWatcher(source.state, runId);
    watch = (event) => {
      const changed = holds(event);
      return changed && matchesDecision(changed, source.runPools(changed.runId), { ...filter, after: null })
        ? changed
        : null;
    };
  }
  return fanOutOf(source).add({ runId, pool, push, watch });
}

interface Listener {
  runId: string | null;
  pool: string | null;
  push: (decision: Decision) => void;
  /** Sees every event, in order, for what it adds to this listener's stream (a run's hold changes). */
  watch: ((event: LoggedEvent) => Decision | null) | null;
}

/**
 * Subscribers handed their decisions per turn of the event loop: past this many waiting, the
 * rest wait for the next turn, so that commands (and the answers to them) are not held behind
 * the fan-out of what they decided. The longer a round of all subscribers takes, the more
 * decisions each collects for one write, so a smaller slice also costs less in all; but when
 * commands come faster than every subscriber can be served, the subscribers fall behind instead
 * of the commands waiting (up to their buffer's capacity, then SUBSCRIBER_BEHIND). With 1,000
 * SSE subscribers and 10 clients enqueueing as fast as they can (on a loaded machine), 16 measured
 * an enqueue p50 1.3-1.8x that with one subscriber and deliveries 1.5-2 s behind at p50; 64,
 * about 3x; 8, 1.1-1.6x and 3.4 s of lag.
 */
export const FAN_OUT_SLICE = 16;

/**
 * One listener on a source's events for all its live subscribers: each event's decision is
 * derived, and the pools of its run read, once, and the same decision object goes to every
 * subscriber it matches (found by run and by pool, not by trying every filter), so that what is
 * made of it downstream (the subscription's result and its bytes) can be shared as well.
 *
 * Who gets what is settled as each event comes (a subscriber gets the decisions of the events
 * that came while it listened, in log order); the handing over is done a slice of subscribers
 * per turn. A subscriber waiting for its turn collects every decision meanwhile and gets them
 * together, so they reach its client in one write.
 */
class DecisionFanOut {
  private readonly everything = new Set<Listener>();
  private readonly byRun = new Map<string, Set<Listener>>();
  private readonly byPool = new Map<string, Set<Listener>>();
  private readonly watchers = new Set<Listener>();
  /** Decisions not yet handed over, per subscriber, in the order the subscribers are served. */
  private readonly waiting = new Map<Listener, Decision[]>();
  private scheduled = false;
  private count = 0;

  constructor(private readonly source: DecisionSource) {
    source.onEvent((event) => {
      if (this.count > 0) this.dispatch(event);
    });
  }

  add(listener: Listener): () => void {
    const [index, key] =
      listener.runId !== null
        ? [this.byRun, listener.runId]
        : listener.pool !== null
          ? [this.byPool, listener.pool]
          : [null, ''];
    let found = index === null ? this.everything : index.get(key);
    if (found === undefined) {
      found = new Set();
      index?.set(key, found);
    }
    const set: Set<Listener> = found;
    set.add(listener);
    if (listener.watch) this.watchers.add(listener);
    this.count++;
    return () => {
      if (!set.delete(listener)) return;
      this.watchers.delete(listener);
      this.waiting.delete(listener);
      this.count--;
      if (index !== null && set.size === 0) index.delete(key);
    };
  }

  private dispatch(event: LoggedEvent): void {
    const decision = decisionOf(event);
    if (decision) {
      let pools: Set<string> | null = null;
      const poolsOfDecision = () => (pools ??= decisionPools(decision, this.source.runPools(decision.runId)));
      for (const listener of this.everything) this.give(listener, decision);
      for (const listener of this.byRun.get(decision.runId) ?? []) {
        if (listener.pool === null || poolsOfDecision().has(listener.pool)) this.give(listener, decision);
      }
      if (this.byPool.size > 0) {
        for (const pool of poolsOfDecision())
          for (const listener of this.byPool.get(pool) ?? []) this.give(listener, decision);
      }
    }
    // After the event's decision: a subscriber sees a decision before the hold change of the same event.
    for (const listener of this.watchers) {
      const changed = listener.watch?.(event);
      if (changed) this.give(listener, changed);
    }
    if (this.scheduled) return;
    if (this.waiting.size <= FAN_OUT_SLICE) this.handOver();
    else this.schedule();
  }

  private give(listener: Listener, decision: Decision): void {
    const list = this.waiting.get(listener);
    if (list) list.push(decision);
    else this.waiting.set(listener, [decision]);
  }

  private schedule(): void {
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.handOver();
      if (this.waiting.size > 0) this.schedule();
    });
  }

  /** Hands their decisions to the next slice of waiting subscribers. */
  private handOver(): void {
    let served = 0;
    for (const [listener, decisions] of this.waiting) {
      if (served++ === FAN_OUT_SLICE) break;
      this.waiting.delete(listener);
      for (const decision of decisions) listener.push(decision);
    }
  }
}

const fanOuts = new WeakMap<DecisionSource, DecisionFanOut>();

function fanOutOf(source: DecisionSource): DecisionFanOut {
  let fanOut = fanOuts.get(source);
  if (!fanOut) fanOuts.set(source, (fanOut = new DecisionFanOut(source)));
  return fanOut;
}

/**
 * Follows what holds one queued run, event by event, from the live state at subscription:
 * returns a BLOCKED decision when the set of limits holding it changes (the run's first hold
 * is a recorded decision of its own).
 */
function holdWatcher(state: State, runId: string): (event: LoggedEvent) => Decision | null {
  const run = state.runs.get(runId);
  if (run?.status !== 'QUEUED') return () => null;
  const counters = [...new Set(heldKeysOf(run))];
  const held = new Map<string, Constraint[]>(counters.map((key) => [key, state.held.get(key) ?? []]));
  const reasonsNow = () => reasonsOfCounters(counters, (key) => held.get(key) ?? []);
  const identity = () => reasonsNow().map(constraintIdentity).sort().join('\n');
  let current = identity();
  let queued = true;
  return (event) => {
    if (!queued) return null;
    if ((event.type === 'RunAdmitted' || event.type === 'RunFinished') && event.data.runId === runId) {
      queued = false;
      return null;
    }
    if (event.type === 'RunBlocked' && event.data.runId === runId) {
      for (const [key, full] of runCountersNamedBy(counters, event.data.reasons)) held.set(key, full);
      current = identity();
      return null;
    }
    if (event.type !== 'LimitStatesChanged') return null;
    let touched = false;
    for (const counter of event.data.counters) {
      const key = counterKey(counter);
      if (held.has(key)) {
        held.set(key, counter.full);
        touched = true;
      }
    }
    if (!touched) return null;
    const next = identity();
    if (next === current) return null;
    current = next;
    const reasons = reasonsNow();
    return reasons.length === 0 ? null : blockedDecision(runId, event.revision, event.at, reasons);
  };
}

/**
 * The iterator behind a decision stream: a replay from the history, a page at a time, then live
 * decisions from a bounded buffer. A client that falls more than `capacity` decisions behind
 * the live log gets SubscriberBehindError naming where to resume. A class rather than an async
 * generator so that return() ends it while it waits for the next decision (a generator suspended
 * at an await cannot be returned until that await settles, which would hold a closing server).
 */
export class DecisionStream implements AsyncIterableIterator<Decision> {
  private readonly buffer: Decision[] = [];
  private page: Decision[] = [];
  private replaying: boolean;
  private overflowed = false;
  private closed = false;
  private last: bigint | null;
  private wake: (() => void) | null = null;
  private stopListening: (() => void) | null = null;

  constructor(
    private readonly source: DecisionSource,
    private readonly filter: DecisionFilter,
    private readonly capacity: number,
  ) {
    this.last = filter.after ?? null;
    this.replaying = this.last !== null;
  }

  private start(): void {
    if (this.stopListening) return;
    this.stopListening = listenForDecisions(this.source, this.filter, (decision) => {
      if (this.buffer.length >= this.capacity) this.overflowed = true;
      else this.buffer.push(decision);
      this.wake?.();
    });
  }

  async next(): Promise<IteratorResult<Decision>> {
    if (this.closed) return { value: undefined, done: true };
    if (!this.stopListening) {
      await this.source.catchUp();
      // Listening starts before the replay reads: whatever comes meanwhile is buffered.
      this.start();
    }
    for (;;) {
      if (this.closed) return { value: undefined, done: true };
      if (this.replaying) {
        const fromPage = this.page.shift();
        if (fromPage) return this.deliver(fromPage);
        // A subscriber already waits for its stream: the replay waits for the history to catch up
        // after a start however long that takes (closing the server ends the wait).
        const history = await this.source.readHistory(Number.POSITIVE_INFINITY);
        const page = history.decisions({ ...this.filter, after: this.last, limit: REPLAY_PAGE });
        this.page = page;
        if (page.length === REPLAY_PAGE) continue;
        if (this.overflowed) {
          // Live decisions piled up during the replay: the history has them, read on.
          this.overflowed = false;
          this.buffer.length = 0;
          continue;
        }
        this.replaying = this.page.length > 0;
        if (this.replaying) continue;
      }
      if (this.overflowed) {
        this.close();
        throw new SubscriberBehindError(this.last, this.capacity);
      }
      const decision = this.buffer.shift();
      if (decision) {
        if (this.last !== null && decision.position <= this.last) continue;
        return this.deliver(decision);
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }

  private deliver(decision: Decision): IteratorResult<Decision> {
    this.last = decision.position;
    return { value: decision, done: false };
  }

  private close(): void {
    this.closed = true;
    this.stopListening?.();
    this.buffer.length = 0;
    this.page = [];
    this.wake?.();
  }

  async return(): Promise<IteratorResult<Decision>> {
    this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Decision> {
    return this;
  }
}
