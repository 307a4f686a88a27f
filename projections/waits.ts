/**
 * Why a run waited, derived from the log: its first hold (RunBlocked) and the records of its
 * counters' limit states (LimitStatesChanged) while it was queued. A stretch of waiting starts
 * whenever the set of limits holding the run changes, with the counts of that moment; counts
 * that change while the same limits hold it do not start a new stretch. Logs from before limit
 * states were recorded hold a RunBlocked per change, which this reads the same way.
 */
import {
  type Constraint,
  constraintIdentity,
  reasonsOfCounters,
  runCountersNamedBy,
} from '../src/domain/constraints.js';
import { blockedDecision } from './decisions.js';
import type { Decision, WaitInterval } from './state.js';

/** One record that can change what holds a run, in log order. */
export type HoldRecord =
  | { kind: 'blocked'; position: bigint; at: string; reasons: Constraint[]; decision: Decision }
  | { kind: 'counter'; position: bigint; at: string; countKey: string; full: Constraint[] };

export interface DerivedWaits {
  waits: WaitInterval[];
  /** A BLOCKED decision at the start of every stretch: the recorded one, or one derived. */
  decisions: Decision[];
}

const identityOf = (reasons: readonly Constraint[]) => reasons.map(constraintIdentity).sort().join('\n');

/**
 * @param countKeys the run's counters (heldKeysOf: root-step counters hold it only when all are full)
 * @param records its RunBlocked decisions and its counters' records after its enqueue and
 *   before it left the queue, in log order
 * @param left when it left the queue (admitted or canceled), or null while it waits
 */
export function deriveWaits(
  runId: string,
  countKeys: readonly string[],
  records: readonly HoldRecord[],
  left: { at: string } | null,
): DerivedWaits {
  const counters = [...new Set(countKeys)];
  const held = new Map<string, Constraint[]>(counters.map((key) => [key, []]));
  const waits: WaitInterval[] = [];
  const decisions: Decision[] = [];
  let openIdentity: string | null = null;
  const close = (at: string) => {
    const open = waits.at(-1);
    if (open && open.to === null) open.to = at;
    openIdentity = null;
  };
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as HoldRecord;
    if (record.kind === 'blocked') {
      for (const [key, full] of runCountersNamedBy(counters, record.reasons)) held.set(key, full);
    } else if (held.has(record.countKey)) {
      held.set(record.countKey, record.full);
    }
    // Records of one position (one event) act together.
    const next = records[i + 1];
    if (next && next.position === record.position) continue;
    const reasons =
      record.kind === 'blocked' ? record.reasons : reasonsOfCounters(counters, (key) => held.get(key) ?? []);
    const identity = identityOf(reasons);
    if (identity === openIdentity) continue;
    close(record.at);
    if (reasons.length === 0) continue;
    waits.push({ from: record.at, to: null, reasons });
    openIdentity = identity;
    decisions.push(
      record.kind === 'blocked' ? record.decision : blockedDecision(runId, record.position, record.at, reasons),
    );
  }
  if (left) close(left.at);
  return { waits, decisions };
}
