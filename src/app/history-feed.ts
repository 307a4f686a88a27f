/**
 * Feeding the history read model: durable events are written to it in batches (one transaction
 * each, soon after they are taken in, and before any read of it), it is bound to this log, and
 * rebuilt from the log when missing or behind.
 */
import type { LoggedEvent } from '../domain/events.js';
import type { EventStore, RecordedEvent } from '../eventstore/store.js';
import type { HistoryStore } from '../history/history-store.js';
import { eventHash, toLoggedEvent } from './recorded-events.js';

/** Pending events written at once when this many pile up. */
const MAX_PENDING = 5_000;

export class HistoryFeed {
  /** Durable events not yet written to the history; written in batches, and before any read. */
  private readonly pending: LoggedEvent[] = [];
  /** The last position written to the history. */
  private position: bigint;
  private scheduled = false;
  /** While replaying at start-up, writes wait for a full batch (or the end of the replay). */
  replaying = true;
  /** The log's first event, kept until the history is bound to it (a log that was empty at start). */
  private firstRecorded: RecordedEvent | null = null;

  constructor(
    private readonly store: EventStore,
    private readonly stream: string,
    private readonly history: HistoryStore,
    private readonly warn: (message: string) => void,
  ) {
    this.position = history.position();
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
    if (this.history.bindTo(eventHash(first))) {
      this.warn('history read model was of another log: rebuilding it from this one');
    }
    this.position = this.history.position();
  }

  /** Feeds the history the log up to a revision it has not seen (missing or behind). */
  async rebuildTo(revision: bigint): Promise<void> {
    while (this.position < revision) {
      const batch = await this.store.readStream(this.stream, {
        fromRevision: this.position + 1n,
        maxCount: Math.min(5_000, Number(revision - this.position)),
      });
      if (batch.length === 0) return;
      this.history.apply(batch.map(toLoggedEvent));
      this.position = (batch.at(-1) as RecordedEvent).revision;
    }
  }

  /** Takes a durable event for the history; written soon, in a batch. */
  record(event: LoggedEvent, recorded: RecordedEvent): void {
    if (recorded.revision === 0n) this.firstRecorded = recorded;
    if (event.revision <= this.position) return;
    this.pending.push(event);
    if (this.pending.length >= MAX_PENDING) {
      this.flush();
      return;
    }
    if (this.scheduled || this.replaying) return;
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
  flush(): void {
    if (this.pending.length === 0) return;
    const first = this.pending[0] as LoggedEvent;
    if (first.revision === 0n && this.firstRecorded) this.history.bindTo(eventHash(this.firstRecorded));
    this.history.apply(this.pending);
    this.position = (this.pending.at(-1) as LoggedEvent).revision;
    this.pending.length = 0;
  }

  /** The history read model with every event taken in so far written to it. */
  read(): HistoryStore {
    this.flush();
    return this.history;
  }

  close(): void {
    try {
      this.flush();
    } catch (error) {
      this.warn(`history not written at shutdown (it is rebuilt from the log): ${(error as Error).message}`);
    }
    this.history.close();
  }
}
