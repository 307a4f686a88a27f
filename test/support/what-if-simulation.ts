/**
 * A brute-force discrete-event simulation of run admission, written apart from the decider, for
 * what-if replays to be checked against: run limits only (max concurrent runs, tag limits, pool
 * limits at RUN granularity). At every instant something happens, it applies what happens in
 * log order, then admits, in priority then arrival order, every queued run all of whose limits
 * have room; between instants it adds up every queued run's waiting and which limits held it.
 */

export interface SimRun {
  id: string;
  arriveMs: number;
  /** Log order of the arrival: ties at one instant go in this order. */
  order: number;
  tags: Array<{ key: string; value: string }>;
  pools: string[];
  priority: number;
  /** How long it ran once admitted, and the log order of its finish; null: it never finished. */
  length: { ms: number; order: number } | null;
  /** Canceled while queued (as recorded) at this instant and log order. */
  canceled: { atMs: number; order: number } | null;
}

export interface SimLimits {
  maxConcurrentRuns: number;
  tagLimits: Array<{ key: string; value: string | null; perValue: boolean; limit: number }>;
  poolLimits: Map<string, number>;
  defaultPoolLimit: number | null;
}

export interface SimShare {
  heldMs: number;
  soleMs: number;
  runs: Set<string>;
}

interface Happening {
  atMs: number;
  order: number;
  apply: () => void;
}

export function simulateWhatIf(runs: readonly SimRun[], limits: SimLimits, fromMs: number, toMs: number) {
  const queued = new Map<string, SimRun>();
  const running = new Map<string, SimRun>();
  const happenings: Happening[] = [];
  const schedule = (h: Happening) => {
    happenings.push(h);
  };
  for (const run of runs) {
    schedule({ atMs: run.arriveMs, order: run.order, apply: () => queued.set(run.id, run) });
    if (run.canceled) {
      schedule({
        atMs: run.canceled.atMs,
        order: run.canceled.order,
        apply: () => {
          queued.delete(run.id);
          running.delete(run.id);
        },
      });
    }
  }

  /** Every limit holding a run now, by a name of its own. */
  const holding = (run: SimRun): string[] => {
    const held: string[] = [];
    const inProgress = [...running.values()];
    if (limits.maxConcurrentRuns >= 0 && inProgress.length >= limits.maxConcurrentRuns) held.push('runs');
    for (const l of limits.tagLimits) {
      for (const tag of run.tags) {
        if (tag.key !== l.key) continue;
        if (l.value !== null && !l.perValue && tag.value !== l.value) continue;
        const byValue = l.perValue || l.value !== null;
        const count = inProgress.filter((r) =>
          r.tags.some((t) => t.key === l.key && (!byValue || t.value === tag.value)),
        ).length;
        if (count >= l.limit)
          held.push(`tag ${l.key}${byValue ? `=${tag.value}` : ''}${l.perValue ? ' per value' : ''}`);
      }
    }
    for (const pool of run.pools) {
      const limit = limits.poolLimits.get(pool) ?? limits.defaultPoolLimit;
      if (limit === null) continue;
      if (inProgress.filter((r) => r.pools.includes(pool)).length >= limit) held.push(`pool ${pool}`);
    }
    return [...new Set(held)];
  };

  const admit = (now: number) => {
    const order = [...queued.values()].sort((a, b) => b.priority - a.priority || a.order - b.order);
    for (const run of order) {
      if (holding(run).length > 0) continue;
      queued.delete(run.id);
      running.set(run.id, run);
      if (run.length) {
        const length = run.length;
        schedule({ atMs: now + length.ms, order: length.order, apply: () => running.delete(run.id) });
      }
    }
  };

  const shares = new Map<string, SimShare>();
  const waited = new Set<string>();
  let waitMs = 0;
  let clock = fromMs;
  const accrue = (until: number) => {
    const a = Math.max(clock, fromMs);
    const b = Math.min(until, toMs);
    if (b > a) {
      for (const run of queued.values()) {
        const held = holding(run);
        if (held.length === 0) continue;
        waitMs += b - a;
        waited.add(run.id);
        for (const name of held) {
          const share = shares.get(name) ?? { heldMs: 0, soleMs: 0, runs: new Set<string>() };
          share.heldMs += b - a;
          if (held.length === 1) share.soleMs += b - a;
          share.runs.add(run.id);
          shares.set(name, share);
        }
      }
    }
    clock = Math.max(clock, until);
  };

  for (;;) {
    happenings.sort((a, b) => a.atMs - b.atMs || a.order - b.order);
    const next = happenings.shift();
    if (!next || next.atMs > toMs) break;
    accrue(next.atMs);
    next.apply();
    // Every command is followed by an admission pass.
    admit(next.atMs);
  }
  accrue(toMs);
  return { waitMs, runs: waited.size, shares };
}
