import { StoreUnavailableError } from './errors.js';
import type { EventHandler, RecordedEvent, Subscription } from './store.js';

/** Handed-over events a subscription keeps waiting for delivery at most (see handOver). */
const HANDED_MOST = 10_000;

/**
 * A subscription that delivers by one loop: "read every event after the last delivered one,
 * again until none is left". Catch-up and live delivery are the same loop, so the seam can
 * neither skip nor repeat an event, and handler calls never overlap. Stores wake it when
 * something may have been appended (a commit here, a notification, a poll); a wake only ever
 * causes a read, so a lost or spurious wake costs nothing but time. `caughtUp` rejects when the
 * subscription ends first: with the failure, or because it was closed.
 *
 * A store that has just committed events through this process hands them over (`handOver`)
 * instead of having them read back: they are delivered only when they are exactly the next
 * ones, so a gap (another writer's events in between) still falls back to a read.
 */
export class ReadingSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private resolveCaughtUp!: () => void;
  private rejectCaughtUp!: (error: Error) => void;
  private isCaughtUp = false;
  private running = false;
  /** A wake came while the loop was reading: read once more before stopping. */
  private wokenWhileRunning = false;
  private closed = false;
  /** Events this process appended, handed over after their commit and not yet delivered, in order. */
  private handed: RecordedEvent[] = [];

  constructor(
    readonly stream: string,
    private lastDelivered: bigint,
    /**
     * The stream's last revision at subscribe time, when the store knows it without waiting:
     * delivering it means caught up. Null: caught up once a read comes back short.
     */
    private readonly head: bigint | null,
    /** Reads at most `pageSize` events from a revision on. */
    private readonly readFrom: (revision: bigint) => RecordedEvent[] | Promise<RecordedEvent[]>,
    private readonly pageSize: number,
    private readonly onEvent: EventHandler,
    private readonly onError: ((error: Error) => void) | undefined,
    private readonly onClose: () => void,
  ) {
    this.caughtUp = new Promise<void>((resolve, reject) => {
      this.resolveCaughtUp = resolve;
      this.rejectCaughtUp = reject;
    });
    // Nobody has to await caughtUp; an unobserved rejection must not crash the process.
    this.caughtUp.catch(() => undefined);
    if (this.head !== null) this.checkCaughtUp();
  }

  wake(): void {
    if (this.closed) return;
    if (this.running) {
      this.wokenWhileRunning = true;
      return;
    }
    this.running = true;
    void this.deliver();
  }

  /**
   * Events just committed by this process, as a read would return them: delivered without a
   * read when they follow the last delivered event. Past HANDED_MOST waiting, they are dropped
   * and read instead, so a slow handler does not hold an unbounded copy of the log.
   */
  handOver(events: readonly RecordedEvent[]): void {
    if (this.closed || events.length === 0) return;
    const last = this.handed.at(-1);
    const first = events[0] as RecordedEvent;
    if (last !== undefined && first.revision !== last.revision + 1n) this.handed = [];
    if (this.handed.length + events.length <= HANDED_MOST) this.handed.push(...events);
    else this.handed = [];
    // A running loop takes them before it stops; only a read needs a wake to be sure of.
    if (!this.running) this.wake();
  }

  /** The handed-over events that come next, or null when what comes next must be read. */
  private takeHanded(): RecordedEvent[] | null {
    const next = this.lastDelivered + 1n;
    let from = 0;
    while (from < this.handed.length && (this.handed[from] as RecordedEvent).revision < next) from++;
    const handed = from === 0 ? this.handed : this.handed.slice(from);
    this.handed = [];
    return handed.length > 0 && (handed[0] as RecordedEvent).revision === next ? handed : null;
  }

  async close(): Promise<void> {
    this.stop(new StoreUnavailableError('subscription closed before catching up'));
  }

  /** Ends the subscription with a failure the store saw, as a failed read would. */
  fail(error: Error): void {
    if (this.closed) return;
    this.stop(error);
    this.onError?.(error);
  }

  private async deliver(): Promise<void> {
    // Start on a later tick: never call the handler from inside subscribe() or append().
    await Promise.resolve();
    try {
      while (!this.closed) {
        const handed = this.takeHanded();
        // A read sees every commit made before it: wakes until now are answered by it.
        if (handed === null) this.wokenWhileRunning = false;
        const batch = handed ?? (await this.readFrom(this.lastDelivered + 1n));
        if (this.closed) return;
        for (const event of batch) {
          if (this.closed) return;
          await this.onEvent(event);
          this.lastDelivered = event.revision;
          this.checkCaughtUp();
        }
        const more = this.wokenWhileRunning || this.handed.length > 0;
        if (handed !== null) {
          // A read is due only when woken (another writer may have committed).
          if (!more) break;
        } else if (batch.length < this.pageSize) {
          if (this.head === null) this.markCaughtUp();
          // An append that committed after this read woke us or was handed over meanwhile.
          if (!more) break;
        }
      }
    } catch (error) {
      if (this.closed) return;
      this.fail(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.running = false;
    }
  }

  private checkCaughtUp(): void {
    if (this.head !== null && this.lastDelivered >= this.head) this.markCaughtUp();
  }

  private markCaughtUp(): void {
    if (this.isCaughtUp) return;
    this.isCaughtUp = true;
    this.resolveCaughtUp();
  }

  /** Ends delivery; a handler call in flight finishes, but no other one starts. */
  private stop(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.isCaughtUp) this.rejectCaughtUp(reason);
    this.onClose();
  }
}
