/**
 * The command layer: the one place that joins the pure decider to an event store.
 *
 * It keeps the projections in memory, follows the store live (so decisions made by other
 * servers on the same store show up here), and runs each command as: catch up, decide,
 * append with the expected revision of the state decided on. A lost race reloads and
 * decides again, which is what keeps two servers from over-admitting.
 */
import { randomUUID } from 'node:crypto';
import { evolve } from '../../projections/evolve.js';
import { type Decision, initialState, type State } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { type DecideContext, decide } from '../domain/decide.js';
import {
  CURRENT_SCHEMA_VERSION,
  type DomainEvent,
  type LoggedEvent,
  parseEvent,
  UnreadableEventError,
} from '../domain/events.js';
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
    const pool = filter.pool;
    if (decision.pool === pool) return true;
    if (decision.reasons.some((r) => r.pool === pool)) return true;
    return state.runs.get(decision.runId)?.pools.includes(pool) ?? false;
  }
  return true;
}

export class Sluice {
  readonly state: State = initialState();
  private readonly stream: string;
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
  }

  /** Replays the log into the projections, then follows the store live. */
  static async open(options: SluiceOptions): Promise<Sluice> {
    const sluice = new Sluice(options.store, options);
    await sluice.catchUp();
    sluice.follow();
    await sluice.follower?.caughtUp;
    sluice.caughtUp = true;
    return sluice;
  }

  /** True once the projections have caught up with the log and are following it. */
  get ready(): boolean {
    return this.caughtUp && this.follower !== null && this.followerError === null;
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
    for (const listener of this.eventListeners) listener(event);
    for (let i = decisionsBefore; i < this.state.decisions.length; i++) {
      const decision = this.state.decisions[i] as Decision;
      for (const listener of this.decisionListeners) listener(decision);
    }
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
   * Decisions matching the filter: first those already in the log after `after`, then live
   * ones as they are folded in. The backlog is read and the listener registered in one
   * synchronous step, so nothing is missed or repeated at the seam.
   */
  decisionStream(filter: DecisionFilter, capacity = 100_000): AsyncIterableIterator<Decision> {
    let unsubscribe = () => {};
    const queue = new AsyncQueue<Decision>(capacity, () => unsubscribe());
    for (const decision of this.decisionsAfter(filter.after ?? null)) {
      if (matchesDecision(this.state, decision, filter)) queue.push(decision);
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
