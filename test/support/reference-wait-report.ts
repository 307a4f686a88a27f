/**
 * A wait report computed the slow, obvious way: every run's waits as the history derives them
 * one run at a time (`Run.waits`), clipped to the window and summed. The ledger's prefix sums
 * must give the same numbers.
 */
import type { WaitInterval } from '../../projections/state.js';
import type { ConstraintKind } from '../../src/domain/constraints.js';

export interface ReferenceShare {
  kind: ConstraintKind;
  key: string | null;
  value: string | null;
  pool: string | null;
  perUniqueValue: boolean;
  heldMs: number;
  soleMs: number;
  runs: number;
}

export function referenceWaitReport(
  waitsOfRuns: Iterable<readonly WaitInterval[]>,
  fromMs: number,
  toMs: number,
  nowMs: number,
): { runs: number; waitMs: number; byLimit: Map<string, ReferenceShare> } {
  let runs = 0;
  let waitMs = 0;
  const byLimit = new Map<string, ReferenceShare>();
  for (const waits of waitsOfRuns) {
    let inside = 0;
    const heldBy = new Set<string>();
    for (const w of waits) {
      const start = Date.parse(w.from);
      const end = w.to === null ? Math.max(start, nowMs) : Date.parse(w.to);
      const length = Math.max(0, Math.min(end, toMs) - Math.max(start, fromMs));
      if (length === 0) continue;
      inside += length;
      const ids = new Map(
        w.reasons.map((c) => [
          [c.kind, c.key, c.value, c.pool, c.perUniqueValue].join('|'),
          { kind: c.kind, key: c.key, value: c.value, pool: c.pool, perUniqueValue: c.perUniqueValue },
        ]),
      );
      for (const [id, limit] of ids) {
        const share = byLimit.get(id) ?? { ...limit, heldMs: 0, soleMs: 0, runs: 0 };
        share.heldMs += length;
        if (ids.size === 1) share.soleMs += length;
        byLimit.set(id, share);
        heldBy.add(id);
      }
    }
    if (inside > 0) runs += 1;
    waitMs += inside;
    for (const id of heldBy) (byLimit.get(id) as ReferenceShare).runs += 1;
  }
  return { runs, waitMs, byLimit };
}
