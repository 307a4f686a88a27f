/** What a Sluice is opened with: its store, clocks, checkpoints, history and reporting. */
import type { CheckpointStore } from '../eventstore/checkpoints.js';
import type { EventStore } from '../eventstore/store.js';
import type { HistoryStore } from '../history/history-store.js';
import type { CommandRecord } from './command-path.js';
import type { HistoryToCreate } from './history-feed.js';

export interface SluiceOptions {
  store: EventStore;
  /** The stream holding every event that affects admission. */
  stream?: string;
  /** Injected so tests can drive time. */
  clock?: () => Date;
  /**
   * A clock no step moves, in milliseconds (default performance.now when `clock` is not given;
   * none for an injected `clock` unless given too): event time runs on by it after the wall
   * clock steps back (see EventClock).
   */
  monotonic?: () => number;
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
  /** From a checkpoint this long on, a worker thread writes them (see Checkpointing); default 1 MiB. */
  checkpointWorkerFromBytes?: number;
  /** Where to report trouble that does not stop the server (a checkpoint that failed, the log lost). */
  warn?: (message: string) => void;
  /** Where to report news an operator wants (following the log again after losing it). */
  info?: (message: string) => void;
  /** Called once per execute(), whatever its outcome: feeds command metrics and logs. */
  onCommand?: (record: CommandRecord) => void;
  /** The history read model (finished runs, decisions, waits), or one to create; default: in memory. */
  history?: HistoryStore | HistoryToCreate;
  /** How many checkpoints to keep; older ones are deleted. Default 3. */
  checkpointsKept?: number;
  /**
   * How long a read of the history waits for it to catch up after a start before it answers
   * HistoryBehindError (saying how far it is). Default 5000 ms.
   */
  historyWaitMs?: number;
}
