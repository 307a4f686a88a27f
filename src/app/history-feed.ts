/**
 * Feeding the history read model. At start-up the history may be behind the log (deleted, of
 * another log, or written less far than the checkpoint the live state starts from); the server
 * answers as soon as its live state is rebuilt, and the history catches up in the background,
 * in small steps (sized to take about 20 ms each) that yield to the event loop between them. Once it has reached the live
 * state, durable events are written to it as they come, in batches (one transaction each, soon
 * after they are taken in, and before any read of it).
 *
 * A read of the history never answers from less than the log the live state holds: while it
 * catches up, a read waits for it (bounded), then says how far it is (HistoryBehindError).
 */

import type { RunRecord } from '../../projections/state.js';
import type { LoggedEvent } from '../domain/events.js';
import { StoreUnavailableError } from '../eventstore/errors.js';
import type { EventStore, RecordedEvent } from '../eventstore/store.js';
import { type HistoryStore, openHistoryStore } from '../history/history-store.js';
import { eventHash, toLoggedEvent } from './recorded-events.js';
import { RunsBehindHistory } from './runs-behind-history.js';

/** Pending events written at once when this many pile up. */
const MAX_PENDING = 5_000;
/**
 * Events read and written per step of the catch-up: the size adapts so that a step takes about
 * STEP_MS, which keeps commands and /health from waiting long behind one, within these bounds.
 */
const CATCH_UP_BATCH = { first: 500, least: 250, most: 4_000 };
const STEP_MS = 20;
/** Pause before a catch-up step that failed (the history file busy or the store down) is tried again. */
const RETRY_MS = 500;

/** The history has not yet reached the position a read needs; the client may try again. */
export class HistoryBehindError extends StoreUnavailableError {
  readonly code = 'HISTORY_CATCHING_UP';
  constructor(
    /** The last log position written to the history. */
    readonly historyPosition: bigint,
    /** The log position the read needed. */
    readonly logPosition: bigint,
  ) {
    super(
      `the history read model is still catching up with the log after a start: it is at position ${historyPosition} of ${logPosition}`,
    );
  }
}

export interface HistoryStatus {
  /** The last log position written to the history; -1n: none. */
  position: bigint;
  /** True while the history is rebuilt in the background after a start. */
  catchingUp: boolean;
}

/**
 * A history file that does not exist yet, created when the history is first written or read:
 * on a first start that is after the server answers (creating an SQLite file syncs the disk).
 */
export interface HistoryToCreate {
  create: () => HistoryStore;
}

export class HistoryFeed {
  /** Durable events not yet written to the history; written in batches, and before any read. */
  private readonly pending: LoggedEvent[] = [];
  /** The last position written to the history. */
  private position: bigint;
  private scheduled = false;
  /** False while the history catches up from the log in the background; events taken in meanwhile are read from the log. */
  private live = false;
  private closed = false;
  /** Called (once each) when the history reaches the live state, or on every catch-up step. */
  private readonly waiters = new Set<() => void>();
  /** The log's first event, kept until the history is bound to it (a log that was empty at start). */
  private firstRecorded: RecordedEvent | null = null;
  /** While catching up: the runs enqueued after the history's position, so commands naming them need not wait. */
  private readonly behindRuns: RunsBehindHistory;

  /** The history read model; null until a history to create is first written or read. */
  private opened: HistoryStore | null;
  private readonly create: (() => HistoryStore) | null;

  constructor(
    private readonly store: EventStore,
    private readonly stream: string,
    history: HistoryStore | HistoryToCreate | undefined,
    private readonly warn: (message: string) => void,
    private readonly info: (message: string) => void,
  ) {
    // None given: one in memory, made when first written or read.
    const source = history ?? { create: () => openHistoryStore(':memory:') };
    const toCreate = 'create' in source && typeof source.create === 'function';
    this.opened = toCreate ? null : (source as HistoryStore);
    this.create = toCreate ? (source as HistoryToCreate).create : null;
    // A history not created yet holds nothing: it is written from the log's first event.
    this.position = this.opened ? this.opened.position() : -1n;
    this.behindRuns = new RunsBehindHistory(store, stream);
  }

  /** The history read model, created now if it was still to be. */
  private get history(): HistoryStore {
    this.opened ??= (this.create as () => HistoryStore)();
    return this.opened;
  }

  /**
   * The history file must be of this log: one that followed another log is emptied (and then
   * rebuilt from it). An empty log binds on its first event.
   */
  async bind(): Promise<void> {
    const [first] = await this.store.readStream(this.stream, { fromRevision: 0n, maxCount: 1 });
    if (!first) {
      // An empty log: the file is bound when its first event is written (flush), against that
      // event's hash. Not now: another server of this log may be writing it meanwhile, and what
      // the file holds is taken on trust only once it is known to be of this log.
      this.position = -1n;
      return;
    }
    if (!this.opened) {
      // Bound when the catch-up writes the log's first event to it, like an empty file.
      this.behindRuns.startAfter(0);
      return;
    }
    if (this.opened.bindTo(eventHash(first))) {
      this.warn('history read model was of another log: rebuilding it from this one');
    }
    this.position = this.opened.position();
    this.behindRuns.startAfter(this.opened.runCount());
  }

  /**
   * Brings the history up to the live state in the background, never past it (so what the
   * history holds and the events handed on from then agree), then writes events as they come.
   */
  catchUpInBackground(durable: () => bigint): void {
    if (this.position >= durable()) {
      this.goLive();
      return;
    }
    const from = this.position;
    const started = performance.now();
    this.info(`history read model catching up in the background from position ${from} to ${durable()}`);
    let size = CATCH_UP_BATCH.first;
    const step = async (): Promise<void> => {
      if (this.closed) return;
      try {
        const target = durable();
        if (this.position < target) {
          const began = performance.now();
          const batch = await this.store.readStream(this.stream, {
            fromRevision: this.position + 1n,
            maxCount: Math.min(size, Number(target - this.position)),
          });
          if (this.closed) return;
          const [first] = batch;
          if (first?.revision === 0n) this.history.bindTo(eventHash(first));
          this.history.apply(batch.map(toLoggedEvent));
          if (batch.length > 0) this.position = (batch.at(-1) as RecordedEvent).revision;
          const took = performance.now() - began;
          if (took < STEP_MS / 2) size = Math.min(size * 2, CATCH_UP_BATCH.most);
          else if (took > STEP_MS * 2) size = Math.max(Math.floor(size / 2), CATCH_UP_BATCH.least);
        }
        // In the same step as the check: no event is taken in between.
        if (this.position >= durable()) {
          this.info(
            `history read model caught up to position ${this.position} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
          );
          this.goLive();
          return;
        }
        this.wakeWaiters();
        setImmediate(() => void step());
      } catch (error) {
        if (this.closed) return;
        this.warn(`history read model not caught up yet, will retry: ${(error as Error).message}`);
        setTimeout(() => void step(), RETRY_MS).unref();
      }
    };
    setImmediate(() => void step());
  }

  private goLive(): void {
    this.live = true;
    this.behindRuns.clear();
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
  }

  status(): HistoryStatus {
    return { position: this.position, catchingUp: !this.live };
  }

  /** Takes a durable event for the history; written soon, in a batch. */
  record(event: LoggedEvent, recorded: RecordedEvent): void {
    if (recorded.revision === 0n) this.firstRecorded = recorded;
    // While catching up, the catch-up reads this event from the log; until it has, the runs it
    // enqueues are known here.
    if (!this.live) {
      if (event.revision > this.position) this.behindRuns.takenIn(event);
      return;
    }
    if (event.revision <= this.position) return;
    this.pending.push(event);
    if (this.pending.length >= MAX_PENDING) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.flush();
      } catch (error) {
        this.warn(`history not written yet, will retry: ${(error as Error).message}`);
      }
    });
  }

  /** Writes pending events to the history (one transaction); throws StoreUnavailableError when it cannot. */
  private flush(): void {
    if (this.pending.length === 0) return;
    const first = this.pending[0] as LoggedEvent;
    if (first.revision === 0n && this.firstRecorded) this.history.bindTo(eventHash(this.firstRecorded));
    this.history.apply(this.pending);
    this.position = (this.pending.at(-1) as LoggedEvent).revision;
    this.pending.length = 0;
  }

  /** The history with every event taken in so far written to it; null while it is still catching up. */
  readNow(): HistoryStore | null {
    if (!this.live) return null;
    this.flush();
    return this.history;
  }

  /**
   * A run of the past (one the live state does not hold) by id, at once: null when no run has
   * that id; undefined when its record needs the log read (pastRun) or the history waited for.
   */
  pastRunNow(runId: string): RunRecord | null | undefined {
    const history = this.readNow();
    if (history) return history.run(runId);
    const answer = this.behindRuns.lookUpNow(runId, this.history);
    if (answer === null) return undefined;
    if (!answer.known) return null;
    return answer.run ?? undefined;
  }

  /**
   * As pastRunNow, reading a finished run the history has not reached from the log (up to
   * `durable`); undefined only when the history must be waited for (see RunsBehindHistory).
   */
  async pastRun(runId: string, durable: bigint): Promise<RunRecord | null | undefined> {
    const now = this.pastRunNow(runId);
    if (now !== undefined || this.live) return now;
    const answer = await this.behindRuns.lookUp(runId, this.history);
    if (!answer.known) return null;
    if (answer.run) return answer.run;
    return (await this.behindRuns.readFromLog(runId, answer, durable)) ?? undefined;
  }

  /**
   * The history once it holds the log up to `position`: at once when it does, else after
   * waiting for the catch-up, at most `waitMs` (Infinity: until it has caught up, or the server
   * closes); then HistoryBehindError.
   */
  async readAt(position: bigint, waitMs: number): Promise<HistoryStore> {
    const deadline = performance.now() + waitMs;
    for (;;) {
      const history = this.readNow();
      if (history) return history;
      if (this.position >= position) return this.history;
      const left = deadline - performance.now();
      if (left <= 0 || this.closed) throw new HistoryBehindError(this.position, position);
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(left) ? setTimeout(resolve, left) : undefined;
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Calls back once the history has reached the live state (at once if it has), in the same step. */
  whenLive(callback: () => void): void {
    if (this.live) {
      callback();
      return;
    }
    const waiter = () => (this.live ? callback() : this.waiters.add(waiter));
    this.waiters.add(waiter);
  }

  close(): void {
    this.closed = true;
    this.wakeWaiters();
    if (this.live) {
      try {
        this.flush();
      } catch (error) {
        this.warn(`history not written at shutdown (it is rebuilt from the log): ${(error as Error).message}`);
      }
    }
    this.opened?.close();
  }
}
