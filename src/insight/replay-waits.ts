/**
 * Every run's waits in a replay, derived exactly as the history derives recorded ones
 * (projections/waits.ts): from each run's holds (RunBlocked) and its counters' limit states
 * (LimitStatesChanged). Runs already queued when the window opened start with what held them
 * then, as the starting state knows it.
 */

import { blockedDecision } from '../../projections/decisions.js';
import type { RunRecord, State, WaitInterval } from '../../projections/state.js';
import { deriveWaits, type HoldRecord } from '../../projections/waits.js';
import { currentHolds } from '../domain/admission.js';
import { counterKey, heldKeysOf } from '../domain/constraints.js';
import type { LoggedEvent } from '../domain/events.js';

interface RunTrack {
  run: Pick<RunRecord, 'tags' | 'pools' | 'steps'>;
  fromPosition: bigint;
  left: { position: bigint; at: string } | null;
  blocked: HoldRecord[];
}

/** The first index whose record's position is above `position` (records sorted by position). */
function firstAfter(records: readonly HoldRecord[], position: bigint): number {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((records[mid] as HoldRecord).position <= position) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function replayedWaits(
  start: State,
  events: readonly LoggedEvent[],
  fromMs: number,
): Map<string, WaitInterval[]> {
  const runs = new Map<string, RunTrack>();
  const counters = new Map<string, HoldRecord[]>();
  const at = new Date(fromMs).toISOString();
  const p0 = start.revision;
  // The starting state's counter states, as records at its position, so runs queued then start
  // from them; then each queued run's hold of that moment.
  for (const [key, full] of start.held) {
    counters.set(key, [{ kind: 'counter', position: p0, at, countKey: key, full }]);
  }
  for (const run of start.runs.values()) {
    if (run.status !== 'QUEUED') continue;
    const reasons = currentHolds(start, run);
    const blocked: HoldRecord[] =
      reasons.length === 0
        ? []
        : [{ kind: 'blocked', position: p0, at, reasons, decision: blockedDecision(run.id, p0, at, reasons) }];
    runs.set(run.id, { run, fromPosition: p0 - 1n, left: null, blocked });
  }
  for (const event of events) {
    switch (event.type) {
      case 'RunEnqueued': {
        const { runId, tags, steps } = event.data;
        const pools = [...new Set(steps.flatMap((s) => (s.pool === null ? [] : [s.pool])))];
        runs.set(runId, { run: { tags, steps, pools }, fromPosition: event.revision, left: null, blocked: [] });
        break;
      }
      case 'RunBlocked': {
        const track = runs.get(event.data.runId);
        const decision = blockedDecision(event.data.runId, event.revision, event.at, event.data.reasons);
        track?.blocked.push({
          kind: 'blocked',
          position: event.revision,
          at: event.at,
          reasons: event.data.reasons,
          decision,
        });
        break;
      }
      case 'LimitStatesChanged':
        for (const counter of event.data.counters) {
          const key = counterKey(counter);
          const record: HoldRecord = {
            kind: 'counter',
            position: event.revision,
            at: event.at,
            countKey: key,
            full: counter.full,
          };
          const list = counters.get(key);
          if (list) list.push(record);
          else counters.set(key, [record]);
        }
        break;
      case 'RunAdmitted':
      case 'RunFinished': {
        const track = runs.get(event.data.runId);
        if (track && track.left === null) track.left = { position: event.revision, at: event.at };
        break;
      }
      default:
        break;
    }
  }
  const waits = new Map<string, WaitInterval[]>();
  for (const [runId, track] of runs) {
    const keys = heldKeysOf(track.run);
    const to = track.left?.position ?? 2n ** 62n;
    const records: HoldRecord[] = track.blocked.filter((r) => r.position < to);
    for (const key of new Set(keys)) {
      const list = counters.get(key);
      if (!list) continue;
      for (let i = firstAfter(list, track.fromPosition); i < list.length; i++) {
        const record = list[i] as HoldRecord;
        if (record.position >= to) break;
        records.push(record);
      }
    }
    // Records of one position act together, counters before the run's own hold.
    records.sort((a, b) =>
      a.position !== b.position
        ? a.position < b.position
          ? -1
          : 1
        : a.kind === b.kind
          ? 0
          : a.kind === 'counter'
            ? -1
            : 1,
    );
    const derived = deriveWaits(runId, keys, records, track.left ? { at: track.left.at } : null);
    if (derived.waits.length > 0) waits.set(runId, derived.waits);
  }
  return waits;
}
