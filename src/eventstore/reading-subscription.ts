import { StoreUnavailableError } from './errors.js';
import type { EventHandler, RecordedEvent, Subscription } from './store.js';

/**
 * A subscription that delivers by one loop: "read every event after the last delivered one,
 * again until none is left". Catch-up and live delivery are the same loop, so the seam can
 * neither skip nor repeat an event, and handler calls never overlap. Stores wake it when
 * something may have been appended (a commit here, a notification, a poll); a wake only ever
 * causes a read, so a lost or spurious wake costs nothing but time. `caughtUp` rejects when the
 * subscription ends first: with the failure, or because it was closed.
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
        this.wokenWhileRunning = false;
        const batch = await this.readFrom(this.lastDelivered + 1n);
        if (this.closed) return;
        for (const event of batch) {
          if (this.closed) return;
          await this.onEvent(event);
          this.lastDelivered = event.revision;
          this.checkCaughtUp();
        }
        if (batch.length < this.pageSize) {
          if (this.head === null) this.markCaughtUp();
          // An append that committed after this read woke us meanwhile: read again.
          if (!this.wokenWhileRunning) break;
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
