/**
 * Every run's waits in a replay, derived exactly as the history derives recorded ones
 * (projections/waits.ts): from each run's holds (RunBlocked) and its counters' limit states
 * (LimitStatesChanged). Runs already queued when the window opened start with what held them
 * then, as the starting state knows it.
 *
 * The replay hands each event over as it makes it, so nothing keeps the replayed log: a run
 * admitted by the command that enqueued it (no RunBlocked: the decider holds every run it does
 * not admit at once) never waited and is forgotten when admitted; only the waiting runs, and
 * the counter records of their waits, are kept.
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

export class ReplayedWaits {
  /** Runs that are waiting or have waited, by id. */
  private readonly runs = new Map<string, RunTrack>();
  /** Runs enqueued inside the window and not yet held or admitted (within one command). */
  private readonly arriving = new Map<string, RunTrack>();
  private readonly counters = new Map<string, HoldRecord[]>();

  constructor(start: State, fromMs: number) {
    const at = new Date(fromMs).toISOString();
    const p0 = start.revision;
    // The starting state's counter states, as records at its position, so runs queued then start
    // from them; then each queued run's hold of that moment.
    for (const [key, full] of start.held) {
      this.counters.set(key, [{ kind: 'counter', position: p0, at, countKey: key, full }]);
    }
    for (const run of start.runs.values()) {
      if (run.status !== 'QUEUED') continue;
      const reasons = currentHolds(start, run);
      const blocked: HoldRecord[] =
        reasons.length === 0
          ? []
          : [{ kind: 'blocked', position: p0, at, reasons, decision: blockedDecision(run.id, p0, at, reasons) }];
      this.runs.set(run.id, { run, fromPosition: p0 - 1n, left: null, blocked });
    }
  }

  /** One replayed event, in the order the replay makes them. */
  observe(event: LoggedEvent): void {
    switch (event.type) {
      case 'RunEnqueued': {
        const { runId, tags, steps } = event.data;
        const pools = [...new Set(steps.flatMap((s) => (s.pool === null ? [] : [s.pool])))];
        this.arriving.set(runId, {
          run: { tags, steps, pools },
          fromPosition: event.revision,
          left: null,
          blocked: [],
        });
        break;
      }
      case 'RunBlocked': {
        const { runId, reasons } = event.data;
        const track = this.arriving.get(runId) ?? this.runs.get(runId);
        if (!track) break;
        if (this.arriving.delete(runId)) this.runs.set(runId, track);
        track.blocked.push({
          kind: 'blocked',
          position: event.revision,
          at: event.at,
          reasons,
          decision: blockedDecision(runId, event.revision, event.at, reasons),
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
          const list = this.counters.get(key);
          if (list) list.push(record);
          else this.counters.set(key, [record]);
        }
        break;
      case 'RunAdmitted':
      case 'RunFinished': {
        const { runId } = event.data;
        // Admitted (or ended) by the command that enqueued it: it never waited.
        if (this.arriving.delete(runId)) break;
        const track = this.runs.get(runId);
        if (track && track.left === null) track.left = { position: event.revision, at: event.at };
        break;
      }
      default:
        break;
    }
  }

  /** Each run that waited, with its waits. */
  waits(): Map<string, WaitInterval[]> {
    const waits = new Map<string, WaitInterval[]>();
    for (const [runId, track] of this.runs) {
      const keys = heldKeysOf(track.run);
      const to = track.left?.position ?? 2n ** 62n;
      const records: HoldRecord[] = track.blocked.filter((r) => r.position < to);
      for (const key of new Set(keys)) {
        const list = this.counters.get(key);
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
}
