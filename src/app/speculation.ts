import type { RecordedEvent } from '../eventstore/store.js';

/**
 * Speculation: a group of commands is folded into the live state ahead of its append, so each
 * command of the group sees the events of those before it. Until the append is made (or the
 * state restored after it failed) the live state holds events that may never be recorded, so
 * reads wait for it to end.
 *
 * Stored events that arrive meanwhile are held back and taken in once it ends, in order. Which
 * of them are the group's own is known only then: the append may have won, and the follower
 * read its events back together with another server's appended right after them; or it lost,
 * and they are all another server's. Folded in now, they would land on a state that is not the
 * log's; taken as "already folded", another server's would be lost for good.
 */
export class Speculation {
  /** True while a group's events are folded in ahead of their append. */
  active = false;
  /** True while the live state is being rebuilt after a failed append. */
  restoring = false;
  /** Settles when the current speculation ends (its append made, or the state restored). */
  private ended: Promise<void> = Promise.resolve();
  private settle: () => void = () => {};
  private held: RecordedEvent[] = [];

  /** @param takeIn takes one held-back event in once the speculation has ended. */
  constructor(private readonly takeIn: (recorded: RecordedEvent) => void) {}

  start(): void {
    this.active = true;
    this.ended = new Promise((done) => (this.settle = done));
  }

  /** Keeps a stored event that arrived during the speculation until it ends. */
  holdBack(recorded: RecordedEvent): void {
    this.held.push(recorded);
  }

  /**
   * The group's events became durable (or there were none), or the live state was rebuilt as
   * the log has it: the events held back meanwhile are taken in, those already taken dropped
   * by the taker (several readers may have delivered the same ones).
   */
  end(): void {
    if (!this.active) return;
    this.active = false;
    const held = this.held;
    this.held = [];
    try {
      for (const recorded of held) this.takeIn(recorded);
    } finally {
      this.settle();
    }
  }

  /** Ends a speculation that did not become durable, after rebuilding the live state as the log has it. */
  async abandon(rebuild: () => Promise<void>): Promise<void> {
    try {
      this.restoring = true;
      try {
        await rebuild();
      } finally {
        this.restoring = false;
      }
    } finally {
      this.end();
    }
  }

  /** Resolves once no speculation is under way. */
  async settled(): Promise<void> {
    while (this.active) await this.ended;
  }
}
