/**
 * Checkpoints of the live state: when one is due, writing it, and finding the latest one that
 * still matches the log (to start from, or to rebuild a past state from). The state is only the
 * live one, so writing it costs what is queued and in progress, not the history.
 */
import { evolve } from '../../projections/evolve.js';
import { deserializeState, STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import type { State } from '../../projections/state.js';
import type { LoggedEvent } from '../domain/events.js';
import type { Checkpoint, CheckpointInfo, CheckpointStore } from '../eventstore/checkpoints.js';
import type { EventStore, RecordedEvent } from '../eventstore/store.js';
import { CheckpointWriter } from './checkpoint-writer.js';
import { eventHash, toLoggedEvent } from './recorded-events.js';

export interface CheckpointingOptions {
  store: EventStore;
  stream: string;
  checkpoints: CheckpointStore | null;
  /** The least number of events between checkpoints (the spacing grows with the log). */
  every: number;
  /** How many checkpoints to keep; older ones are deleted. */
  kept: number;
  warn: (message: string) => void;
  /**
   * The live state and the last event folded into it, when that state is all durable (never one
   * with a group's events folded in ahead of its append); null: no checkpoint may be taken now.
   */
  durableState: () => { state: State; recorded: RecordedEvent } | null;
  /**
   * From a checkpoint this long (characters of its text) on, the next ones are written by a
   * worker thread (see CheckpointWriter); default 1 MiB, which takes about 30 ms to serialize.
   */
  workerFromBytes?: number;
}

const WORKER_FROM_BYTES = 1024 * 1024;

export class Checkpointing {
  /** Revision of the newest checkpoint that matches the log; -1n: none. */
  private last = -1n;
  /** Where the next checkpoint falls due (`last` plus the spacing), kept so no event computes it. */
  private nextDue = 0n;
  private scheduled = false;
  /** The log's last position when the start-up replay began; null: not replaying. */
  private replayHead: bigint | null = null;
  /**
   * Checkpoints taken during the start-up replay, saved once it is over: the state is captured
   * as each falls due, and the file is written (and created) off the path to answering.
   */
  private taken: Checkpoint[] = [];
  /** The worker thread writing checkpoints once the state is large; null: written here. */
  private writer: CheckpointWriter | null = null;

  constructor(private readonly options: CheckpointingOptions) {
    this.lastCheckpoint = -1n;
  }

  get lastCheckpoint(): bigint {
    return this.last;
  }

  set lastCheckpoint(revision: bigint) {
    this.last = revision;
    this.nextDue = revision + this.spacing(revision);
  }

  /** Events between checkpoints after one at `last`: at least `every`, else a quarter of the log. */
  private spacing(last = this.last): bigint {
    const every = BigInt(this.options.every);
    const quarter = (last + 1n) / 4n;
    return quarter > every ? quarter : every;
  }

  /**
   * The start-up replay is to reach `head`: of the checkpoints due on the way, only those that
   * will be kept are taken (the others would be deleted at once), at the same positions. With
   * null the replay is over, and the checkpoints it took are saved on a later turn of the event
   * loop, after the server answers.
   */
  replayTo(head: bigint | null): void {
    this.replayHead = head;
    if (head === null && this.taken.length > 0) setImmediate(() => this.saveTaken());
  }

  /** True when `kept` more checkpoints fall due after one at `at` before the replay's end. */
  private prunedBeforeReplayEnds(at: bigint): boolean {
    if (this.replayHead === null) return false;
    let due = 0;
    for (let next = at + this.spacing(at); next <= this.replayHead; next += this.spacing(next)) {
      if (++due >= this.options.kept) return true;
    }
    return false;
  }

  /**
   * Takes a checkpoint when one is due. While replaying at start-up the state is captured at
   * once and saved when the replay is over; while serving, it is written after the current
   * command has answered.
   */
  maybeCheckpoint(durable: bigint, replaying: boolean): void {
    if (durable < this.nextDue || !this.options.checkpoints || this.scheduled) return;
    if (replaying) {
      if (this.prunedBeforeReplayEnds(durable)) this.lastCheckpoint = durable;
      else this.take();
      return;
    }
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.write(true);
    });
  }

  /** A durable event taken in while serving: the worker's copy of the state takes it too. */
  took(event: LoggedEvent): void {
    this.writer?.take(event);
  }

  /** Captures the durable live state as a checkpoint, to be saved when the replay is over. */
  private take(): void {
    const live = this.options.durableState();
    if (!live || live.recorded.revision !== live.state.revision) return;
    this.taken.push({
      revision: live.recorded.revision,
      eventHash: eventHash(live.recorded),
      format: STATE_FORMAT,
      state: serializeState(live.state),
    });
    this.lastCheckpoint = live.recorded.revision;
  }

  /** Saves the checkpoints the start-up replay took, oldest first. */
  private saveTaken(): void {
    const { checkpoints, kept, warn } = this.options;
    const taken = this.taken;
    this.taken = [];
    for (const checkpoint of taken) {
      try {
        checkpoints?.save(checkpoint);
        checkpoints?.keepLatest(kept);
      } catch (error) {
        warn(`checkpoint at position ${checkpoint.revision} not written: ${(error as Error).message}`);
      }
    }
  }

  private write(serving = false): void {
    const { checkpoints, kept, warn } = this.options;
    const live = this.options.durableState();
    if (!checkpoints || !live || live.recorded.revision !== live.state.revision) return;
    const { recorded, state } = live;
    if (this.writer?.working) {
      this.writer.write(recorded.revision, eventHash(recorded));
      this.lastCheckpoint = recorded.revision;
      return;
    }
    // A worker that died is not started again: one that keeps dying would cost more than it saves.
    const mayStartWorker = serving && this.writer === null;
    let text: string | null = null;
    try {
      text = serializeState(state);
      checkpoints.save({
        revision: recorded.revision,
        eventHash: eventHash(recorded),
        format: STATE_FORMAT,
        state: text,
      });
      checkpoints.keepLatest(kept);
    } catch (error) {
      warn(`checkpoint at position ${recorded.revision} not written: ${(error as Error).message}`);
    }
    // After a failure too: the next attempt is due a spacing later, not on every event.
    this.lastCheckpoint = recorded.revision;
    // In the same step as the serialization: every event taken in from now on is after it.
    if (
      mayStartWorker &&
      checkpoints.path &&
      text !== null &&
      text.length >= (this.options.workerFromBytes ?? WORKER_FROM_BYTES)
    ) {
      this.writer = CheckpointWriter.start(checkpoints.path, kept, text, warn);
    }
  }

  /** True while a worker thread writes the checkpoints. */
  get writesInWorker(): boolean {
    return this.writer?.working ?? false;
  }

  /** Resolves once every checkpoint asked of the worker is written (or has failed). */
  settled(): Promise<void> {
    return this.writer?.settled() ?? Promise.resolve();
  }

  /** Saves the checkpoints the start-up replay took if they still wait; lets the worker finish its last one, then stops it. */
  async close(): Promise<void> {
    this.saveTaken();
    await this.writer?.close();
  }

  /** For tests: the worker writing checkpoints stops as if it had crashed; false: there is none. */
  async crashWriterForTest(): Promise<boolean> {
    if (!this.writer?.working) return false;
    await this.writer.crashForTest();
    return true;
  }

  /**
   * The latest checkpoint at or before a revision that still matches the log, as a state.
   * A checkpoint whose event is gone or changed, or from another format, is deleted.
   */
  async latestValid(revision: bigint): Promise<State | null> {
    const { checkpoints, store, stream, warn } = this.options;
    if (!checkpoints) return null;
    // Walk down from the newest: a stale checkpoint that cannot be deleted is passed over.
    for (let upTo = revision; upTo >= 0n; ) {
      let candidates: CheckpointInfo[];
      try {
        candidates = checkpoints.atOrBefore(upTo, 3);
      } catch (error) {
        warn((error as Error).message);
        return null;
      }
      if (candidates.length === 0) return null;
      upTo = (candidates.at(-1) as CheckpointInfo).revision - 1n;
      for (const candidate of candidates) {
        const [event] = await store.readStream(stream, { fromRevision: candidate.revision, maxCount: 1 });
        if (
          candidate.format === STATE_FORMAT &&
          event?.revision === candidate.revision &&
          eventHash(event) === candidate.eventHash
        ) {
          try {
            const text = checkpoints.load(candidate.revision);
            if (text !== null) return deserializeState(text);
          } catch (error) {
            warn(`checkpoint at position ${candidate.revision} unreadable: ${(error as Error).message}`);
          }
        } else {
          warn(`checkpoint at position ${candidate.revision} does not match the log: ignored`);
        }
        try {
          checkpoints.delete(candidate.revision);
        } catch {
          // A stale checkpoint that cannot be deleted is still ignored next time.
        }
      }
    }
    return null;
  }

  /** Folds the log into a state until it reaches a revision (or the log's end). */
  async foldUpTo(state: State, revision: bigint): Promise<State> {
    const { store, stream } = this.options;
    while (state.revision < revision) {
      const batch = await store.readStream(stream, {
        fromRevision: state.revision + 1n,
        maxCount: Math.min(5_000, Number(revision - state.revision)),
      });
      if (batch.length === 0) break;
      for (const recorded of batch) evolve(state, toLoggedEvent(recorded));
    }
    return state;
  }
}
