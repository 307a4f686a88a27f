/**
 * Everything that can happen to a waiting wrapper (a status change, a decision, a signal, the
 * wait timeout, a refused subscription) arrives in one inbox and is handled in order, one at a
 * time, so the waiting logic reads as a loop and never races with itself.
 */
import type { RunDecision, StatusChange } from './run-watch.js';
import type { Refused } from './wrap-api.js';
import { FORWARDED_SIGNALS } from './wrap-command.js';

export type WaitEvent =
  | { type: 'status'; change: StatusChange }
  | { type: 'decision'; decision: RunDecision }
  | { type: 'signal'; signal: NodeJS.Signals }
  | { type: 'timeout' }
  | { type: 'refused'; error: Refused }
  | { type: 'dropped' };

export class Inbox {
  private readonly items: WaitEvent[] = [];
  private waiting: ((event: WaitEvent) => void) | null = null;
  /** A signal or the timeout came: a retry loop in progress should give up. */
  interrupted = false;

  push(event: WaitEvent): void {
    if (event.type === 'signal' || event.type === 'timeout') this.interrupted = true;
    if (this.waiting) {
      const deliver = this.waiting;
      this.waiting = null;
      deliver(event);
    } else this.items.push(event);
  }

  next(): Promise<WaitEvent> {
    const event = this.items.shift();
    if (event) return Promise.resolve(event);
    return new Promise((deliver) => (this.waiting = deliver));
  }

  /** Signals arrive in the inbox until the returned function is called. */
  captureSignals(): () => void {
    const listeners = FORWARDED_SIGNALS.map((signal) => {
      const listener = () => this.push({ type: 'signal', signal });
      process.on(signal, listener);
      return [signal, listener] as const;
    });
    return () => {
      for (const [signal, listener] of listeners) process.off(signal, listener);
    };
  }

  /** The wait timeout, if any, as an inbox event; the returned function cancels it. */
  timeoutAfter(seconds: number | null): () => void {
    if (seconds === null) return () => {};
    const timer = setTimeout(() => this.push({ type: 'timeout' }), seconds * 1000);
    return () => clearTimeout(timer);
  }
}

/** The exit code for a signal that interrupted a wait: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP. */
export function interruptedCode(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : signal === 'SIGHUP' ? 129 : 143;
}
