/**
 * Subscriptions to an EventStoreDB stream that survive dropped connections (see EsdbSubscription).
 */
import { type ResolvedEvent, START, type StreamSubscription } from '@eventstore/db-client';
import { StoreUnavailableError } from './errors.js';
import { type EsdbClient, fromResolvedEvent, isTransientError, toStoreError } from './esdb-translation.js';
import type { EventHandler, Subscription } from './store.js';

/** How a dropped subscription is resumed: exponential backoff, a bounded number of tries. */
export interface ResubscribeOptions {
  /** Consecutive failed attempts before giving up and calling onError; default 8. */
  attempts?: number;
  /** Delay before the first retry, doubled for each further one; default 100 ms. */
  baseDelayMs?: number;
  /** Longest delay between two retries; default 5000 ms. */
  maxDelayMs?: number;
}

/** A subscription that stayed up this long counts as healthy again when it drops. */
const STABLE_CONNECTION_MS = 10_000;

export interface EsdbSubscriptionSetup {
  client: EsdbClient;
  stream: string;
  /** Deliver events after this revision; -1n for the whole stream. */
  after: bigint;
  onEvent: EventHandler;
  onError: ((error: Error) => void) | undefined;
  retry: ResubscribeOptions;
  lastRevision: () => Promise<bigint>;
  forget: () => void;
}

type Outcome = 'stopped' | 'dropped';

/**
 * One catch-up subscription, kept alive across dropped connections.
 *
 * Delivery: `for await` over the client's subscription, awaiting the handler for each event, so
 * handler calls never overlap and come in revision order. The last delivered revision is the
 * resume point: after a drop, it resubscribes from there. A subscription's `fromRevision` is
 * exclusive (the server sends the events after it; START sends from revision 0), so resuming
 * from the last delivered revision leaves no gap and repeats nothing; events of the old
 * connection that were buffered but not delivered are dropped with it and come again.
 *
 * caughtUp: the server's caught-up message (23.10 and later) marks the point in the stream of
 * responses where catch-up ended; every event received before it is then delivered first. The
 * fallback for older servers: the stream's last revision, read when subscribing; caught up once
 * that revision was delivered (at once for an empty stream). Whichever comes first.
 */
export class EsdbSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private resolveCaughtUp!: () => void;
  private rejectCaughtUp!: (error: Error) => void;
  private isCaughtUp = false;
  private closed = false;
  private lastDelivered: bigint;
  /** The stream's last revision when subscribing, once read (fallback for caughtUp). */
  private head: bigint | undefined;
  private readingHead = false;
  private failures = 0;
  private lastFailure: unknown;
  private current: StreamSubscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly setup: EsdbSubscriptionSetup) {
    this.lastDelivered = setup.after;
    this.caughtUp = new Promise<void>((resolve, reject) => {
      this.resolveCaughtUp = resolve;
      this.rejectCaughtUp = reject;
    });
    // Nobody has to await caughtUp; an unobserved rejection must not crash the process.
    this.caughtUp.catch(() => undefined);
    void this.run();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.stop(new StoreUnavailableError('subscription closed before catching up'));
    const current = this.current;
    if (current !== undefined) {
      await current.unsubscribe().catch(() => undefined);
      current.destroy();
    }
  }

  private async run(): Promise<void> {
    // Start on a later tick: never call the handler from inside subscribe().
    await Promise.resolve();
    const attempts = this.setup.retry.attempts ?? 8;
    while (!this.closed) {
      if (this.head === undefined) void this.readHead();
      const connectedAt = Date.now();
      const outcome = await this.follow();
      if (outcome === 'stopped' || this.closed) return;
      if (Date.now() - connectedAt >= STABLE_CONNECTION_MS) this.failures = 0;
      this.failures += 1;
      if (this.failures > attempts) {
        const detail = this.lastFailure instanceof Error ? `: ${this.lastFailure.message}` : '';
        this.fail(
          new StoreUnavailableError(
            `subscription to stream ${this.setup.stream} was dropped and could not be resumed after ${attempts} attempt(s)${detail}`,
            this.lastFailure,
          ),
        );
        return;
      }
      await this.pause(this.retryDelay());
    }
  }

  /** One connection: delivers until it drops ('dropped') or the subscription ends ('stopped'). */
  private async follow(): Promise<Outcome> {
    const { client, stream } = this.setup;
    let subscription: StreamSubscription;
    try {
      subscription = client.subscribeToStream(stream, {
        fromRevision: this.lastDelivered < 0n ? START : this.lastDelivered,
      });
    } catch (error) {
      return this.dropped(error);
    }
    this.current = subscription;
    /** Responses taken from this connection's buffer, and whether the handler is running. */
    let taken = 0;
    let handling = false;
    /** How many taken responses mean "caught up", once the server said so. */
    let caughtUpAt: number | undefined;
    const serverCaughtUp = () => {
      if (caughtUpAt !== undefined && !handling && taken >= caughtUpAt) this.markCaughtUp();
    };
    subscription.on('caughtUp', () => {
      // Everything received before this message is either taken or still buffered.
      caughtUpAt = taken + subscription.readableLength;
      serverCaughtUp();
    });
    // The client emits errors without destroying the stream; destroying makes `for await` throw
    // even when the error comes before iteration starts, and an error listener is always there.
    subscription.on('error', (error: Error) => {
      if (!subscription.destroyed) subscription.destroy(error);
    });
    try {
      for await (const resolved of subscription as AsyncIterable<ResolvedEvent>) {
        taken += 1;
        if (this.closed) return 'stopped';
        const event = fromResolvedEvent(resolved);
        if (event !== undefined && event.revision > this.lastDelivered) {
          handling = true;
          try {
            await this.setup.onEvent(event);
          } catch (error) {
            this.fail(error instanceof Error ? error : new Error(String(error)));
            return 'stopped';
          } finally {
            handling = false;
          }
          this.lastDelivered = event.revision;
          this.failures = 0;
          this.checkHead();
          if (this.closed) return 'stopped';
        }
        serverCaughtUp();
      }
      if (this.closed) return 'stopped';
      // The server ended the subscription without an error: resume it.
      this.lastFailure = new Error('the server ended the subscription');
      return 'dropped';
    } catch (error) {
      if (this.closed) return 'stopped';
      return this.dropped(error);
    } finally {
      if (this.current === subscription) this.current = undefined;
      // Cancels the gRPC call: leaving the loop alone only stops reading from it.
      subscription.unsubscribe().catch(() => undefined);
    }
  }

  /** A transport failure is retried; anything else ends the subscription through onError. */
  private dropped(error: unknown): Outcome {
    if (isTransientError(error)) {
      this.lastFailure = error;
      return 'dropped';
    }
    const failure = toStoreError(error, `subscription to stream ${this.setup.stream} ended`);
    this.fail(failure instanceof Error ? failure : new Error(String(failure)));
    return 'stopped';
  }

  private async readHead(): Promise<void> {
    if (this.readingHead || this.head !== undefined || this.closed) return;
    this.readingHead = true;
    try {
      this.head = await this.setup.lastRevision();
      this.checkHead();
    } catch {
      // The server's caught-up message may still come; the next connection reads again.
    } finally {
      this.readingHead = false;
    }
  }

  private checkHead(): void {
    if (this.head !== undefined && this.lastDelivered >= this.head) this.markCaughtUp();
  }

  private markCaughtUp(): void {
    if (this.isCaughtUp || this.closed) return;
    this.isCaughtUp = true;
    this.resolveCaughtUp();
  }

  private retryDelay(): number {
    const base = this.setup.retry.baseDelayMs ?? 100;
    const max = this.setup.retry.maxDelayMs ?? 5000;
    return Math.min(max, base * 2 ** Math.max(0, this.failures - 1));
  }

  /** Waits before the next attempt; unref'd, and cut short by close(). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref();
    });
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.stop(error);
    this.setup.onError?.(error);
  }

  /** Ends delivery; a handler call in flight finishes, but no other one starts. */
  private stop(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.isCaughtUp) this.rejectCaughtUp(reason);
    clearTimeout(this.timer);
    this.wake?.();
    this.setup.forget();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
