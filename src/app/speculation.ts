/**
 * Speculation: a group of commands is folded into the live state ahead of its append, so each
 * command of the group sees the events of those before it. Until the append is made (or the
 * state restored after it failed) the live state holds events that may never be recorded, so
 * reads wait for it to end, and events of other servers that arrive meanwhile are not folded in
 * (the append must then lose its race, and the state is rebuilt from the log).
 */
export class Speculation {
  /** True while a group's events are folded in ahead of their append. */
  active = false;
  /** True while the live state is being rebuilt after a failed append. */
  restoring = false;
  /** Settles when the current speculation ends (its append made, or the state restored). */
  private ended: Promise<void> = Promise.resolve();
  private settle: () => void = () => {};

  start(): void {
    this.active = true;
    this.ended = new Promise((done) => (this.settle = done));
  }

  /** The group's events became durable (or there were none): the live state is the log's. */
  end(): void {
    if (!this.active) return;
    this.active = false;
    this.settle();
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
