/** A simple model of every run's waits, recorded after every command, for the derived waits to equal. */
import type { WaitInterval } from '../../projections/state.js';
import { constraintIdentity, toConstraint } from '../../src/domain/constraints.js';
import { fullLimitsOf, type Scenario } from './scenario.js';

/**
 * The simple model the derived waits must equal: after every command it takes every queued run's
 * reasons as the reference computes them, and starts a stretch whenever their set changes.
 */
export class ReferenceWaits {
  private readonly waits = new Map<string, WaitInterval[]>();
  private readonly identity = new Map<string, string>();
  private readonly touched = new Map<string, number>();
  private steps = 0;

  record(s: Scenario): void {
    const step = this.steps++;
    for (const id of s.runIds) {
      const run = s.run(id);
      const list = this.waits.get(id) ?? [];
      const open = list.at(-1);
      const reasons =
        run.status === 'QUEUED'
          ? fullLimitsOf(s.state, run).map(({ limit, inUse }) => toConstraint({ ...limit, countKey: '' }, inUse))
          : [];
      const identity = reasons.map(constraintIdentity).sort().join('|');
      if (identity === (this.identity.get(id) ?? '')) continue;
      if (open && open.to === null) open.to = s.now;
      if (reasons.length > 0) list.push({ from: s.now, to: null, reasons });
      this.identity.set(id, identity);
      this.waits.set(id, list);
      this.touched.set(id, step);
    }
  }

  /** Runs whose waits the last record changed (a stretch began or ended). */
  changed(): string[] {
    const last = this.steps - 1;
    return [...this.touched].filter(([, at]) => at === last).map(([id]) => id);
  }

  all(): string[] {
    return [...this.waits.keys()];
  }

  of(id: string): WaitInterval[] {
    return this.waits.get(id) ?? [];
  }
}

export const comparableWaits = (waits: readonly WaitInterval[]) =>
  waits.map((w) => ({
    from: w.from,
    to: w.to,
    reasons: w.reasons.map((c) => `${constraintIdentity(c)}|${c.limit}|${c.inUse}|${c.message}`).sort(),
  }));
