/**
 * Waits summed over a window the direct way, run by run: for the handful of runs a replay
 * produces, where the history's prefix sums (src/history/wait-report.ts) are not needed. Same
 * meaning: each stretch clipped to the window; held and sole seconds per limit; runs counted
 * when some of their waiting lies inside.
 */
import type { WaitInterval } from '../../projections/state.js';
import { constraintIdentity } from '../domain/constraints.js';
import { limitName, type WaitShareData } from '../history/wait-report.js';

export interface WaitSummary {
  runs: number;
  waitSeconds: number;
  byLimit: WaitShareData[];
}

export function summarizeWaits(
  waitsOfRuns: Iterable<readonly WaitInterval[]>,
  fromMs: number,
  toMs: number,
): WaitSummary {
  let runs = 0;
  let waitMs = 0;
  const shares = new Map<string, WaitShareData & { heldMs: number; soleMs: number }>();
  for (const waits of waitsOfRuns) {
    let inside = 0;
    const heldBy = new Set<string>();
    for (const wait of waits) {
      const start = Date.parse(wait.from);
      const end = wait.to === null ? toMs : Date.parse(wait.to);
      const length = Math.max(0, Math.min(end, toMs) - Math.max(start, fromMs));
      if (length === 0) continue;
      inside += length;
      const limits = new Map(wait.reasons.map((c) => [constraintIdentity(c), c]));
      for (const [id, c] of limits) {
        let share = shares.get(id);
        if (!share) {
          share = {
            kind: c.kind,
            key: c.key,
            value: c.value,
            pool: c.pool,
            perUniqueValue: c.perUniqueValue,
            heldSeconds: 0,
            soleSeconds: 0,
            runs: 0,
            heldMs: 0,
            soleMs: 0,
          };
          shares.set(id, share);
        }
        share.heldMs += length;
        if (limits.size === 1) share.soleMs += length;
        heldBy.add(id);
      }
    }
    if (inside > 0) runs++;
    waitMs += inside;
    for (const id of heldBy) (shares.get(id) as { runs: number }).runs++;
  }
  const byLimit = [...shares.values()].map(({ heldMs, soleMs, ...share }) => ({
    ...share,
    heldSeconds: heldMs / 1000,
    soleSeconds: soleMs / 1000,
  }));
  byLimit.sort(
    (a, b) =>
      b.heldSeconds - a.heldSeconds ||
      b.soleSeconds - a.soleSeconds ||
      b.runs - a.runs ||
      limitName(a).localeCompare(limitName(b)),
  );
  return { runs, waitSeconds: waitMs / 1000, byLimit };
}
