/**
 * Group commit: commands that arrive while an append is in flight (or in the same turn of the
 * event loop) wait here and are handed on together, at most MAX_GROUP at a time, to be decided
 * one after another and appended in one transaction (see command-path.ts).
 */
import type { Command } from '../domain/commands.js';
import { StoreUnavailableError } from '../eventstore/errors.js';
import type { CommandOutcome } from './command-path.js';

export interface GroupMember {
  command: Command;
  actor: string;
  resolve: (outcome: CommandOutcome) => void;
  reject: (error: unknown) => void;
}

/** Most commands decided and appended together in one transaction. */
const MAX_GROUP = 256;

export class GroupCommit {
  private readonly waiting: GroupMember[] = [];
  private flushing = false;
  private flushScheduled = false;
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => {};

  /**
   * @param commit decides and appends one group, answering each member; a throw rejects them all.
   * @param closed true once the server is shutting down: new commands are refused.
   */
  constructor(
    private readonly commit: (group: GroupMember[]) => Promise<void>,
    private readonly closed: () => boolean,
  ) {}

  /** Puts a command in the next group to decide and append. */
  enqueue(command: Command, actor: string): Promise<CommandOutcome> {
    return new Promise<CommandOutcome>((resolve, reject) => {
      if (this.closed()) {
        reject(new StoreUnavailableError('the server is shutting down'));
        return;
      }
      if (this.waiting.length === 0 && !this.flushing) this.idle = new Promise((done) => (this.markIdle = done));
      this.waiting.push({ command, actor, resolve, reject });
      this.scheduleFlush();
    });
  }

  /** Resolves once every command taken so far has been answered. */
  drained(): Promise<void> {
    return this.idle.catch(() => undefined);
  }

  private scheduleFlush(): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    const group = this.waiting.splice(0, MAX_GROUP);
    try {
      await this.commit(group);
    } catch (error) {
      for (const member of group) member.reject(error);
    } finally {
      this.flushing = false;
      if (this.waiting.length > 0) this.scheduleFlush();
      else this.markIdle();
    }
  }
}
