/**
 * Sluice: the one place that joins the pure decider to an event store, as a short facade over
 * the rooms of the application layer:
 *
 * - command-path.ts: catch up, decide, append with the expected revision, retry a lost race;
 * - group-commit.ts: commands that arrive together are decided and appended together;
 * - speculation.ts: a group folded into the live state ahead of its append;
 * - log-follower.ts: following the store live, so other servers' events show up here;
 * - checkpointing.ts: checkpoints of the live state, and the one to start from;
 * - history-feed.ts: durable events written to the history read model;
 * - decision-streams.ts: past then live decisions for subscribers;
 * - past-states.ts: the state at a past position or instant;
 * - sluice-options.ts: what it is opened with.
 *
 * What stays here is the live state itself and `apply`, which takes each stored event in once,
 * in order, and hands it to the others.
 */
import { randomUUID } from 'node:crypto';
import { BulkFold, evolve } from '../../projections/evolve.js';
import { type Decision, initialState, type RunRecord, type State } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { knownRun } from '../domain/decide.js';
import { CURRENT_SCHEMA_VERSION, type LoggedEvent, UnreadableEventError } from '../domain/events.js';
import type { RunStatus } from '../domain/run.js';
import { ConcurrencyError } from '../eventstore/errors.js';
import type { EventStore, RecordedEvent } from '../eventstore/store.js';
import type { HistoryStore } from '../history/history-store.js';
import { Checkpointing } from './checkpointing.js';
import { type CommandOutcome, type CommandRecord, commitGroup, reported } from './command-path.js';
import { type DecisionFilter, DecisionStream } from './decision-streams.js';
import { EventClock } from './event-clock.js';
import { GroupCommit } from './group-commit.js';
import { HistoryBehindError, HistoryFeed, type HistoryStatus } from './history-feed.js';
import { LogFollower } from './log-follower.js';
import { SERVER_ACTOR, SERVER_LOG_FORMAT } from './log-format.js';
import { PastStates } from './past-states.js';
import { DEPLOYMENT_STREAM, toLoggedEvent } from './recorded-events.js';
import { type RulesRecord, RulesScan, rulesRecordMissing } from './rules-version.js';
import type { SluiceOptions } from './sluice-options.js';
import { Speculation } from './speculation.js';

export {
  type CommandOutcome,
  type CommandRecord,
  TooMuchContentionError,
} from './command-path.js';
export { type DecisionFilter, matchesDecision, SubscriberBehindError } from './decision-streams.js';
export { HistoryBehindError, type HistoryStatus, type HistoryToCreate } from './history-feed.js';
export { DEPLOYMENT_STREAM, eventHash, toLoggedEvent } from './recorded-events.js';
export type { SluiceOptions } from './sluice-options.js';
export { UnreadableEventError };

/**
 * Events read from the store at a time when catching up. Small batches keep what is alive at a
 * garbage collection small: a replay from scratch spent a third less time collecting than with
 * batches of 5,000.
 */
const READ_BATCH = 500;

export class Sluice {
  private current: State = initialState();
  /** Revision of the last event known durable and handed to history and listeners. */
  private durable = -1n;
  private lastApplied: RecordedEvent | null = null;
  /**
   * Set while the live state may hold events that were never recorded: a group's append failed
   * and rebuilding the state from the log failed too (the store went away meanwhile). Such a
   * state is not folded into, decided on, answered from or checkpointed; catchUp rebuilds it.
   */
  private liveStateStale = false;
  /** Why the last rebuild of a stale live state failed (null: none failed), for /ready. */
  private rebuildFailed: string | null = null;
  private rebuilding: Promise<void> | null = null;
  /** The format the log was raised to, as far as this server has read it (1: never raised). */
  private logFormat = 1;
  private replaying = true;
  /** While replaying at start-up: the fold that rebuilds the derived indexes once, at the end. */
  private bulk: BulkFold | null = null;
  private closed = false;
  readonly stream: string;
  /** The log's record of the rules it is written under, once read (see app/rules-version). */
  rulesRecord: RulesRecord | null = null;
  /**
   * What the replay from the log's first event at start-up saw of the rules it was written
   * under, when the log records none yet (see app/rules-version); null otherwise.
   */
  rulesScan: RulesScan | null = null;
  private readonly clock: () => Date;
  private readonly eventClock: EventClock;
  private readonly onCommand: ((record: CommandRecord) => void) | null;
  private readonly eventListeners = new Set<(event: LoggedEvent) => void>();
  private readonly speculation = new Speculation((recorded) => this.apply(recorded));
  private readonly checkpointing: Checkpointing;
  private readonly history: HistoryFeed;
  private readonly follower: LogFollower;
  private readonly commands: GroupCommit;
  private readonly past: PastStates;
  private readonly historyWaitMs: number;

  private constructor(
    readonly store: EventStore,
    options: SluiceOptions,
  ) {
    const stream = options.stream ?? DEPLOYMENT_STREAM;
    const warn = options.warn ?? ((message) => console.warn(message));
    this.stream = stream;
    this.clock = options.clock ?? (() => new Date());
    // An injected clock is a test's own time: no monotonic clock to hold it against unless given.
    this.eventClock = new EventClock(this.clock, options.monotonic ?? (options.clock ? null : () => performance.now()));
    this.onCommand = options.onCommand ?? null;
    this.checkpointing = new Checkpointing({
      store,
      stream,
      checkpoints: options.checkpoints ?? null,
      every: options.checkpointEvery ?? 1000,
      kept: options.checkpointsKept ?? 3,
      workerFromBytes: options.checkpointWorkerFromBytes,
      warn,
      durableState: () =>
        this.closed || this.speculation.active || this.liveStateStale || !this.lastApplied
          ? null
          : { state: this.current, recorded: this.lastApplied },
    });
    const info = options.info ?? (() => {});
    this.history = new HistoryFeed(store, stream, options.history, warn, info);
    this.historyWaitMs = options.historyWaitMs ?? 5_000;
    this.follower = new LogFollower({
      store,
      stream,
      position: () => this.durable,
      apply: (recorded) => this.apply(recorded),
      closed: () => this.closed,
      warn,
      info,
    });
    const newRunId = options.newRunId ?? randomUUID;
    const path = {
      store,
      stream,
      eventClock: this.eventClock,
      lastLoggedAt: () => this.lastApplied?.at ?? null,
      logFormat: () => this.logFormat,
      newRunId,
      maxAttempts: options.maxAttempts ?? 50,
      speculation: this.speculation,
      state: () => this.current,
      durable: () => this.durable,
      catchUp: () => this.catchUp(),
      apply: (recorded: RecordedEvent) => this.apply(recorded),
      historyCaughtUp: () => !this.history.status().catchingUp,
      awaitHistory: async () => {
        await this.history.readAt(this.durable, this.historyWaitMs).catch(() => undefined);
      },
      findPastRun: (runId: string) => this.history.pastRun(runId, this.durable),
      pastRun: (runId: string) => {
        const run = this.history.pastRunNow(runId);
        if (run === undefined) throw new HistoryBehindError(this.history.status().position, this.durable);
        return run;
      },
      restoreLiveState: () => this.restoreLiveState(),
    };
    this.commands = new GroupCommit(
      (group) => commitGroup(path, group),
      () => this.closed,
    );
    this.past = new PastStates(store, stream, this.checkpointing);
  }

  /**
   * Start-up, in order: bind the history to this log, choose the latest checkpoint that matches
   * the log, replay the log after it into the live state, follow the log; then the history
   * catches up in the background while the server answers (reads of it wait for it, bounded).
   */
  static async open(options: SluiceOptions): Promise<Sluice> {
    const sluice = new Sluice(options.store, options);
    await sluice.history.bind();
    const start = await sluice.checkpointing.latestValid(2n ** 63n - 1n);
    if (start) {
      sluice.current = start;
      sluice.checkpointing.lastCheckpoint = start.revision;
      sluice.durable = start.revision;
    }
    // A log that records no rules is read once to find what wrote it: a replay from its first
    // event does that on the way, instead of a second read of the whole log.
    if (!start && (await rulesRecordMissing(sluice))) sluice.rulesScan = new RulesScan();
    sluice.checkpointing.replayTo(await options.store.streamRevision(sluice.stream));
    sluice.bulk = new BulkFold(sluice.current);
    await sluice.catchUp();
    sluice.checkpointing.replayTo(null);
    sluice.current = sluice.bulk.finish();
    sluice.bulk = null;
    sluice.rulesScan?.stop();
    sluice.replaying = false;
    await sluice.follower.start();
    sluice.history.catchUpInBackground(() => sluice.durable);
    return sluice;
  }

  /** The live state (config, counts, queued and in-progress runs, claims). */
  get state(): State {
    return this.current;
  }

  /**
   * Null once the projections have caught up with the log and are following it; otherwise why
   * not, in words for an operator.
   */
  notReadyBecause(): string | null {
    // A rebuild under way (after every lost race, too) is no reason: reads wait for it anyway.
    const following = this.follower.notReadyBecause();
    if (following !== null || !this.liveStateStale || this.rebuildFailed === null) return following;
    return `the live state is rebuilt from the log after a failed append, and the log could not be read: ${this.rebuildFailed}`;
  }

  /** Event time now: the wall clock, unless it stepped back (see EventClock). */
  now(): Date {
    return this.eventClock.now(this.lastApplied?.at ?? null);
  }

  /**
   * Takes one stored event in, once, in order: folds it into the live state unless a command of
   * this server already did (speculatively, before its append), then hands it to the history
   * and the listeners, which only ever see durable events.
   */
  private apply(recorded: RecordedEvent): void {
    if (recorded.revision <= this.durable) return;
    // While a group is folded in ahead of its append, nothing stored is taken in (see Speculation).
    if (this.speculation.active) {
      this.speculation.holdBack(recorded);
      return;
    }
    if (recorded.revision !== this.durable + 1n) {
      throw new Error(
        `log gap: the projections are at revision ${this.durable}, the next event is ${recorded.revision}`,
      );
    }
    const event = toLoggedEvent(recorded);
    // A group's own events are folded in already (revision at most the state's); while the state
    // is rebuilt or stale, the rebuilt state takes the event from the log instead.
    if (recorded.revision > this.current.revision && !this.speculation.restoring && !this.liveStateStale) {
      if (this.bulk) this.bulk.add(event);
      else evolve(this.current, event);
    }
    this.durable = recorded.revision;
    this.lastApplied = recorded;
    if (event.type === 'LogFormatRaised') this.logFormat = Math.max(this.logFormat, event.data.format);
    this.rulesScan?.see(event);
    this.history.record(event, recorded);
    this.checkpointing.took(event);
    this.checkpointing.maybeCheckpoint(this.durable, this.replaying);
    for (const listener of this.eventListeners) listener(event);
  }

  /**
   * After a failed append: the live state again as the log has it (checkpoint, then the log).
   * It is built on the side; meanwhile the follower may take in more durable events, so the new
   * state is folded until it has reached every one of them and swapped in only then, in the same
   * step as that check. Until the swap, events are taken in without being folded (`restoring`).
   */
  private async restoreLiveState(): Promise<void> {
    // Stale until the swap: should the store fail meanwhile, the state keeps the group's events.
    this.liveStateStale = true;
    let state = (await this.checkpointing.latestValid(this.durable).catch(() => null)) ?? initialState();
    try {
      do state = await this.checkpointing.foldUpTo(state, this.durable);
      while (state.revision < this.durable);
    } catch (error) {
      this.rebuildFailed = error instanceof Error ? error.message : String(error);
      throw error;
    }
    this.current = state;
    this.liveStateStale = false;
    this.rebuildFailed = null;
  }

  /** Rebuilds a stale live state (see liveStateStale): one rebuild, however many wait for it. */
  private async rebuildStaleLiveState(): Promise<void> {
    if (!this.liveStateStale) return;
    this.rebuilding ??= (async () => {
      this.speculation.restoring = true;
      try {
        await this.restoreLiveState();
      } finally {
        this.speculation.restoring = false;
        this.rebuilding = null;
      }
    })();
    await this.rebuilding;
  }

  /**
   * Reads every event after the projections' revision and takes it in. A read that comes while
   * a group of commands is folded in ahead of its append waits for that append first: until
   * then the live state holds events that may never be recorded, and events stored meanwhile are
   * held back (see Speculation), so it is no state to answer from.
   */
  async catchUp(): Promise<void> {
    for (;;) {
      // Awaited only when there is something to wait for: every read and command comes here.
      if (this.unsettled) await this.settleLiveState();
      const batch = await this.store.readStream(this.stream, {
        fromRevision: this.durable + 1n,
        maxCount: READ_BATCH,
      });
      for (const recorded of batch) this.apply(recorded);
      if (batch.length < READ_BATCH) break;
    }
    // A group folded in while the last read was under way holds back what it read; once the
    // group settles, that is taken in, and nothing need be read again. Callers read the state in
    // the turn of the event loop this returns in: a group starts only after a read of its own
    // (a later turn), so none is folded in between.
    if (this.unsettled) await this.settleLiveState();
  }

  /** True while a group is folded in ahead of its append, or the live state is stale. */
  private get unsettled(): boolean {
    return this.speculation.active || this.liveStateStale;
  }

  /** Waits until the live state is the log's again: the group's append settled, a stale state rebuilt. */
  private async settleLiveState(): Promise<void> {
    while (this.unsettled) {
      await this.speculation.settled();
      await this.rebuildStaleLiveState();
    }
  }

  /**
   * Raises the log's format to this server's unless it is there already, and says whether it
   * appended. Older servers stop at the raise (naming both formats, or, before format 2, the
   * event they do not know) instead of deciding on under rules this log no longer follows.
   * Appended as another server's event would be: a command folded in meanwhile loses its race
   * and is decided again after it.
   */
  async raiseLogFormat(): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      await this.catchUp();
      if (this.logFormat >= SERVER_LOG_FORMAT) return false;
      const raise = {
        type: 'LogFormatRaised',
        schemaVersion: CURRENT_SCHEMA_VERSION,
        data: { format: SERVER_LOG_FORMAT },
        actor: SERVER_ACTOR,
        at: this.now().toISOString(),
      };
      try {
        const { events } = await this.store.append(
          this.stream,
          [raise],
          this.durable < 0n ? 'no_stream' : this.durable,
        );
        await this.speculation.settled();
        for (const recorded of events) this.apply(recorded);
        return true;
      } catch (error) {
        if (!(error instanceof ConcurrencyError) || attempt >= 50) throw error;
      }
    }
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
    if (this.onCommand === null) return this.commands.enqueue(command, actor);
    return reported(this.onCommand, command, actor, () => this.commands.enqueue(command, actor));
  }

  /**
   * The history read model, with every durable event written to it. Right after a start, while
   * it catches up, this waits for it (at most `waitMs`, default historyWaitMs), then throws
   * HistoryBehindError.
   */
  async readHistory(waitMs = this.historyWaitMs): Promise<HistoryStore> {
    await this.catchUp();
    return this.history.readAt(this.durable, waitMs);
  }

  /** How far the history read model is, against the log the live state holds. */
  historyStatus(): HistoryStatus & { logPosition: bigint } {
    return { ...this.history.status(), logPosition: this.durable };
  }

  /** Resolves once the history read model has caught up with the live state after a start. */
  historyCaughtUp(): Promise<void> {
    return new Promise((resolve) => this.history.whenLive(resolve));
  }

  /** Calls back once the history has caught up with the live state, in the same step (see metrics). */
  whenHistoryCaughtUp(callback: () => void): void {
    this.history.whenLive(callback);
  }

  /**
   * A run by id: live, recently finished, or from the history. While the history catches up
   * after a start, an id no run has answers null at once, and a finished run the history has
   * not reached is read from the log (see RunsBehindHistory).
   */
  async run(id: string): Promise<RunRecord | null> {
    await this.catchUp();
    const live = knownRun(this.current, id, {});
    if (live) return live;
    // While the history catches up, what it and the log say of the id, if that is enough.
    const past = await this.history.pastRun(id, this.durable);
    if (past !== undefined) return past;
    return (await this.readHistory()).run(id);
  }

  /**
   * The pools of a run, live or past, for filtering decisions by pool. A decision is about a run
   * the live state holds (queued, in progress or just finished); the history is asked only for
   * others, and while it catches up they have none.
   */
  runPools(runId: string): readonly string[] {
    const live = knownRun(this.current, runId, {});
    if (live) return live.pools;
    return this.history.readNow()?.run(runId)?.pools ?? [];
  }

  /**
   * How many runs the log holds in each status, finished ones included, as of every durable
   * event taken in so far (from the history read model), for metrics. Throws HistoryBehindError
   * while the history catches up after a start (see whenHistoryCaughtUp).
   */
  runCountsByStatus(): Record<RunStatus, number> {
    const history = this.history.readNow();
    if (!history) throw new HistoryBehindError(this.history.status().position, this.durable);
    const counts = history.countsByStatus();
    const statuses: RunStatus[] = ['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'];
    return Object.fromEntries(statuses.map((status) => [status, counts.get(status) ?? 0])) as Record<RunStatus, number>;
  }

  /**
   * The live state as it was right after the event at `revision` (-1n: before any), from the
   * nearest valid checkpoint and the log. Never today's rules re-applied: the state is the fold
   * of the recorded events.
   */
  async stateAt(revision: bigint): Promise<State> {
    await this.catchUp();
    const state = await this.past.stateAt(revision, this.current, this.durable);
    // A past state is read under the rules the log was written under then (app/rules-version).
    if (state !== this.current && this.rulesRecord) state.rules = this.rulesRecord.rulesAt(revision);
    return state;
  }

  /** The revision of the last event recorded at or before an instant (-1n: none). */
  async revisionAt(instant: Date): Promise<bigint> {
    await this.catchUp();
    return this.past.revisionAt(instant, this.durable);
  }

  /** Every durable event from now on, in order. */
  onEvent(listener: (event: LoggedEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /**
   * Decisions matching the filter: with `after`, first those the history holds after it, read
   * page by page as the client consumes them; then live ones, none missed or repeated. A client
   * that falls more than `capacity` decisions behind the live log gets SubscriberBehindError
   * naming where to resume. Closing it (return) ends it at once, even while it waits.
   */
  decisionStream(filter: DecisionFilter, capacity = 10_000): AsyncIterableIterator<Decision> {
    return new DecisionStream(this, filter, capacity);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.commands.drained();
    await this.follower.close();
    await this.checkpointing.close();
    this.history.close();
  }
}
