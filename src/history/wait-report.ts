/**
 * Where the waiting went in a window of time: the run-seconds queued inside it and each limit's
 * share, read from the wait ledger. Runs that left the queue inside the window are summed by
 * prefix differences; only the runs the window's edges cut through (queued at `from` or at `to`)
 * are read stretch by stretch and clipped, so the cost follows the queue at those two instants,
 * not the number of runs in the window.
 */
import type { Stretch, WaitLedger, WaitLimit } from './wait-ledger.js';

export interface WaitShareData extends WaitLimit {
  heldSeconds: number;
  soleSeconds: number;
  runs: number;
}

export interface WaitReportData {
  from: string;
  to: string;
  runs: number;
  waitSeconds: number;
  /** Largest share first. */
  byLimit: WaitShareData[];
}

interface Tally {
  runs: number;
  heldMs: number;
  soleMs: number;
}

/** What one run's stretches contribute inside [fromMs, toMs]: in all, and per limit. */
export function clipStretches(stretches: readonly Stretch[], fromMs: number, toMs: number) {
  let waitedMs = 0;
  const byLimit = new Map<number, { heldMs: number; soleMs: number }>();
  for (const s of stretches) {
    const length = Math.max(0, Math.min(s.toMs, toMs) - Math.max(s.fromMs, fromMs));
    const whole = s.toMs - s.fromMs;
    waitedMs += length;
    for (const id of s.limits) {
      const totals = byLimit.get(id) ?? { heldMs: 0, soleMs: 0 };
      totals.heldMs += length;
      if (s.limits.length === 1) totals.soleMs += length;
      // A limit that held the run outside the window is listed with nothing, so that callers
      // know it was counted in the run's totals.
      if (whole > 0) byLimit.set(id, totals);
    }
  }
  return { waitedMs, byLimit };
}

/**
 * @param stillQueued the stretches of runs still queued in the history (not in the ledger yet),
 *   their open stretch ending at Infinity
 */
export function waitReport(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  stillQueued: readonly Stretch[][],
): WaitReportData {
  const limits = ledger.limits();
  const tallies = new Map<number, Tally>();
  const tally = (id: number) => {
    let t = tallies.get(id);
    if (!t) {
      t = { runs: 0, heldMs: 0, soleMs: 0 };
      tallies.set(id, t);
    }
    return t;
  };

  // Runs whose waiting ended inside (from, to], counted whole.
  const upTo = ledger.leftBy(toMs);
  const upFrom = ledger.leftBy(fromMs);
  let runs = upTo.runs - upFrom.runs;
  let waitedMs = upTo.waitedMs - upFrom.waitedMs;
  if (runs > 0) {
    for (const id of limits.keys()) {
      const a = ledger.limitLeftBy(id, toMs);
      const b = ledger.limitLeftBy(id, fromMs);
      if (a.runs === b.runs) continue;
      const t = tally(id);
      t.runs += a.runs - b.runs;
      t.heldMs += a.heldMs - b.heldMs;
      t.soleMs += a.soleMs - b.soleMs;
    }
  }

  // Of those, the ones already queued at `from`: take back what lies before it.
  for (const { ord, leftMs } of ledger.queuedAt(fromMs)) {
    if (leftMs > toMs) continue;
    const stretches = ledger.stretchesOf(ord);
    const whole = clipStretches(stretches, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY);
    const inside = clipStretches(stretches, fromMs, toMs);
    waitedMs -= whole.waitedMs - inside.waitedMs;
    if (inside.waitedMs === 0) runs -= 1;
    for (const [id, w] of whole.byLimit) {
      const i = inside.byLimit.get(id) ?? { heldMs: 0, soleMs: 0 };
      const t = tally(id);
      t.heldMs -= w.heldMs - i.heldMs;
      t.soleMs -= w.soleMs - i.soleMs;
      if (i.heldMs === 0) t.runs -= 1;
    }
  }

  // Runs still queued at `to` (recorded since, or still queued now): what lies inside.
  const cutAtTo = ledger.queuedAt(toMs).map(({ ord }) => ledger.stretchesOf(ord));
  for (const stretches of [...cutAtTo, ...stillQueued]) {
    const inside = clipStretches(stretches, fromMs, toMs);
    if (inside.waitedMs === 0) continue;
    waitedMs += inside.waitedMs;
    runs += 1;
    for (const [id, i] of inside.byLimit) {
      if (i.heldMs === 0) continue;
      const t = tally(id);
      t.runs += 1;
      t.heldMs += i.heldMs;
      t.soleMs += i.soleMs;
    }
  }

  const byLimit: WaitShareData[] = [];
  for (const [id, t] of tallies) {
    const limit = limits.get(id);
    if (!limit || t.runs <= 0) continue;
    byLimit.push({ ...limit, runs: t.runs, heldSeconds: t.heldMs / 1000, soleSeconds: t.soleMs / 1000 });
  }
  byLimit.sort(
    (a, b) =>
      b.heldSeconds - a.heldSeconds ||
      b.soleSeconds - a.soleSeconds ||
      b.runs - a.runs ||
      limitName(a).localeCompare(limitName(b)),
  );
  return {
    from: new Date(fromMs).toISOString(),
    to: new Date(toMs).toISOString(),
    runs,
    waitSeconds: waitedMs / 1000,
    byLimit,
  };
}

export function limitName(l: WaitLimit): string {
  switch (l.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return 'max concurrent runs';
    case 'TAG_LIMIT':
      return l.value === null ? `tag ${l.key}` : `tag ${l.key}=${l.value}`;
    case 'POOL_LIMIT':
      return `pool ${l.pool}`;
    case 'ROOT_STEP_POOLS':
      return `root steps in pool ${l.pool}`;
    case 'RUN_STEP_LIMIT':
      return "run's max concurrent steps";
  }
}
