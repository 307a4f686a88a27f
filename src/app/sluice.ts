/**
 * The command layer: the one place that joins the pure decider to an event store.
 *
 * It keeps the projections in memory, follows the store live (so decisions made by other
 * servers on the same store show up here), and runs each command as: catch up, decide,
 * append with the expected revision of the state decided on. A lost race reloads and
 * decides again, which is what keeps two servers from over-admitting.
 */

import { createHash, randomUUID } from 'node:crypto';
import { blockedDecision, decisionOf } from '../../projections/decisions.js';
import { evolve } from '../../projections/evolve.js';
import { deserializeState, STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import { type Decision, decisionPools, initialState, type RunRecord, type State } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import {
  type Constraint,
  constraintIdentity,
  counterKey,
  heldKeysOf,
  reasonsOfCounters,
  runCountersNamedBy,
} from '../domain/constraints.js';
import { type DecideContext, decide, knownRun } from '../domain/decide.js';
import { DomainError } from '../domain/errors.js';
import {
  CURRENT_SCHEMA_VERSION,
  type DomainEvent,
  type LoggedEvent,
  parseEvent,
  UnreadableEventError,
} from '../domain/events.js';
import type { RunStatus } from '../domain/run.js';
import type { CheckpointInfo, CheckpointStore } from '../eventstore/checkpoints.js';
import { ConcurrencyError, StoreUnavailableError } from '../eventstore/errors.js';
import type { EventStore, NewEvent, RecordedEvent, Subscription } from '../eventstore/store.js';
import { type HistoryStore, openHistoryStore } from '../history/history-store.js';
import type { RulesRecord } from './rules-version.js';

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
  /** Where to report trouble that does not stop the server (a checkpoint that failed, the log lost). */
  warn?: (message: string) => void;
  /** Where to report news an operator wants (following the log again after losing it). */
  info?: (message: string) => void;
  /** Called once per execute(), whatever its outcome: feeds command metrics and logs. */
  onCommand?: (record: CommandRecord) => void;
  /** The history read model (finished runs, decisions, waits); default: one in memory. */
  history?: HistoryStore;
  /** How many checkpoints to keep; older ones are deleted. Default 3. */
  checkpointsKept?: number;
}

/** What one execute() did, for metrics and logs. */
export interface CommandRecord {
  command: string;
  runId: string | null;
  actor: string;
  /** rejected: the domain refused it (bad input, unknown run, transition not allowed); error: anything else. */
  outcome: 'ok' | 'rejected' | 'error';
  /** The refusal's or failure's name, e.g. InvalidInputError, StoreUnavailableError. */
  errorCode?: string;
  /** Events appended. */
  events: number;
  durationMs: number;
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

interface GroupMember {
  command: Command;
  actor: string;
  resolve: (outcome: CommandOutcome) => void;
  reject: (error: unknown) => void;
}

/** Most commands decided and appended together in one transaction. */
const MAX_GROUP = 256;
/** Decisions replayed from the history per read. */
const REPLAY_PAGE = 500;

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
  /** Revision of the last event known durable and handed to history and listeners. */
  private durable = -1n;
  private readonly checkpoints: CheckpointStore | null;
  private readonly checkpointEvery: number;
  private readonly checkpointsKept: number;
  private readonly warn: (message: string) => void;
  private readonly info: (message: string) => void;
  private readonly onCommand: ((record: CommandRecord) => void) | null;
  private readonly history: HistoryStore;
  /** Durable events not yet written to the history; written in batches, and before any read. */
  private readonly historyPending: LoggedEvent[] = [];
  private historyPosition: bigint;
  private historyScheduled = false;
  private readonly pastStates = new Map<bigint, State>();
  /** Revision of the newest checkpoint that matches the log; -1n: none. */
  private lastCheckpoint = -1n;
  private lastApplied: RecordedEvent | null = null;
  private checkpointScheduled = false;
  private replaying = true;
  readonly stream: string;
  /** The log's record of the rules it is written under, once read (see app/rules-version). */
  rulesRecord: RulesRecord | null = null;
  private readonly clock: () => Date;
  private readonly newRunId: () => string;
  private readonly maxAttempts: number;
  private readonly eventListeners = new Set<(event: LoggedEvent) => void>();
  private readonly waiting: GroupMember[] = [];
  private flushing = false;
  private flushScheduled = false;
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => {};
  private follower: Subscription | null = null;
  private followerError: Error | null = null;
  private caughtUp = false;
  private closed = false;

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
    this.checkpointsKept = options.checkpointsKept ?? 3;
    this.warn = options.warn ?? ((message) => console.warn(message));
    this.info = options.info ?? (() => {});
    this.onCommand = options.onCommand ?? null;
    this.history = options.history ?? openHistoryStore(':memory:');
    this.historyPosition = this.history.position();
  }

  /** The live state (config, counts, queued and in-progress runs, claims). */
  get state(): State {
    return this.current;
  }

  /** Loads the live state from a checkpoint and the log, brings the history up to it, then follows the store. */
  static async open(options: SluiceOptions): Promise<Sluice> {
    const sluice = new Sluice(options.store, options);
    await sluice.bindHistory();
    const start = await sluice.latestValidCheckpoint(2n ** 63n - 1n);
    if (start) {
      sluice.current = start;
      sluice.lastCheckpoint = start.revision;
      sluice.durable = start.revision;
      await sluice.rebuildHistoryTo(start.revision);
    }
    await sluice.catchUp();
    sluice.flushHistory();
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
    const follower = this.store.subscribe(
      this.stream,
      { afterRevision: this.durable },
      (recorded) => this.apply(recorded),
      (error) => {
        this.followerError = error;
        this.follower = null;
        if (!this.closed) this.warn(`not following the log: ${error.message}; trying again in 0.5 s`);
        // Reads and commands still catch up on their own; try to follow again shortly.
        setTimeout(() => {
          if (this.follower === null && !this.closed) {
            this.lostTheLog = true;
            this.follow();
          }
        }, 500).unref();
      },
    );
    this.follower = follower;
    // Not ready until following again for real: a store still down fails the new follower too.
    follower.caughtUp.then(
      () => {
        if (this.follower === follower) this.followerError = null;
      },
      () => undefined,
    );
    if (this.lostTheLog) {
      follower.caughtUp.then(
        () => {
          if (this.follower !== follower || this.closed) return;
          this.lostTheLog = false;
          this.info(`following the log again from position ${this.durable}`);
        },
        () => {},
      );
    }
  }

  /** Set when following failed, until a new follower has caught up: then it is news. */
  private lostTheLog = false;

  /**
   * Takes one stored event in, once, in order: folds it into the live state unless a command of
   * this server already did (speculatively, before its append), then hands it to the history
   * and the listeners, which only ever see durable events.
   */
  private apply(recorded: RecordedEvent): void {
    if (recorded.revision <= this.durable) return;
    if (recorded.revision !== this.durable + 1n) {
      throw new Error(
        `log gap: the projections are at revision ${this.durable}, the next event is ${recorded.revision}`,
      );
    }
    const event = toLoggedEvent(recorded);
    if (this.speculating) {
      // Another server's event while this server's group is folded in ahead of its append: that
      // append must lose the race (it expects the log to end before this event), and the live
      // state is rebuilt from the log then. Folded into the speculative state it would land on
      // the wrong runs; skipped as "already folded" it would be lost.
    } else if (recorded.revision > this.state.revision && !this.restoring) {
      // While restoring, the rebuilt state takes this event from the log instead.
      evolve(this.state, event);
    }
    this.durable = recorded.revision;
    this.lastApplied = recorded;
    this.recordHistory(event, recorded);
    this.maybeCheckpoint();
    for (const listener of this.eventListeners) listener(event);
  }

  /** The log's first event, kept until the history is bound to it (a log that was empty at start). */
  private firstRecorded: RecordedEvent | null = null;

  private recordHistory(event: LoggedEvent, recorded: RecordedEvent): void {
    if (recorded.revision === 0n) this.firstRecorded = recorded;
    if (event.revision <= this.historyPosition) return;
    this.historyPending.push(event);
    if (this.historyPending.length >= 5_000) {
      this.flushHistory();
      return;
    }
    if (this.historyScheduled || this.replaying) return;
    this.historyScheduled = true;
    setImmediate(() => {
      this.historyScheduled = false;
      try {
        this.flushHistory();
      } catch (error) {
        this.warn(`history not written yet, will retry: ${(error as Error).message}`);
      }
    });
  }

  /** Writes pending events to the history (one transaction); throws StoreUnavailableError when it cannot. */
  private flushHistory(): void {
    if (this.historyPending.length === 0) return;
    const first = this.historyPending[0] as LoggedEvent;
    if (first.revision === 0n && this.firstRecorded) this.history.bindTo(eventHash(this.firstRecorded));
    this.history.apply(this.historyPending);
    this.historyPosition = (this.historyPending.at(-1) as LoggedEvent).revision;
    this.historyPending.length = 0;
  }

  /**
   * The history file must be of this log: one that followed another log is emptied (and then
   * rebuilt below). An empty log binds on its first event.
   */
  private async bindHistory(): Promise<void> {
    const [first] = await this.store.readStream(this.stream, { fromRevision: 0n, maxCount: 1 });
    if (!first) {
      // An empty log: the file is bound when its first event is written (flushHistory), against
      // that event's hash. Not now: another server of this log may be writing it meanwhile, and
      // what the file holds is taken on trust only once it is known to be of this log.
      this.historyPosition = -1n;
      return;
    }
    if (this.history.bindTo(eventHash(first))) {
      this.warn('history read model was of another log: rebuilding it from this one');
    }
    this.historyPosition = this.history.position();
  }

  /** Feeds the history the log up to a revision it has not seen (missing or behind). */
  private async rebuildHistoryTo(revision: bigint): Promise<void> {
    while (this.historyPosition < revision) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: this.historyPosition + 1n,
        maxCount: Math.min(5_000, Number(revision - this.historyPosition)),
      });
      if (batch.length === 0) return;
      this.history.apply(batch.map(toLoggedEvent));
      this.historyPosition = (batch.at(-1) as RecordedEvent).revision;
    }
  }

  /** The history read model, with every durable event written to it. */
  async readHistory(): Promise<HistoryStore> {
    await this.catchUp();
    this.flushHistory();
    return this.history;
  }

  /** Events between checkpoints: at least checkpointEvery, else a quarter of the log. */
  private checkpointSpacing(): bigint {
    const every = BigInt(this.checkpointEvery);
    const quarter = (this.lastCheckpoint + 1n) / 4n;
    return quarter > every ? quarter : every;
  }

  /**
   * Writes a checkpoint when one is due. While replaying at start-up it is written at once;
   * while serving, after the current command has answered. The state is only the live one,
   * so writing it costs what is queued and in progress, not the history.
   */
  private maybeCheckpoint(): void {
    if (!this.checkpoints || this.checkpointScheduled) return;
    if (this.durable - this.lastCheckpoint < this.checkpointSpacing()) return;
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
    // Only a state that is all durable: never one with a group's events folded in ahead of its append.
    if (
      !this.checkpoints ||
      this.closed ||
      !recorded ||
      this.speculating ||
      recorded.revision !== this.state.revision
    ) {
      return;
    }
    try {
      this.checkpoints.save({
        revision: recorded.revision,
        eventHash: eventHash(recorded),
        format: STATE_FORMAT,
        state: serializeState(this.state),
      });
      this.checkpoints.keepLatest(this.checkpointsKept);
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

  /** Folds the log into a state until it reaches a revision (or the log's end). */
  private async foldUpTo(state: State, revision: bigint): Promise<State> {
    while (state.revision < revision) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: state.revision + 1n,
        maxCount: Math.min(5_000, Number(revision - state.revision)),
      });
      if (batch.length === 0) break;
      for (const recorded of batch) evolve(state, toLoggedEvent(recorded));
    }
    return state;
  }

  /**
   * The live state as it was right after the event at `revision` (-1n: before any), from the
   * nearest valid checkpoint and the log. Never today's rules re-applied: the state is the fold
   * of the recorded events.
   */
  async stateAt(revision: bigint): Promise<State> {
    await this.catchUp();
    if (revision >= this.durable && this.state.revision === this.durable) return this.state;
    // Read under the rules the log was written under at that position (app/rules-version).
    const underItsRules = (past: State) => {
      if (this.rulesRecord) past.rules = this.rulesRecord.rulesAt(revision);
      return past;
    };
    const cached = this.pastStates.get(revision);
    if (cached) return underItsRules(cached);
    const start = (revision >= 0n ? await this.latestValidCheckpoint(revision) : null) ?? initialState();
    const state = underItsRules(await this.foldUpTo(start, revision));
    this.pastStates.set(revision, state);
    if (this.pastStates.size > 8) this.pastStates.delete(this.pastStates.keys().next().value as bigint);
    return state;
  }

  /** The revision of the last event recorded at or before an instant (-1n: none). */
  async revisionAt(instant: Date): Promise<bigint> {
    await this.catchUp();
    const target = instant.getTime();
    let lo = 0n;
    let hi = this.durable;
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

  /**
   * Reads every event after the projections' revision and takes it in. A read that comes while
   * a group of commands is folded in ahead of its append waits for that append first: until
   * then the live state holds events that may never be recorded and lacks other servers' events
   * that arrived meanwhile (see apply), so it is no state to answer from.
   */
  async catchUp(): Promise<void> {
    while (this.speculating) await this.speculationEnded;
    for (;;) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: this.durable + 1n,
        maxCount: 5_000,
      });
      for (const recorded of batch) this.apply(recorded);
      if (batch.length < 5_000) return;
    }
  }

  /** A run by id: live, recently finished, or from the history. */
  async run(id: string): Promise<RunRecord | null> {
    await this.catchUp();
    const live = knownRun(this.state, id, {});
    if (live) return live;
    return (await this.readHistory()).run(id);
  }

  /**
   * How many runs the log holds in each status, finished ones included, as of every durable
   * event taken in so far (from the history read model), for metrics.
   */
  runCountsByStatus(): Record<RunStatus, number> {
    this.flushHistory();
    const counts = this.history.countsByStatus();
    const statuses: RunStatus[] = ['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'];
    return Object.fromEntries(statuses.map((status) => [status, counts.get(status) ?? 0])) as Record<RunStatus, number>;
  }

  /**
   * Decides and appends a command. Throws the domain's errors for bad input, unknown runs and
   * transitions not allowed (nothing appended), StoreUnavailableError when the store fails.
   *
   * Group commit: commands that arrive while an append is in flight (or in the same turn of
   * the event loop) are decided one after another on the live state, each seeing the events of
   * those before it, and appended together in one transaction. Each is answered only once that
   * transaction is durable. A command that fails validation answers its own error alone; a lost
   * race re-decides the whole group on the state that won.
   */
  execute(command: Command, actor: string): Promise<CommandOutcome> {
    if (this.onCommand === null) return this.enqueueCommand(command, actor);
    const report = this.onCommand;
    const started = performance.now();
    const record = (fields: Pick<CommandRecord, 'runId' | 'outcome' | 'errorCode' | 'events'>) => {
      try {
        report({ command: command.type, actor, durationMs: performance.now() - started, ...fields });
      } catch {
        // Metrics and logs must never change a command's answer.
      }
    };
    return this.enqueueCommand(command, actor).then(
      (outcome) => {
        record({ runId: outcome.runId, outcome: 'ok', events: outcome.events.length });
        return outcome;
      },
      (error: unknown) => {
        const runId =
          command.type === 'EnqueueRun' ? (command.input.runId ?? null) : 'runId' in command ? command.runId : null;
        const outcome = error instanceof DomainError ? 'rejected' : 'error';
        record({ runId, outcome, errorCode: (error as Error)?.name ?? 'Error', events: 0 });
        throw error;
      },
    );
  }

  /** Puts a command in the next group to decide and append. */
  private enqueueCommand(command: Command, actor: string): Promise<CommandOutcome> {
    return new Promise<CommandOutcome>((resolve, reject) => {
      if (this.closed) {
        reject(new StoreUnavailableError('the server is shutting down'));
        return;
      }
      if (this.waiting.length === 0 && !this.flushing) this.idle = new Promise((done) => (this.markIdle = done));
      this.waiting.push({ command, actor, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    const group = this.waiting.splice(0, MAX_GROUP);
    try {
      await this.commitGroup(group);
    } catch (error) {
      for (const member of group) member.reject(error);
    } finally {
      this.flushing = false;
      if (this.waiting.length > 0) this.scheduleFlush();
      else this.markIdle();
    }
  }

  /** The finished run a command names when the live state no longer has it. */
  private pastRunFor(command: Command): RunRecord | null {
    const runId =
      command.type === 'EnqueueRun'
        ? (command.input as { runId?: unknown }).runId
        : 'runId' in command
          ? command.runId
          : null;
    if (typeof runId !== 'string' || knownRun(this.state, runId, {})) return null;
    this.flushHistory();
    return this.history.run(runId);
  }

  private async commitGroup(group: GroupMember[]): Promise<void> {
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      // Every command is decided on a state that includes everything acknowledged before it.
      await this.catchUp();
      const now = this.clock().toISOString();
      const base = this.durable;
      const newEvents: NewEvent[] = [];
      const outcomes: Array<{ error: unknown } | { start: number; count: number; runId: string | null }> = [];
      this.startSpeculation();
      try {
        for (const member of group) {
          const context: DecideContext = { now, newRunId: this.newRunId(), pastRun: this.pastRunFor(member.command) };
          let events: DomainEvent[];
          try {
            events = decide(member.command, this.state, context);
          } catch (error) {
            outcomes.push({ error });
            continue;
          }
          outcomes.push({
            start: newEvents.length,
            count: events.length,
            runId: runIdOf(member.command, events, context),
          });
          for (const event of events) {
            // Folded now, so the next command of the group sees it; durable only after the append.
            evolve(this.state, {
              ...event,
              revision: this.state.revision + 1n,
              at: now,
              actor: member.actor,
            } as LoggedEvent);
            newEvents.push({
              type: event.type,
              schemaVersion: CURRENT_SCHEMA_VERSION,
              data: event.data,
              actor: member.actor,
              at: now,
            });
          }
        }
      } catch (error) {
        // A fold that throws is a bug; the live state goes back to the log's.
        await this.restoreSpeculation();
        throw error;
      }
      let recorded: RecordedEvent[] = [];
      if (newEvents.length === 0) this.endSpeculation();
      if (newEvents.length > 0) {
        try {
          recorded = (await this.store.append(this.stream, newEvents, base < 0n ? 'no_stream' : base)).events;
        } catch (error) {
          await this.restoreSpeculation();
          if (error instanceof ConcurrencyError) {
            // Retrying at once can lock in step behind a writer that keeps winning (it queues
            // for the store's lock while the loser is still catching up); a short random pause
            // after the first loss breaks the rhythm.
            if (attempt > 1) await new Promise((done) => setTimeout(done, Math.random() * Math.min(2 ** attempt, 50)));
            continue;
          }
          throw error;
        }
        // The append won: no other event came between the base and these, so they are the ones
        // already folded in.
        this.endSpeculation();
        for (const event of recorded) this.apply(event);
      }
      group.forEach((member, i) => {
        const outcome = outcomes[i] as (typeof outcomes)[number];
        if ('error' in outcome) member.reject(outcome.error);
        else
          member.resolve({
            events: recorded.slice(outcome.start, outcome.start + outcome.count).map(toLoggedEvent),
            runId: outcome.runId,
          });
      });
      return;
    }
    throw new TooMuchContentionError(
      `the command lost the race for the log ${this.maxAttempts} times in a row; nothing was recorded, try again`,
    );
  }

  /**
   * After a failed append: the live state again as the log has it (checkpoint, then the log).
   * It is built on the side; meanwhile the follower may take in more durable events, so the new
   * state is folded until it has reached every one of them and swapped in only then, in the same
   * step as that check. Until the swap, events are taken in without being folded (`restoring`).
   */
  private async restoreLiveState(): Promise<void> {
    this.restoring = true;
    try {
      let state = (await this.latestValidCheckpoint(this.durable).catch(() => null)) ?? initialState();
      do state = await this.foldUpTo(state, this.durable);
      while (state.revision < this.durable);
      this.current = state;
    } finally {
      this.restoring = false;
    }
  }

  /** True while the live state is being rebuilt after a failed append. */
  private restoring = false;

  /** True while a group's events are folded into the live state ahead of their append. */
  private speculating = false;
  /** Settles when the current speculation ends (its append made, or the state restored). */
  private speculationEnded: Promise<void> = Promise.resolve();
  private settleSpeculation: () => void = () => {};

  private startSpeculation(): void {
    this.speculating = true;
    this.speculationEnded = new Promise((done) => (this.settleSpeculation = done));
  }

  private endSpeculation(): void {
    if (!this.speculating) return;
    this.speculating = false;
    this.settleSpeculation();
  }

  /** Ends a speculation that did not become durable: the live state as the log has it. */
  private async restoreSpeculation(): Promise<void> {
    try {
      await this.restoreLiveState();
    } finally {
      this.endSpeculation();
    }
  }

  /** Every durable event from now on, in order. */
  onEvent(listener: (event: LoggedEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** The pools of a run, live or past, for filtering decisions by pool. */
  private runPools(runId: string): readonly string[] {
    const live = knownRun(this.state, runId, {});
    if (live) return live.pools;
    this.flushHistory();
    return this.history.run(runId)?.pools ?? [];
  }

  /**
   * Decisions matching the filter: with `after`, first those the history holds after it, read
   * page by page as the client consumes them; then live ones, none missed or repeated. A run's
   * stream also tells when what holds the run changes (derived from limit states). A client that
   * falls more than `capacity` decisions behind the live log gets SubscriberBehindError naming
   * where to resume. Closing it (return) ends it at once, even while it waits.
   */
  decisionStream(filter: DecisionFilter, capacity = 10_000): AsyncIterableIterator<Decision> {
    return new DecisionStream(this, filter, capacity);
  }

  /** For DecisionStream: listens to durable events, with the hold changes of one run when asked. */
  listenForDecisions(filter: DecisionFilter, push: (decision: Decision) => void): () => void {
    const holds = filter.runId != null ? this.holdWatcher(filter.runId) : null;
    return this.onEvent((event) => {
      const decision = decisionOf(event);
      if (decision && matchesDecision(decision, this.runPools(decision.runId), { ...filter, after: null })) {
        push(decision);
      }
      const changed = holds?.(event);
      if (changed && matchesDecision(changed, this.runPools(changed.runId), { ...filter, after: null })) push(changed);
    });
  }

  /**
   * Follows what holds one queued run, event by event, from the live state at subscription:
   * returns a BLOCKED decision when the set of limits holding it changes (the run's first hold
   * is a recorded decision of its own).
   */
  private holdWatcher(runId: string): (event: LoggedEvent) => Decision | null {
    const run = this.state.runs.get(runId);
    if (run?.status !== 'QUEUED') return () => null;
    const counters = [...new Set(heldKeysOf(run))];
    const held = new Map<string, Constraint[]>(counters.map((key) => [key, this.state.held.get(key) ?? []]));
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

  async close(): Promise<void> {
    this.closed = true;
    await this.idle.catch(() => undefined);
    await this.follower?.close();
    this.follower = null;
    try {
      this.flushHistory();
    } catch (error) {
      this.warn(`history not written at shutdown (it is rebuilt from the log): ${(error as Error).message}`);
    }
    this.history.close();
  }
}

/**
 * The iterator behind decisionStream: a replay from the history, a page at a time, then live
 * decisions from a bounded buffer. A class rather than an async generator so that return()
 * ends it while it waits for the next decision (a generator suspended at an await cannot be
 * returned until that await settles, which would hold a closing server).
 */
class DecisionStream implements AsyncIterableIterator<Decision> {
  private readonly buffer: Decision[] = [];
  private page: Decision[] = [];
  private replaying: boolean;
  private overflowed = false;
  private closed = false;
  private last: bigint | null;
  private wake: (() => void) | null = null;
  private stopListening: (() => void) | null = null;

  constructor(
    private readonly sluice: Sluice,
    private readonly filter: DecisionFilter,
    private readonly capacity: number,
  ) {
    this.last = filter.after ?? null;
    this.replaying = this.last !== null;
  }

  private start(): void {
    if (this.stopListening) return;
    this.stopListening = this.sluice.listenForDecisions(this.filter, (decision) => {
      if (this.buffer.length >= this.capacity) this.overflowed = true;
      else this.buffer.push(decision);
      this.wake?.();
    });
  }

  async next(): Promise<IteratorResult<Decision>> {
    if (this.closed) return { value: undefined, done: true };
    if (!this.stopListening) {
      await this.sluice.catchUp();
      // Listening starts before the replay reads: whatever comes meanwhile is buffered.
      this.start();
    }
    for (;;) {
      if (this.closed) return { value: undefined, done: true };
      if (this.replaying) {
        const fromPage = this.page.shift();
        if (fromPage) return this.deliver(fromPage);
        const history = await this.sluice.readHistory();
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

function runIdOf(command: Command, events: readonly DomainEvent[], context: DecideContext): string | null {
  if (command.type === 'EnqueueRun') {
    const enqueued = events.find((e) => e.type === 'RunEnqueued');
    if (enqueued) return enqueued.data.runId;
    return command.input.runId ?? context.newRunId;
  }
  return 'runId' in command ? command.runId : null;
}

export { UnreadableEventError };
