/**
 * Following the log live, so that events appended by other servers on the same store are taken
 * in as they come. A follower that fails is replaced after a short pause (reads and commands
 * still catch up on their own meanwhile), and the server is not ready until one has caught up.
 */
import type { EventStore, RecordedEvent, Subscription } from '../eventstore/store.js';

export interface LogFollowerOptions {
  store: EventStore;
  stream: string;
  /** The revision of the last event taken in: following starts after it. */
  position: () => bigint;
  /** Takes one stored event in. */
  apply: (recorded: RecordedEvent) => void;
  /** True once the server is shutting down: no retries, no warnings. */
  closed: () => boolean;
  warn: (message: string) => void;
  info: (message: string) => void;
}

export class LogFollower {
  private follower: Subscription | null = null;
  private followerError: Error | null = null;
  private caughtUp = false;
  /** Set when following failed, until a new follower has caught up: then it is news. */
  private lostTheLog = false;

  constructor(private readonly options: LogFollowerOptions) {}

  /** Starts following and resolves once the follower has caught up with the log. */
  async start(): Promise<void> {
    this.follow();
    await this.follower?.caughtUp;
    this.caughtUp = true;
  }

  /** Null while following and caught up; otherwise why not, in words for an operator. */
  notReadyBecause(): string | null {
    if (this.followerError !== null) return `not following the log: ${this.followerError.message}`;
    if (!this.caughtUp || this.follower === null) return 'catching up with the log';
    return null;
  }

  private follow(): void {
    const { store, stream, closed, warn, info } = this.options;
    const follower = store.subscribe(
      stream,
      { afterRevision: this.options.position() },
      (recorded) => this.options.apply(recorded),
      (error) => {
        this.followerError = error;
        this.follower = null;
        if (!closed()) warn(`not following the log: ${error.message}; trying again in 0.5 s`);
        // Reads and commands still catch up on their own; try to follow again shortly.
        setTimeout(() => {
          if (this.follower === null && !closed()) {
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
          if (this.follower !== follower || closed()) return;
          this.lostTheLog = false;
          info(`following the log again from position ${this.options.position()}`);
        },
        () => {},
      );
    }
  }

  async close(): Promise<void> {
    await this.follower?.close();
    this.follower = null;
  }
}
