/**
 * The command layer: the one place that joins the pure decider to an event store.
 *
 * It keeps the projections in memory, follows the store live (so decisions made by other
 * servers on the same store show up here), and runs each command as: catch up, decide,
 * append with the expected revision of the state decided on. A lost race reloads and
 * decides again, which is what keeps two servers from over-admitting.
 */
import { createHash, randomUUID } from 'node:crypto';
import { evolve } from '../../projections/evolve.js';
import { deserializeState, STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import { type Decision, decisionPools, initialState, type State } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { type DecideContext, decide } from '../domain/decide.js';
import {
  CURRENT_SCHEMA_VERSION,
  type DomainEvent,
  type LoggedEvent,
  parseEvent,
  UnreadableEventError,
} from '../domain/events.js';
import type { CheckpointInfo, CheckpointStore } from '../eventstore/checkpoints.js';
import { ConcurrencyError, StoreUnavailableError } from '../eventstore/errors.js';
import type { EventStore, RecordedEvent, Subscription } from '../eventstore/store.js';
import { AsyncQueue } from './async-queue.js';

export const DEPLOYMENT_STREAM = 'sluice-deployment';

export interface SluiceOptions {
  store: EventStore;
  /** The stream holding every event that affects admission. */
  stream?: string;
  /** Injected so tests can drive time. */
  clock?: () => Date;
  newRunId?: () => string;
  /** How many lost races a command may retry before giving up. */
  maxAttempts?: number;
  /** Where to keep checkpoints of the projections; none: always replay from the start. */
  checkpoints?: CheckpointStore;
  /**
   * The least number of events between checkpoints. The spacing grows with the log (a quarter
   * of its length), so checkpoints cost a bounded share of the time and of the disk however
   * long the history gets.
   */
  checkpointEvery?: number;
  /** Where to report trouble that does not stop the server (a checkpoint that failed). */
  warn?: (message: string) => void;
}

export interface CommandOutcome {
  /** Events appended by this command (empty when it changed nothing). */
  events: LoggedEvent[];
  /** The run the command was about, for run commands. */
  runId: string | null;
}

export interface DecisionFilter {
  runId?: string | null;
  pool?: string | null;
  /** Only decisions at a position strictly after this revision. */
  after?: bigint | null;
}

/** The store could not take the command after several lost races. */
export class TooMuchContentionError extends StoreUnavailableError {}

export function toLoggedEvent(recorded: RecordedEvent): LoggedEvent {
  const event = parseEvent(
    recorded.type,
    recorded.schemaVersion,
    recorded.data,
    `event at position ${recorded.revision} of stream ${recorded.stream}`,
  );
  return { ...event, revision: recorded.revision, at: recorded.at, actor: recorded.actor } as LoggedEvent;
}

export function matchesDecision(state: State, decision: Decision, filter: DecisionFilter): boolean {
  if (filter.after != null && decision.position <= filter.after) return false;
  if (filter.runId != null && decision.runId !== filter.runId) return false;
  if (filter.pool != null) {
    const run = state.runs.get(decision.runId);
    return run !== undefined && decisionPools(decision, run).has(filter.pool);
  }
  return true;
}

/** Identifies an event's content, so a checkpoint can tell whether the log still holds it. */
export function eventHash(recorded: RecordedEvent): string {
  const content = [
    recorded.revision.toString(),
    recorded.type,
    recorded.schemaVersion,
    recorded.data,
    recorded.actor,
    recorded.at,
  ];
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

export class Sluice {
  private current: State = initialState();
  private readonly checkpoints: CheckpointStore | null;
  private readonly checkpointEvery: number;
  private readonly warn: (message: string) => void;
  private readonly pastStates = new Map<bigint, State>();
  /** Revision of the newest checkpoint that matches the log; -1n: none. */
  private lastCheckpoint = -1n;
  private lastApplied: RecordedEvent | null = null;
  private checkpointScheduled = false;
  private replaying = true;
  /** The stream holding every event that affects admission. */
  readonly stream: string;
  private readonly clock: () => Date;
  private readonly newRunId: () => string;
  private readonly maxAttempts: number;
  private readonly decisionListeners = new Set<(decision: Decision) => void>();
  private readonly eventListeners = new Set<(event: LoggedEvent) => void>();
  private queue: Promise<unknown> = Promise.resolve();
  private follower: Subscription | null = null;
  private followerError: Error | null = null;
  private caughtUp = false;

  private constructor(
    readonly store: EventStore,
    options: SluiceOptions,
  ) {
    this.stream = options.stream ?? DEPLOYMENT_STREAM;
    this.clock = options.clock ?? (() => new Date());
    this.newRunId = options.newRunId ?? randomUUID;
    this.maxAttempts = options.maxAttempts ?? 50;
    this.checkpoints = options.checkpoints ?? null;
    this.checkpointEvery = options.checkpointEvery ?? 1000;
    this.warn = options.warn ?? ((message) => console.warn(message));
  }

  /** The projections, live. */
  get state(): State {
    return this.current;
  }

  /** Replays the log into the projections, then follows the store live. */
  static async open(options: SluiceOptions): Promise<Sluice> {
    const sluice = new Sluice(options.store, options);
    const start = await sluice.latestValidCheckpoint(2n ** 63n - 1n);
    if (start) {
      sluice.current = start;
      sluice.lastCheckpoint = start.revision;
    }
    await sluice.catchUp();
    sluice.replaying = false;
    sluice.follow();
    await sluice.follower?.caughtUp;
    sluice.caughtUp = true;
    return sluice;
  }

  /**
   * Null once the projections have caught up with the log and are following it; otherwise why
   * not, in words for an operator.
   */
  notReadyBecause(): string | null {
    if (this.followerError !== null) return `not following the log: ${this.followerError.message}`;
    if (!this.caughtUp || this.follower === null) return 'catching up with the log';
    return null;
  }

  now(): Date {
    return this.clock();
  }

  private follow(): void {
    this.follower = this.store.subscribe(
      this.stream,
      { afterRevision: this.state.revision },
      (recorded) => this.apply(recorded),
      (error) => {
        this.followerError = error;
        this.follower = null;
        // Reads and commands still catch up on their own; try to follow again shortly.
        setTimeout(() => {
          if (this.follower === null && !this.closed) {
            this.followerError = null;
            this.follow();
          }
        }, 500).unref();
      },
    );
  }

  private closed = false;

  /** Folds one stored event in, once, in order; notifies listeners of what it decided. */
  private apply(recorded: RecordedEvent): void {
    if (recorded.revision <= this.state.revision) return;
    if (recorded.revision !== this.state.revision + 1n) {
      throw new Error(
        `log gap: the projections are at revision ${this.state.revision}, the next event is ${recorded.revision}`,
      );
    }
    const event = toLoggedEvent(recorded);
    const decisionsBefore = this.state.decisions.length;
    evolve(this.state, event);
    this.lastApplied = recorded;
    this.maybeCheckpoint();
    for (const listener of this.eventListeners) listener(event);
    for (let i = decisionsBefore; i < this.state.decisions.length; i++) {
      const decision = this.state.decisions[i] as Decision;
      for (const listener of this.decisionListeners) listener(decision);
    }
  }

  /** Events between checkpoints: at least checkpointEvery, else a quarter of the log. */
  private checkpointSpacing(): bigint {
    const every = BigInt(this.checkpointEvery);
    const quarter = (this.lastCheckpoint + 1n) / 4n;
    return quarter > every ? quarter : every;
  }

  /**
   * Writes a checkpoint when one is due. While replaying at start-up it is written at once;
   * while serving, after the current command has answered: serializing the state takes a while
   * on a long history and must not delay the command that made it due.
   */
  private maybeCheckpoint(): void {
    if (!this.checkpoints || this.checkpointScheduled) return;
    if (this.state.revision - this.lastCheckpoint < this.checkpointSpacing()) return;
    if (this.replaying) {
      this.writeCheckpoint();
      return;
    }
    this.checkpointScheduled = true;
    setImmediate(() => {
      this.checkpointScheduled = false;
      this.writeCheckpoint();
    });
  }

  private writeCheckpoint(): void {
    const recorded = this.lastApplied;
    if (!this.checkpoints || this.closed || !recorded || recorded.revision !== this.state.revision) return;
    try {
      this.checkpoints.save({
        revision: recorded.revision,
        eventHash: eventHash(recorded),
        format: STATE_FORMAT,
        state: serializeState(this.state),
      });
    } catch (error) {
      this.warn(`checkpoint at position ${recorded.revision} not written: ${(error as Error).message}`);
    }
    // After a failure too: the next attempt is due a spacing later, not on every event.
    this.lastCheckpoint = recorded.revision;
  }

  /**
   * The latest checkpoint at or before a revision that still matches the log, as a state.
   * A checkpoint whose event is gone or changed, or from another format, is deleted.
   */
  private async latestValidCheckpoint(revision: bigint): Promise<State | null> {
    if (!this.checkpoints) return null;
    // Walk down from the newest: a stale checkpoint that cannot be deleted is passed over.
    for (let upTo = revision; upTo >= 0n; ) {
      let candidates: CheckpointInfo[];
      try {
        candidates = this.checkpoints.atOrBefore(upTo, 3);
      } catch (error) {
        this.warn((error as Error).message);
        return null;
      }
      if (candidates.length === 0) return null;
      upTo = (candidates.at(-1) as CheckpointInfo).revision - 1n;
      for (const candidate of candidates) {
        const [event] = await this.store.readStream(this.stream, { fromRevision: candidate.revision, maxCount: 1 });
        if (
          candidate.format === STATE_FORMAT &&
          event?.revision === candidate.revision &&
          eventHash(event) === candidate.eventHash
        ) {
          try {
            const text = this.checkpoints.load(candidate.revision);
            if (text !== null) return deserializeState(text);
          } catch (error) {
            this.warn(`checkpoint at position ${candidate.revision} unreadable: ${(error as Error).message}`);
          }
        } else {
          this.warn(`checkpoint at position ${candidate.revision} does not match the log: ignored`);
        }
        try {
          this.checkpoints.delete(candidate.revision);
        } catch {
          // A stale checkpoint that cannot be deleted is still ignored next time.
        }
      }
    }
    return null;
  }

  /**
   * The projections as they were right after the event at `revision` (-1n: before any),
   * from the nearest valid checkpoint and the log. Never today's rules re-applied: the state
   * is the fold of the recorded events, decisions included.
   */
  async stateAt(revision: bigint): Promise<State> {
    await this.catchUp();
    if (revision >= this.state.revision) return this.state;
    const cached = this.pastStates.get(revision);
    if (cached) return cached;
    const state = (revision >= 0n ? await this.latestValidCheckpoint(revision) : null) ?? initialState();
    while (state.revision < revision) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: state.revision + 1n,
        maxCount: Math.min(5_000, Number(revision - state.revision)),
      });
      if (batch.length === 0) break;
      for (const recorded of batch) evolve(state, toLoggedEvent(recorded));
    }
    this.pastStates.set(revision, state);
    if (this.pastStates.size > 8) this.pastStates.delete(this.pastStates.keys().next().value as bigint);
    return state;
  }

  /** The revision of the last event recorded at or before an instant (-1n: none). */
  async revisionAt(instant: Date): Promise<bigint> {
    await this.catchUp();
    const target = instant.getTime();
    let lo = 0n;
    let hi = this.state.revision;
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

  /** Reads every event after the projections' revision and folds it in. */
  async catchUp(): Promise<void> {
    for (;;) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: this.state.revision + 1n,
        maxCount: 5_000,
      });
      for (const recorded of batch) this.apply(recorded);
      if (batch.length < 5_000) return;
    }
  }

  /** Commands run one at a time per process; across processes the expected revision decides. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Decides and appends a command. Throws the domain's errors for bad input, unknown runs and
   * transitions not allowed (nothing appended), StoreUnavailableError when the store fails.
   */
  execute(command: Command, actor: string): Promise<CommandOutcome> {
    return this.exclusive(async () => {
      for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
        // A command is decided on a state that includes everything acknowledged before it.
        await this.catchUp();
        const now = this.clock().toISOString();
        const context: DecideContext = { now, newRunId: this.newRunId() };
        const events = decide(command, this.state, context);
        const runId = runIdOf(command, events, context);
        if (events.length === 0) return { events: [], runId };
        const expected = this.state.revision < 0n ? 'no_stream' : this.state.revision;
        try {
          const result = await this.store.append(
            this.stream,
            events.map((e: DomainEvent) => ({
              type: e.type,
              schemaVersion: CURRENT_SCHEMA_VERSION,
              data: e.data,
              actor,
              at: now,
            })),
            expected,
          );
          for (const recorded of result.events) this.apply(recorded);
          return { events: result.events.map(toLoggedEvent), runId };
        } catch (error) {
          if (error instanceof ConcurrencyError) continue;
          throw error;
        }
      }
      throw new TooMuchContentionError(
        `the command lost the race for the log ${this.maxAttempts} times in a row; nothing was recorded, try again`,
      );
    });
  }

  /** Every event folded in from now on, in order. */
  onEvent(listener: (event: LoggedEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /**
   * Decisions matching the filter as they are folded in, preceded, when `after` is given, by
   * those already in the log after it. The backlog is read and the listener registered in one
   * synchronous step, so nothing is missed or repeated at the seam.
   */
  decisionStream(filter: DecisionFilter, capacity = 100_000): AsyncIterableIterator<Decision> {
    let unsubscribe = () => {};
    const queue = new AsyncQueue<Decision>(capacity, () => unsubscribe());
    // Without `after` the stream is live only; with it, the log after that position comes first.
    if (filter.after != null) {
      for (const decision of this.decisionsAfter(filter.after)) {
        if (matchesDecision(this.state, decision, filter)) queue.push(decision);
      }
    }
    const listener = (decision: Decision) => {
      if (matchesDecision(this.state, decision, filter)) queue.push(decision);
    };
    this.decisionListeners.add(listener);
    unsubscribe = () => this.decisionListeners.delete(listener);
    return queue;
  }

  /** Decisions after a position, from the projection of the log (binary search). */
  decisionsAfter(after: bigint | null, list: readonly Decision[] = this.state.decisions): readonly Decision[] {
    if (after === null) return list;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as Decision).position <= after) lo = mid + 1;
      else hi = mid;
    }
    return list.slice(lo);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
    await this.follower?.close();
    this.follower = null;
  }
}

function runIdOf(command: Command, events: readonly DomainEvent[], context: DecideContext): string | null {
  if (command.type === 'EnqueueRun') {
    const enqueued = events.find((e) => e.type === 'RunEnqueued');
    if (enqueued) return enqueued.data.runId;
    return command.input.runId ?? context.newRunId;
  }
  return 'runId' in command ? command.runId : null;
}

export { UnreadableEventError };
